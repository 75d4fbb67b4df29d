"""Fixtures for a real OpenBao dev server (filled in by the Vault store work)."""

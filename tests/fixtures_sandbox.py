"""Fixtures for the Encord sandbox (filled in by the sandbox work)."""

"""Shared fixtures: a real OpenBao dev server, the Encord sandbox, and the secret scan."""

pytest_plugins = ["tests.secret_scan", "tests.fixtures_openbao", "tests.fixtures_sandbox"]

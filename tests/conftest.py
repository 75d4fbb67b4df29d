"""Shared fixtures: a real OpenBao dev server and the Encord sandbox (see the plugin modules)."""

pytest_plugins = ["tests.fixtures_openbao", "tests.fixtures_sandbox"]

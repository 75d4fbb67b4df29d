"""The layering written down (kopf's import-linter idea), checked from the source: the pure
core imports no I/O library, only the Vault adapter imports hvac, the adapters for Vault,
Encord and notifications never import one another, and the daemon never reaches the sandbox
or the dev tools."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "rotator"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in ROOT.rglob("*.py")}


@cache
def direct_imports(module: str) -> frozenset[str]:
    """Every module named by an import statement anywhere in ``module``."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return frozenset(names)


def closure(module: str) -> set[str]:
    """``module`` and everything it imports, following rotator's own modules."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for imported in direct_imports(name):
            if imported in MODULES:
                todo.append(imported)
            seen.add(imported)
    return seen


def _top(names: set[str]) -> set[str]:
    return {n.split(".")[0] for n in names}


@pytest.mark.parametrize(
    "module",
    ["rotator.core.policy", "rotator.core.vocab", "rotator.core.state", "rotator.core.engine"],
)
def test_pure_core_imports_no_io_library(module: str) -> None:
    """policy, model, state and engine reach neither hvac, httpx, requests nor apscheduler."""
    assert _top(closure(module)) & {"hvac", "httpx", "requests", "apscheduler"} == set()


def test_only_the_vault_adapter_imports_hvac() -> None:
    """hvac appears only in the imports of the Vault adapter package's own modules."""
    importers = {m for m in MODULES if "hvac" in _top(set(direct_imports(m)))}
    assert importers, "no module imports hvac: the check looks at the wrong files"
    outside = {
        m for m in importers
        if m != "rotator.adapters.vault" and not m.startswith("rotator.adapters.vault.")
    }
    assert outside == set()


def test_daemon_never_reaches_the_sandbox_or_dev_tools() -> None:
    """Nothing the daemon imports, however indirectly, is the sandbox or the dev tools."""
    reached = closure("rotator.runtime.daemon")
    assert not {n for n in reached if n.startswith(("rotator.dev.sandbox", "rotator.dev"))}


def test_only_the_scheduler_module_imports_apscheduler() -> None:
    """apscheduler appears in exactly one module's imports: rotator.runtime.daemon, the
    scheduler; wiring, health, the check runner, metrics and endpoints stay free of it."""
    importers = {m for m in MODULES if "apscheduler" in _top(set(direct_imports(m)))}
    assert importers == {"rotator.runtime.daemon"}
    for module in ("wiring", "health", "checks", "metrics", "endpoints"):
        assert "apscheduler" not in _top(closure(f"rotator.runtime.{module}")), module


ADAPTERS = ("rotator.adapters.vault", "rotator.adapters.encord", "rotator.adapters.notify")


def _within(package: str, name: str) -> bool:
    return name == package or name.startswith(f"{package}.")


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_the_adapters_never_import_each_other(adapter: str) -> None:
    """Vault, Encord and the notifier stand apart: nothing a module of one imports, however
    indirectly, is a module of another (shared HTTP plumbing lives outside all three)."""
    own = [m for m in MODULES if _within(adapter, m)]
    assert own, f"no module of {adapter}: the check looks at the wrong files"
    reached = set().union(*(closure(m) for m in own))
    others = [a for a in ADAPTERS if a != adapter]
    assert {n for n in reached if any(_within(o, n) for o in others)} == set()


def test_the_module_list_is_real() -> None:
    """The checks above look at the real package (guards against an empty glob)."""
    expected = {
        "rotator.core.engine",
        "rotator.adapters.vault",
        "rotator.runtime.daemon",
        "rotator.dev.sandbox",
    }
    assert expected <= set(MODULES)
    assert "rotator.adapters.vault" in closure("rotator.runtime.daemon")

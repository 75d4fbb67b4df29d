"""The core's boundary, module by module: nothing under ``rotator.core`` reaches an adapter,
the runtime, the dev tools or an I/O library, however indirectly."""

from __future__ import annotations

import pytest

from tests.test_layering import MODULES, _top, closure

CORE = sorted(m for m in MODULES if m.startswith("rotator.core"))


def test_the_core_is_several_modules() -> None:
    """The check below looks at the real package (guards against an empty glob)."""
    assert {"rotator.core.engine", "rotator.core.transitions", "rotator.core.admin"} <= set(CORE)


@pytest.mark.parametrize("module", CORE)
def test_core_module_stays_inside_the_core(module: str) -> None:
    """No adapter, runtime or dev module, and no hvac, httpx, requests or apscheduler."""
    reached = closure(module)
    outside = {n for n in reached if n.startswith(("rotator.adapters", "rotator.runtime"))}
    outside |= {n for n in reached if n.startswith("rotator.dev")}
    assert outside == set()
    assert _top(reached) & {"hvac", "httpx", "requests", "apscheduler"} == set()

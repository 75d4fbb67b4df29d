"""The shape of the package as the README's Architecture section describes it: every module
says what it owns, and none grows past the size a new maintainer can read at once."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "rotator"
FILES = sorted(ROOT.rglob("*.py"))


def test_the_file_list_is_real() -> None:
    """The checks below look at the real package (guards against an empty glob)."""
    assert len(FILES) > 40 and ROOT / "core" / "engine.py" in FILES


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT.parent)))
def test_every_module_opens_with_a_docstring_saying_what_it_owns(path: Path) -> None:
    """A module docstring of at least one sentence (``__main__`` shims included)."""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    assert doc and len(doc.split()) >= 4, f"{path.relative_to(ROOT.parent)} has no docstring"

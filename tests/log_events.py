"""Every event rotator emits, found in its source by an AST walk (for tests/test_docs.py).

An event is a dotted name (``check.failed``) given as the first argument of a log call:

- ``log.info("a.b", ...)``: a method named after a level (debug, info, warning, error,
  critical, exception) on any object;
- ``getattr(log, level)("a.b", ...)`` and ``emit("a.b", ...)`` where ``emit`` is assigned
  such a method (``emit = log.debug if quiet else log.info``): the levels are the string
  constants assigned to ``level`` in the same module, or the methods in ``emit``'s value;
- ``forward("a.b")`` where ``forward`` is a function of rotator whose own log call passes one
  of its parameters as the event (``stop_on_signals("daemon.signal")``);
- ``f"rotation.{action.reason}"``: an f-string event is expanded by :data:`EXPANSIONS`;
  an f-string the table does not know is reported by :func:`unexpanded`, so a new one
  cannot slip past the catalogue.

Lines printed as JSON rather than logged (``print(json.dumps({"event": "a.b", ...}))``:
command results and the sandbox's start line) are found as dict literals with an
``"event"`` key, under the level ``stdout``.

Strings that are not dotted names (a library-style ``"connection from %s"`` message) are no
events and are left out.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

LEVELS = frozenset({"debug", "info", "warning", "error", "critical", "exception"})
EVENT = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+")
STDOUT = "stdout"


@dataclass(frozen=True, slots=True)
class Site:
    """One place an event is emitted: file (relative to the repository), line, level and
    the names of the fields passed by keyword (``**x`` shows as ``**``)."""

    path: str
    line: int
    level: str
    fields: tuple[str, ...]


def _blocked_reasons(trees: dict[str, ast.Module]) -> list[str]:
    """The ``reason=`` literals of every ``Blocked(...)`` in rotator: the names
    ``rotation.blocked`` logs as ``rotation.{reason}``."""
    reasons = set()
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _name(node.func) == "Blocked":
                for kw in node.keywords:
                    if kw.arg == "reason" and isinstance(kw.value, ast.Constant):
                        reasons.add(str(kw.value.value))
    return sorted(reasons)


EXPANSIONS: dict[str, Callable[[dict[str, ast.Module]], list[str]]] = {
    # rotator/core/rotation.py, blocked(): log.warning(f"rotation.{action.reason}", ...)
    "rotation.{action.reason}": _blocked_reasons,
}
"""An f-string event (as ``ast.unparse`` writes its text) -> the suffixes it can take."""


def _name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _fields(call: ast.Call) -> tuple[str, ...]:
    return tuple("**" if kw.arg is None else kw.arg for kw in call.keywords)


def _constants(node: ast.AST) -> set[str]:
    return {
        n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }


def _level_aliases(tree: ast.Module) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(names bound to log methods -> their levels, names bound to level strings -> levels)."""
    methods: dict[str, set[str]] = {}
    strings: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if not isinstance(target, ast.Name):
                continue
            attrs = {
                n.attr
                for n in ast.walk(node.value)
                if isinstance(n, ast.Attribute) and n.attr in LEVELS
            }
            if attrs:
                methods.setdefault(target.id, set()).update(attrs)
            levels = _constants(node.value) & LEVELS
            if levels:
                strings.setdefault(target.id, set()).update(levels)
    return methods, strings


def _call_levels(
    call: ast.Call, methods: dict[str, set[str]], strings: dict[str, set[str]]
) -> set[str] | None:
    """The levels a call logs at, or None when it is no log call."""
    func = call.func
    if isinstance(func, ast.Attribute) and func.attr in LEVELS:
        return {func.attr}
    if isinstance(func, ast.Name) and func.id in methods:
        return methods[func.id]
    if isinstance(func, ast.Call) and _name(func.func) == "getattr" and len(func.args) == 2:
        level = func.args[1]
        if isinstance(level, ast.Constant) and level.value in LEVELS:
            return {str(level.value)}
        if isinstance(level, ast.Name) and level.id in strings:
            return strings[level.id]
    return None


def _trees(root: Path) -> dict[str, ast.Module]:
    repo = root.parent
    return {
        str(path.relative_to(repo)): ast.parse(path.read_text(encoding="utf-8"))
        for path in sorted(root.rglob("*.py"))
    }


def _forwarders(
    trees: dict[str, ast.Module],
) -> dict[str, tuple[int, str, tuple[str, ...]]]:
    """Functions that log one of their parameters as the event: name -> (position, level,
    fields)."""
    found = {}
    for tree in trees.values():
        methods, strings = _level_aliases(tree)
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            params = [a.arg for a in fn.args.args]
            for call in ast.walk(fn):
                if not (isinstance(call, ast.Call) and call.args):
                    continue
                levels = _call_levels(call, methods, strings)
                first = call.args[0]
                if levels and isinstance(first, ast.Name) and first.id in params:
                    found[fn.name] = (
                        params.index(first.id),
                        "/".join(sorted(levels)),
                        _fields(call),
                    )
    return found


def _sites(
    trees: dict[str, ast.Module],
) -> Iterator[tuple[str, Site]]:
    forwarders = _forwarders(trees)
    for path, tree in trees.items():
        methods, strings = _level_aliases(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if (
                        isinstance(key, ast.Constant)
                        and key.value == "event"
                        and isinstance(value, ast.Constant)
                        and isinstance(value.value, str)
                        and EVENT.fullmatch(value.value)
                    ):
                        fields = tuple(
                            str(k.value)
                            for k in node.keys
                            if isinstance(k, ast.Constant) and k.value != "event"
                        )
                        yield value.value, Site(path, node.lineno, STDOUT, fields)
                continue
            if not (isinstance(node, ast.Call) and node.args):
                continue
            first = node.args[0]
            levels = _call_levels(node, methods, strings)
            fields = _fields(node)
            forward = forwarders.get(_name(node.func) or "")
            if levels is None and forward is not None and len(node.args) > forward[0]:
                first = node.args[forward[0]]
                levels, fields = {forward[1]}, forward[2]
            if levels is None:
                continue
            level = "/".join(sorted(levels))
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                if EVENT.fullmatch(first.value):
                    yield first.value, Site(path, node.lineno, level, fields)
            elif isinstance(first, ast.JoinedStr):
                pattern = ast.unparse(first)[2:-1]  # f"..." -> ...
                expand = EXPANSIONS.get(pattern)
                if expand is not None:
                    prefix = pattern.split("{", 1)[0]
                    for suffix in expand(trees):
                        yield prefix + suffix, Site(path, node.lineno, level, fields)
                else:
                    yield "f:" + pattern, Site(path, node.lineno, level, fields)


def collect(root: Path) -> dict[str, list[Site]]:
    """Every event emitted under ``root`` (a package directory) -> where it is emitted.
    Unexpanded f-string events appear under ``f:<their text>``."""
    events: dict[str, list[Site]] = {}
    for name, site in _sites(_trees(root)):
        events.setdefault(name, []).append(site)
    return events


def unexpanded(events: dict[str, list[Site]]) -> list[str]:
    """The f-string events :data:`EXPANSIONS` does not know, with where they are."""
    return [
        f"{site.path}:{site.line}: {name[2:]}"
        for name, sites in sorted(events.items())
        if name.startswith("f:")
        for site in sites
    ]

"""Release files read the way their tools read them: the hashed lock.

Shared by tests/test_release.py and the Dockerfile replay in tests/test_deploy.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parent.parent
LOCK = REPO / "requirements.lock"

_PIN = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


@dataclass(frozen=True, slots=True)
class Pin:
    name: str  # canonical (PEP 503) name
    version: str
    hashes: tuple[str, ...]  # sha256 hex digests


def read_lock(text: str) -> dict[str, Pin]:
    """The pins of a hashed requirements file; fails on anything but ``name==version --hash``."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip() if raw.lstrip().startswith("#") else raw.strip()
        if not line:
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the lock ends inside a continued line"
    pins: dict[str, Pin] = {}
    for line in logical:
        words = line.split()
        match = _PIN.fullmatch(words[0])
        assert match, f"not an exact pin: {line[:80]!r}"
        hashes = []
        for word in words[1:]:
            found = _HASH.fullmatch(word)
            assert found, f"{words[0]}: {word[:80]!r} is not a --hash=sha256: option"
            hashes.append(found[1])
        name = canonicalize_name(match[1])
        assert name not in pins, f"{name} pinned twice"
        pins[name] = Pin(name, match[2], tuple(hashes))
    return pins

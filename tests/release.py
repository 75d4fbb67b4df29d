"""Release files read the way their tools read them: the lock and ``make image``'s command.

Shared by tests/test_release.py and the Dockerfile replay in tests/test_deploy.py, which builds
with the very ``--build-arg`` values that ``make image`` passes.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
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


@dataclass(frozen=True, slots=True)
class BuildCommand:
    argv: list[str]
    build_args: dict[str, str]
    tag: str


def make_image_command(repo: Path = REPO) -> BuildCommand:
    """The ``docker build`` command ``make image`` runs in ``repo``, as make expands it (-n)."""
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", "image"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    argv = shlex.split(done.stdout.replace("\\\n", " "))
    assert argv[:2] == ["docker", "build"], done.stdout
    build_args: dict[str, str] = {}
    tags: list[str] = []
    words = iter(argv[2:])
    for word in words:
        if word == "--build-arg":
            key, sep, value = next(words).partition("=")
            assert sep, f"--build-arg {key}: no value"
            build_args[key] = value
        elif word == "-t":
            tags.append(next(words))
    assert len(tags) == 1, argv
    assert argv[-1] == ".", "the build context is the repository"
    return BuildCommand(argv, build_args, tags[0])

"""Fixtures for the Encord sandbox: a real local server per test, stopped at teardown.

``sandbox``: one member account ``alpha`` (hash ``sa-alpha``, cap 5), bootstrap key and
journal in ``tmp_path``. ``make_sandbox(**kwargs)``: the same with any :class:`Sandbox`
keyword (``seed=``, ``faults=``, ``clock=``, ``state_path=``...) changed.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rotator.dev.sandbox import Sandbox, SeedConfig


@dataclass(frozen=True, slots=True)
class SandboxHandle:
    """A started sandbox; ``bootstrap_key_file``/``account_hash`` are its first account's."""

    sandbox: Sandbox
    url: str
    account: str
    account_hash: str
    bootstrap_key_file: Path
    journal_path: Path | None


def alpha_seed(folder: Path) -> dict[str, Any]:
    """The default seed: member ``alpha``, hash ``sa-alpha``, cap 5, key file in ``folder``."""
    return {
        "service_accounts": [
            {
                "name": "alpha",
                "hash": "sa-alpha",
                "key_cap": 5,
                "bootstrap_key_file": str(folder / "alpha.key"),
            }
        ]
    }


MakeSandbox = Callable[..., SandboxHandle]


@pytest.fixture
def make_sandbox(tmp_path: Path) -> Iterator[MakeSandbox]:
    """Factory: start a Sandbox (default seed and journal in a fresh folder); all stopped after."""
    started: list[Sandbox] = []
    counter = itertools.count(1)

    def make(**kwargs: Any) -> SandboxHandle:
        folder = tmp_path / f"sandbox-{next(counter)}"
        folder.mkdir()
        seed = kwargs.pop("seed", None) or alpha_seed(folder)
        kwargs.setdefault("journal_path", folder / "journal.jsonl")
        box = Sandbox(seed, **kwargs)
        box.start()
        started.append(box)
        first = (seed if isinstance(seed, SeedConfig) else SeedConfig.from_dict(seed)).accounts[0]
        return SandboxHandle(
            sandbox=box,
            url=box.url,
            account=first.name,
            account_hash=first.account_hash,
            bootstrap_key_file=first.bootstrap_key_file,
            journal_path=box.journal_path,
        )

    yield make
    for box in reversed(started):
        box.stop()


@pytest.fixture
def sandbox(make_sandbox: MakeSandbox) -> SandboxHandle:
    """A fresh sandbox with member account ``alpha`` (``sa-alpha``, cap 5)."""
    return make_sandbox()

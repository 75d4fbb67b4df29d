"""How the Vault package reads its part of the environment, without importing the runtime.

The login methods (:mod:`rotator.adapters.vault.auth`) declare their variables as
:class:`EnvVar` rows and read them through an :class:`EnvReader`, which
:mod:`rotator.runtime.config` implements; the validators shared by both live here, once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

T = TypeVar("T")

MAX_SHOWN = 60
"""A user's value is cut to this many characters in an error message."""


@dataclass(frozen=True, slots=True)
class EnvVar:
    """One variable as the help text and docs/configuration.md describe it."""

    name: str
    default: str
    """The default as docs/configuration.md spells it (``—`` plus when it is required, if it
    has none)."""
    meaning: str
    secret: bool = False
    """It holds a credential: its text is never echoed in any problem."""


class EnvReader(Protocol):
    """Reads variables, collecting problems instead of stopping at the first."""

    problems: list[str]

    def raw(self, name: str) -> str | None:
        """The variable's text; None when unset or blank."""

    def problem(self, name: str, message: str) -> None:
        """Record ``name: message``."""

    def parsed(self, name: str, default: T, parse: Callable[[str], T]) -> T | None:
        """``parse`` the variable (``default`` when unset); None after recording a problem."""

    def secret(
        self, name: str, *, what: str, required: str
    ) -> tuple[str | None, str | None]:
        """A credential from ``name`` or ``name_FILE`` (exactly one), and that file; never
        echoed. ``(None, None)`` after recording a problem."""


def show(value: str) -> str:
    """A user's value quoted for an error message, cut short if long."""
    if len(value) > MAX_SHOWN:
        value = value[:MAX_SHOWN] + "..."
    return repr(value)


def parse_kv_path(text: str) -> str:
    """A Vault path (a mount or prefix): stripped of outer ``/``, no empty, ``.``, ``..`` or
    blank segments."""
    value = text.strip().strip("/")
    segments = value.split("/")
    if any(seg in ("", ".", "..") or any(ch.isspace() for ch in seg) for seg in segments):
        raise ValueError(
            f"expected a Vault path like 'secret' or 'team/encord' "
            f"(no empty, '.', '..' or blank segments), got {show(text)}"
        )
    return value


def parse_role_name(text: str) -> str:
    """A role name: stripped, no whitespace, control characters or '/'."""
    value = text.strip()
    if any(ch.isspace() or not ch.isprintable() or ch == "/" for ch in value):
        raise ValueError(f"expected a role name without spaces or '/', got {show(text)}")
    return value

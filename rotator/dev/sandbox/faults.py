"""Faults the sandbox injects into ``/v2/public/*`` calls, to exercise a client's error paths.

* ``error_rate``: share of calls answered ``500 {"message": "injected"}`` (nothing done);
* ``throttle_rate``: share answered ``429`` with ``Retry-After: <retry_after>`` (nothing done);
* ``latency_ms``: delay before every answer;
* ``drop_upload_rate``: share of successful ``POST .../keys`` and ``.../keys/generate`` whose
  key is committed and whose connection is then closed without any answer (an ambiguous write);
* ``propagation_ms``: a key added through the API less than this long ago does not
  authenticate yet (``401``, journalled ``auth.failed`` with reason ``not propagated``), as a
  new key may not everywhere at once; seeded keys are not affected. Raising it again makes
  recent keys fail again (a client whose view lags);
* ``key_management_status``: 0 (key management offered), or 404 or 405: every key-management
  call (Part 2) is answered with that status, as by an Encord that does not offer it; Part 1
  (whoami, bearer tokens) works as usual.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace

from rotator.core.errors import ConfigError

_RATES = ("error_rate", "throttle_rate", "drop_upload_rate")
_COUNTS = ("retry_after", "latency_ms", "propagation_ms")
_STATUSES = (0, 404, 405)  # key_management_status: offered, or answered with one of these
_FIELDS = (*_RATES, *_COUNTS, "key_management_status")


@dataclass(frozen=True, slots=True)
class Faults:
    """Fault settings; rates are probabilities in [0, 1], counts are non-negative integers."""

    error_rate: float = 0.0
    throttle_rate: float = 0.0
    retry_after: int = 1
    latency_ms: int = 0
    drop_upload_rate: float = 0.0
    propagation_ms: int = 0
    key_management_status: int = 0

    def __post_init__(self) -> None:
        problems = [_check(name, getattr(self, name)) for name in _FIELDS]
        if any(problems):
            raise ConfigError([p for p in problems if p])
        for name in _RATES:
            object.__setattr__(self, name, float(getattr(self, name)))

    def to_json(self) -> dict[str, float | int]:
        """The settings as ``GET /_sandbox/faults`` shows them."""
        return asdict(self)

    def updated(self, changes: Mapping[str, object]) -> Faults:
        """These settings with ``changes`` (a partial JSON object) applied; ConfigError if bad."""
        known = {f.name for f in fields(self)}
        unknown = sorted(str(k) for k in changes if k not in known)
        problems = [f"faults: unknown field {k!r}" for k in unknown]
        problems += [p for k, v in changes.items() if k in known and (p := _check(k, v))]
        if problems:
            raise ConfigError(problems)
        return replace(self, **changes)  # type: ignore[arg-type]


def _check(name: str, value: object) -> str:
    if name == "key_management_status":
        if isinstance(value, bool) or value not in _STATUSES:
            return f"{name}: expected 0, 404 or 405, got {value!r:.40}"
    elif name in _RATES:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            return f"{name}: expected a number between 0 and 1, got {value!r:.40}"
    elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return f"{name}: expected an integer >= 0, got {value!r:.40}"
    return ""

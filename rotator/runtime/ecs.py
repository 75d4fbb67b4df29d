"""ECS rendering: each log line as an Elastic Common Schema document (``ROTATOR_LOG_FORMAT=ecs``).

ecs-logging's :class:`~ecs_logging.StructlogFormatter` writes the document: ``@timestamp``,
``log.level`` and ``message`` first, ``ecs.version``, an exception's text as
``error.stack_trace``. Rotator's lines need one step before it, because rotator's top-level
string ``event`` would collide with ECS's ``event`` object and its own fields with ECS's
fields; :class:`EcsRenderer` moves each field where ECS wants it:

==============================  ================================================
rotator (``json``)              ECS (``ecs``)
==============================  ================================================
``timestamp``                   ``@timestamp``
``level``                       ``log.level``
``logger``                      ``log.logger``
``event`` (a rotator event)     ``event.action`` and ``message``
``event`` (a library's line)    ``message`` only: a sentence is no action
``service``, ``version``        ``service.name``, ``service.version``
``exception``                   ``error.stack_trace`` (text, without locals)
any other field                 under ``rotator``: ``rotator.account``, ...
==============================  ================================================

Under ``rotator`` a dot in a field's name becomes ``_``: ECS reads dots as nesting, and
``{"a": 1, "a.b": 2}`` could not be both. Redaction has run before this renderer (it is the
last processor before it), so every value moved here is already scrubbed.
"""

from __future__ import annotations

from typing import Any, Final

from ecs_logging import StructlogFormatter
from structlog.typing import EventDict, WrappedLogger

OWN_FIELDS: Final = "rotator"
"""The ECS object that holds rotator's own fields."""

_ECS_NAMES: Final = {
    "timestamp": "@timestamp",
    "level": "log.level",
    "logger": "log.logger",
    "service": "service.name",
    "version": "service.version",
    "exception": "exception",  # the formatter makes it error.stack_trace
}


def _undotted(value: Any) -> Any:
    """``value`` with every mapping key a string without dots, however deep."""
    if isinstance(value, dict):
        return {str(key).replace(".", "_"): _undotted(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_undotted(item) for item in value]
    return value


class EcsRenderer:
    """structlog renderer: one line of ECS JSON from an event dict of ``logs.configure``.

    Put it where ``remove_processors_meta`` would go last: it reads ``_from_structlog`` (is
    this one of rotator's events, or a library's line?) and drops ``_record``.
    """

    def __init__(self) -> None:
        self._format = StructlogFormatter()

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> str:
        rotators = event_dict.pop("_from_structlog", True) is not False
        event_dict.pop("_record", None)
        message = str(event_dict.pop("event", ""))
        document: dict[str, Any] = {"event": message}  # the formatter makes it ``message``
        if rotators:
            document["event.action"] = message
        for name, ecs_name in _ECS_NAMES.items():
            if name in event_dict:
                document[ecs_name] = event_dict.pop(name)
        if event_dict:
            document[OWN_FIELDS] = _undotted(event_dict)
        return self._format(logger, method_name, document)

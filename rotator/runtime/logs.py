"""structlog configuration, and the redaction processor every log line passes through.

:func:`configure` routes everything the process logs through one handler on the root
logger, rendered by one :class:`structlog.stdlib.ProcessorFormatter`:

- structlog events (``get_logger(...).info("key.registered", ...)``);
- stdlib ``logging`` records from libraries (hvac, urllib3, apscheduler, httpx...);
- Python warnings (``logging.captureWarnings``);
- uncaught exceptions in the main thread and in other threads, and "unraisable"
  exceptions (``__del__``, finalizers): one ``process.crashed`` / ``process.unraisable``
  event with a structured traceback instead of a raw dump on stderr.

The format is ``json``, ``console``, or ``auto`` (the default): console when the output
stream is a terminal, JSON otherwise (a pipe, a file, a container's log driver). ``ecs`` is
JSON in Elastic's schema (:mod:`rotator.runtime.ecs`).

In ``json`` mode each of those is one JSON object per line, with ``event``, ``level``,
``logger``, an ISO-8601 UTC ``timestamp``, and ``service`` (``rotator``) and ``version``
(``rotator.__version__``) so a collector can tell which release wrote it. Every event,
whatever its source, passes through :func:`redact` last before rendering.
"""

from __future__ import annotations

import logging
import sys
import threading
import types
from typing import Any, Final, TextIO

import structlog
from structlog.processors import ExceptionRenderer
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, Processor, WrappedLogger

from rotator import __version__
from rotator.core.redaction import (  # re-exported: the public face of logging
    MAX_SECRETS,
    MIN_SECRET_LENGTH,
    REDACTED,
    forget_secrets,
    redact,
    register_secret,
    scrub,
)

__all__ = [
    "FORMATS",
    "LEVELS",
    "MAX_SECRETS",
    "MIN_SECRET_LENGTH",
    "REDACTED",
    "SERVICE",
    "configure",
    "forget_secrets",
    "get_logger",
    "redact",
    "register_secret",
    "reset",
    "resolve_format",
    "scrub",
]

SERVICE: Final = "rotator"
FORMATS: Final = ("auto", "json", "console", "ecs")
LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

# Libraries whose INFO lines are per-request or per-job chatter.
_NOISY_LOGGERS: Final = ("httpx", "httpcore", "apscheduler")

# --------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------

_HANDLER_MARK: Final = "_rotator_handler"

# Hooks and the root level as they were before the first configure(), restored by reset().
_saved: dict[str, Any] = {}


def _shared_processors() -> list[Processor]:
    """What every event gets, structlog's own and foreign (stdlib) ones alike."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


_LEADING_KEYS: Final = ("timestamp", "level", "logger", "event")
_json_dumps = structlog.processors.JSONRenderer()


def _json_renderer(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> str:
    """One JSON object, ``timestamp``, ``level``, ``logger`` and ``event`` first for reading."""
    ordered = {key: event_dict.pop(key) for key in _LEADING_KEYS if key in event_dict}
    ordered.update(event_dict)
    return str(_json_dumps(logger, method_name, ordered))


def _add_service(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """``service`` and ``version`` on every line a machine reads, whatever wrote it.

    Both names are the process's own: no event passes fields of those names (a test holds
    rotator's log calls to that), so nothing of an event's is overwritten here.
    """
    event_dict["service"] = SERVICE
    event_dict["version"] = __version__
    return event_dict


def _foreign_stack(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """A stdlib record's ``stack_info`` (already text) under the key structlog uses."""
    stack = event_dict.pop("stack_info", None)
    if isinstance(stack, str):
        event_dict["stack"] = stack
    return event_dict


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (ValueError, OSError):  # closed, or not a file descriptor after all
        return False


def resolve_format(fmt: str, stream: TextIO) -> str:
    """``fmt``, with ``auto`` decided for ``stream``: ``console`` on a terminal, else ``json``."""
    if fmt != "auto":
        return fmt
    return "console" if _is_terminal(stream) else "json"


def _renderer_chain(fmt: str, stream: TextIO) -> list[Processor]:
    """Exception rendering, then redaction, then the renderer."""
    if fmt == "ecs":
        from rotator.runtime.ecs import EcsRenderer  # ecs-logging, loaded only when asked for

        # Exceptions as text: ECS's error.stack_trace is one string. EcsRenderer reads the
        # formatter's meta keys (a library's line or rotator's?) and drops them itself.
        return [
            _foreign_stack,
            structlog.processors.format_exc_info,
            _add_service,
            redact,
            EcsRenderer(),
        ]
    if fmt == "json":
        # Structured traceback; no locals: a frame's locals may hold a key or a token.
        exceptions: Processor = ExceptionRenderer(ExceptionDictTransformer(show_locals=False))
        renderer: Processor = _json_renderer
        identify: list[Processor] = [_add_service]
    else:
        # Rendered to text *before* redaction, so the console shows the scrubbed text.
        exceptions = structlog.processors.format_exc_info
        renderer = structlog.dev.ConsoleRenderer(colors=_is_terminal(stream))
        identify = []  # a person at a terminal knows what they started
    return [
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
        _foreign_stack,
        exceptions,
        *identify,
        redact,
        renderer,
    ]


def configure(*, fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """Send every log line of the process, rendered as ``fmt``, to ``stream`` (stdout).

    ``fmt`` is ``auto`` (see :func:`resolve_format`), ``json``, ``console`` or ``ecs``;
    ``level`` is ``debug``, ``info``, ``warning`` or ``error``. Safe to call again: the
    previous configuration is replaced, not stacked.
    """
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, got {level!r}")
    out = stream if stream is not None else sys.stdout
    numeric_level = LEVELS[level]

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        context_class=dict,
        # Not cached: loggers must follow a later configure() and capture_logs().
        cache_logger_on_first_use=False,
    )

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=_renderer_chain(resolve_format(fmt, out), out),
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARK, True)

    root = logging.getLogger()
    # This process logs through one handler: drop ours from an earlier call and any a
    # library or basicConfig() added, so no line escapes in another format.
    for old in list(root.handlers):
        root.removeHandler(old)
        if getattr(old, _HANDLER_MARK, False):
            old.close()
    root.addHandler(handler)
    _saved.setdefault("root.level", root.level)
    root.setLevel(numeric_level)
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, numeric_level))

    logging.captureWarnings(True)
    _install_hooks()


def reset() -> None:
    """Undo :func:`configure`: remove its handler, restore the hooks it replaced, and
    reset structlog to its defaults (for tests)."""
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, _HANDLER_MARK, False):
            root.removeHandler(old)
            old.close()
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)
    logging.captureWarnings(False)
    if _saved:
        root.setLevel(_saved.pop("root.level"))
        sys.excepthook = _saved.pop("sys.excepthook")
        threading.excepthook = _saved.pop("threading.excepthook")
        sys.unraisablehook = _saved.pop("sys.unraisablehook")
    structlog.reset_defaults()


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    """A structlog logger named ``name`` (the calling module's name when omitted)."""
    if name is None:
        name = str(sys._getframe(1).f_globals.get("__name__", "rotator"))
    return structlog.stdlib.get_logger(name)


# --------------------------------------------------------------------------------------
# Uncaught exceptions
# --------------------------------------------------------------------------------------

_crash_log = structlog.stdlib.get_logger("rotator.crash")


def _excepthook(
    exc_type: type[BaseException],
    exc: BaseException,
    tb: types.TracebackType | None,
) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        _crash_log.warning("process.interrupted", exc_type=exc_type.__name__)
        return
    _crash_log.critical(
        "process.crashed",
        exc_type=exc_type.__name__,
        thread=threading.current_thread().name,
        exc_info=(exc_type, exc, tb),
    )


def _threading_excepthook(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return  # what threading's own hook does: a thread's sys.exit() is no crash
    exc = args.exc_value if args.exc_value is not None else args.exc_type()
    _crash_log.critical(
        "process.crashed",
        exc_type=args.exc_type.__name__,
        thread=args.thread.name if args.thread is not None else None,
        exc_info=(args.exc_type, exc, args.exc_traceback),
    )


def _unraisablehook(unraisable: Any) -> None:
    exc_type = unraisable.exc_type
    exc_info = (
        (exc_type, unraisable.exc_value, unraisable.exc_traceback)
        if unraisable.exc_value is not None
        else None
    )
    _crash_log.error(
        "process.unraisable",
        exc_type=exc_type.__name__,
        where=unraisable.err_msg or "Exception ignored in",
        object=repr(unraisable.object) if unraisable.object is not None else None,
        exc_info=exc_info,
    )


def _install_hooks() -> None:
    if "sys.excepthook" not in _saved:
        _saved["sys.excepthook"] = sys.excepthook
        _saved["threading.excepthook"] = threading.excepthook
        _saved["sys.unraisablehook"] = sys.unraisablehook
    sys.excepthook = _excepthook
    threading.excepthook = _threading_excepthook
    sys.unraisablehook = _unraisablehook

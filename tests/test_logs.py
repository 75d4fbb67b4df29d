"""Logging: every line JSON with an ``event``, and no secret ever in one."""

from __future__ import annotations

import ast
import io
import json
import logging
import os
import pty
import secrets
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

import rotator
from rotator.core import keys
from rotator.runtime import logs

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import gc, logging, os, sys, threading, warnings
from rotator.runtime import logs

logs.configure(fmt="json", level="info")
key = os.environ["T_KEY"]
token = os.environ["T_TOKEN"]
registered = os.environ["T_REGISTERED"]
logs.register_secret(registered)
log = logs.get_logger("child")

log.info("key.registered", private_key=key, public_key="ssh-ed25519 AAAA", key_id="ab" * 32)
log.info("vault.login", note=f"used {token}", nested={"deep": [{"secret_id": "sid-1"}, key]})
log.warning("rotation.note", detail=f"the registered value {registered} leaked")
logging.getLogger("hvac").warning("request failed with token %s and %s", token, registered)
logging.getLogger("urllib3.connectionpool").error("header Authorization: Bearer %s", registered)
logging.getLogger("httpx").info("HTTP Request: GET https://api.encord.com 200 OK")
logging.getLogger("apscheduler.executors.default").info("Running job 'check' (trigger)")
warnings.warn(f"deprecated call with {token}", DeprecationWarning)
warnings.warn(f"careful with {registered}", UserWarning)
try:
    raise ValueError("bad key:\n" + key)
except ValueError:
    log.exception("rotation.failed")


class Leaky:
    def __del__(self):
        raise RuntimeError(f"finalizer saw {registered}")


Leaky()
gc.collect()

def worker():
    raise RuntimeError(f"worker holds {token}\n{key}")

thread = threading.Thread(target=worker, name="worker-1")
thread.start()
thread.join()
raise RuntimeError(f"main holds {registered} and {key}")
"""


@pytest.fixture
def clean_logging() -> Iterator[None]:
    """Undo configure() and forget registered secrets after the test."""
    yield
    logs.reset()
    logs.forget_secrets()


def configured(fmt: str = "json", level: str = "info") -> io.StringIO:
    """Configure logging into a fresh buffer and return it."""
    buffer = io.StringIO()
    logs.configure(fmt=fmt, level=level, stream=buffer)
    return buffer


def lines_of(buffer: io.StringIO) -> list[dict[str, Any]]:
    """The JSON objects written to ``buffer``, one per line."""
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_subprocess_writes_only_json_and_no_secret() -> None:
    """Structlog, stdlib, warnings, finalizer, thread and main-thread crashes all come out as
    one JSON object per line with an event, and none carries a key, a token or a registered
    secret."""
    pair = keys.generate("test")
    token = "hvs." + secrets.token_urlsafe(18)[:24]
    registered = "reg-" + secrets.token_hex(16)
    env = {
        **os.environ,
        "T_KEY": pair.private_openssh,
        "T_TOKEN": token,
        "T_REGISTERED": registered,
        "PYTHONWARNINGS": "always",
    }
    result = subprocess.run(
        [sys.executable, "-c", CHILD],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    output = result.stdout + result.stderr
    lines = output.splitlines()
    assert lines, "the child wrote nothing"
    records = []
    for line in lines:
        record = json.loads(line)  # every single line parses
        assert isinstance(record, dict) and "event" in record, line
        records.append(record)

    body_lines = [
        line
        for line in pair.private_openssh.splitlines()
        if line and "PRIVATE KEY" not in line
    ]
    for secret in [pair.private_openssh, token, token[4:], registered, "sid-1", *body_lines]:
        assert secret not in output

    by_event = {r["event"]: r for r in records}
    assert by_event["key.registered"]["private_key"] == "[redacted]"
    assert by_event["key.registered"]["key_id"] == "ab" * 32
    assert by_event["vault.login"]["nested"]["deep"][0]["secret_id"] == "[redacted]"
    hvac = [r for r in records if r.get("logger") == "hvac"]
    assert len(hvac) == 1 and hvac[0]["level"] == "warning"
    assert any(r.get("logger") == "urllib3.connectionpool" for r in records)
    assert not any(r.get("logger", "").startswith(("httpx", "apscheduler")) for r in records)
    warned = [r for r in records if r.get("logger") == "py.warnings"]
    assert len(warned) == 2
    assert all("[redacted]" in r["event"] for r in warned)
    failed = by_event["rotation.failed"]
    assert failed["exception"][0]["exc_type"] == "ValueError"
    assert "[redacted]" in failed["exception"][0]["exc_value"]
    assert by_event["process.unraisable"]["exc_type"] == "RuntimeError"
    crashes = [r for r in records if r["event"] == "process.crashed"]
    assert [c["thread"] for c in crashes] == ["worker-1", "MainThread"]
    for crash in crashes:
        assert crash["level"] == "critical"
        assert crash["exc_type"] == "RuntimeError"
        assert isinstance(crash["exception"][0]["frames"], list)
    for record in records:
        assert record["timestamp"].endswith("Z")
        assert {"level", "logger"} <= record.keys()
        # library lines, warnings and crashes included: each names what wrote it
        assert (record["service"], record["version"]) == ("rotator", rotator.__version__)


# ---------------------------------------------------------------- the redaction processor


def test_redact_masks_secret_named_fields_recursively() -> None:
    """Values under secret-looking keys are masked at any depth; others are kept."""
    event = {
        "event": "vault.wrote",
        "private_key": "anything",
        "PrivateKey": "anything",
        "bearer_token": "abc",
        "Authorization": "Basic Zm9vOmJhcg==",
        "key_id": "ab" * 32,
        "count": 3,
        "nested": {
            "data": {"password": "pw", "secret_id": "sid", "path": "encord/ml/ssh-key"},
            "items": [{"client_secret": "cs"}, ("x", {"api_token": 1})],
        },
        "has_token": False,
        "token_hint": None,
    }
    out = logs.redact(None, "info", event)
    assert out["private_key"] == out["PrivateKey"] == out["bearer_token"] == "[redacted]"
    assert out["Authorization"] == "[redacted]"
    assert out["key_id"] == "ab" * 32 and out["count"] == 3
    assert out["nested"] == {
        "data": {"password": "[redacted]", "secret_id": "[redacted]", "path": "encord/ml/ssh-key"},
        "items": [{"client_secret": "[redacted]"}, ["x", {"api_token": "[redacted]"}]],
    }
    assert out["has_token"] is False and out["token_hint"] is None


@pytest.mark.parametrize(
    "secret",
    [
        keys.generate().private_openssh,
        keys.generate().private_openssh.replace("\n", "\\n"),  # as repr() shows it
        "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIGl\n-----END PRIVATE KEY-----",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA",  # cut short
        "hvs.CAESIJlU2sAbCdEfGhIjKlMnOp",
        "hvb.AAAAAQJ2nWqhEFfGGhh_xyzABCDEFGH",
        "s.Q2dv3mZxZxZxZxZxZxZxZxZx",
        "Bearer eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJzYSJ9.c2ln",
        "bearer abc.def-ghi",
    ],
)
def test_scrub_masks_secret_text(secret: str) -> None:
    """Private-key blocks, Vault tokens and bearer credentials are masked inside any string."""
    out = logs.redact(None, "info", {"event": "x", "detail": f"before {secret} after"})
    assert secret not in out["detail"]
    assert out["detail"].startswith("before [redacted]")


@pytest.mark.parametrize(
    "text",
    [
        "rotator.engine",
        "s.short",
        "key ab" + "cd" * 31,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGl7 rotator",
        "files.abcdefghijklmnopqrstuvwxyz",
        "the bearer of bad news",
    ],
)
def test_scrub_leaves_ordinary_text(text: str) -> None:
    """Public keys, key ids, module paths and plain words are not mistaken for secrets."""
    assert logs.scrub(text) == text


def test_registered_secrets_are_masked(clean_logging: None) -> None:
    """A registered value is masked wherever it appears, and short values are not registered."""
    value = "x7" * 20
    logs.register_secret(value)
    logs.register_secret("short")
    out = logs.redact(None, "info", {"event": f"got {value}", "list": [f"<{value}>"]})
    assert out == {"event": "got [redacted]", "list": ["<[redacted]>"]}
    assert logs.scrub("a short word") == "a short word"
    logs.forget_secrets()
    assert logs.scrub(value) == value


def test_registered_secrets_are_bounded(clean_logging: None) -> None:
    """Only the most recent MAX_SECRETS values are remembered, so memory stays bounded."""
    first = "first-secret-" + "0" * 10
    logs.register_secret(first)
    for index in range(logs.MAX_SECRETS):
        logs.register_secret(f"later-secret-{index:012d}")
    assert logs.scrub(first) == first
    assert logs.scrub(f"later-secret-{logs.MAX_SECRETS - 1:012d}") == "[redacted]"


def test_objects_are_rendered_then_scrubbed() -> None:
    """Values of other types are replaced by their scrubbed repr, as the renderers would show."""

    class Holder:
        def __repr__(self) -> str:
            return "Holder(hvs.CAESIJlU2sAbCdEfGhIjKlMnOp)"

    out = logs.redact(None, "info", {"event": "x", "obj": Holder()})
    assert out["obj"] == "Holder([redacted])"


# ---------------------------------------------------------------- configure()


def test_json_lines_have_the_standard_fields(clean_logging: None) -> None:
    """A structlog event and a stdlib record each render as one JSON object with the fields."""
    buffer = configured()
    logs.get_logger("rotator.test").info("daemon.started", accounts=2)
    logging.getLogger("hvac.adapters").warning("retrying %s", "GET")
    first, second = lines_of(buffer)
    assert list(first)[:4] == ["timestamp", "level", "logger", "event"]
    assert first["event"] == "daemon.started" and first["accounts"] == 2
    assert first["logger"] == "rotator.test" and first["level"] == "info"
    assert first["timestamp"].endswith("Z") and "T" in first["timestamp"]
    assert first["service"] == "rotator" and first["version"] == rotator.__version__
    assert second == {
        "timestamp": second["timestamp"],
        "level": "warning",
        "logger": "hvac.adapters",
        "event": "retrying GET",
        "service": "rotator",
        "version": rotator.__version__,
    }


def _log_call_keywords(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, keyword) of every call that looks like a log call: ``x.info("a.b", k=...)``."""
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in LOG_METHODS
        ):
            yield from ((node.lineno, kw.arg) for kw in node.keywords if kw.arg is not None)


LOG_METHODS = frozenset({"debug", "info", "warning", "error", "exception", "critical", "bind"})


def test_no_event_passes_a_field_named_service_or_version() -> None:
    """``service`` and ``version`` name the process on every line, so no log call in rotator
    may pass a field of either name (it would be overwritten): the Vault version of a write
    is ``vault_version``."""
    clashes = []
    for path in sorted((ROOT / "rotator").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        clashes += [
            f"{path.relative_to(ROOT)}:{line}: {name}="
            for line, name in _log_call_keywords(tree)
            if name in ("service", "version")
        ]
    assert not clashes
    # the scan sees real log calls: the one that used to pass version= is found by its new name
    bearer = ast.parse((ROOT / "rotator/core/bearer.py").read_text(encoding="utf-8"))
    assert "vault_version" in {name for _, name in _log_call_keywords(bearer)}


def test_tracebacks_are_structured_without_locals(clean_logging: None) -> None:
    """An exception renders as structured frames that never include the frames' locals."""
    buffer = configured()

    def fail(stash: str) -> None:
        raise RuntimeError("boom")

    try:
        fail("a local a secret could hide in")
    except RuntimeError:
        logs.get_logger("t").exception("rotation.failed")
    (record,) = lines_of(buffer)
    (exc,) = record["exception"]
    assert exc["exc_type"] == "RuntimeError" and exc["exc_value"] == "boom"
    assert exc["frames"][-1]["name"] == "fail"
    assert all("locals" not in frame for frame in exc["frames"])
    assert "a local a secret" not in buffer.getvalue()


def test_stack_info_is_one_field(clean_logging: None) -> None:
    """stack_info from structlog or from a stdlib record becomes a ``stack`` text field."""
    buffer = configured()
    logs.get_logger("t").info("here", stack_info=True)
    logging.getLogger("lib").warning("there", stack_info=True)
    first, second = lines_of(buffer)
    assert "test_stack_info_is_one_field" in first["stack"]
    assert "test_stack_info_is_one_field" in second["stack"]
    assert "stack_info" not in first and "stack_info" not in second


def test_get_logger_defaults_to_the_calling_module(clean_logging: None) -> None:
    """get_logger() without a name names the logger after the module that asked for it."""
    buffer = configured()
    logs.get_logger().info("x.happened")
    assert lines_of(buffer)[0]["logger"] == __name__


def test_bound_context_appears_in_library_lines(clean_logging: None) -> None:
    """Context bound with contextvars reaches stdlib records logged during the job too."""
    buffer = configured()
    with structlog.contextvars.bound_contextvars(account="ml", run_id="r1"):
        logging.getLogger("hvac").warning("slow")
    assert lines_of(buffer)[0] | {"timestamp": None} == {
        "timestamp": None,
        "level": "warning",
        "logger": "hvac",
        "event": "slow",
        "account": "ml",
        "run_id": "r1",
        "service": "rotator",
        "version": rotator.__version__,
    }


def test_levels_and_noisy_libraries(clean_logging: None) -> None:
    """The level filters both kinds of events; httpx/httpcore/apscheduler INFO is silenced."""
    buffer = configured(level="warning")
    log = logs.get_logger("rotator.test")
    log.info("dropped")
    log.warning("kept.structlog")
    logging.getLogger("other").info("dropped too")
    logging.getLogger("other").error("kept.stdlib")
    assert [r["event"] for r in lines_of(buffer)] == ["kept.structlog", "kept.stdlib"]

    buffer = configured(level="debug")
    logs.get_logger("rotator.test").debug("kept.debug")
    for name in ("httpx", "httpcore.connection", "apscheduler.scheduler"):
        logging.getLogger(name).info("chatter")
    logging.getLogger("apscheduler.executors.default").warning("job missed")
    assert [r["event"] for r in lines_of(buffer)] == ["kept.debug", "job missed"]


def test_configure_twice_replaces_instead_of_stacking(clean_logging: None) -> None:
    """A second configure() leaves one handler, so each event is written once, to the new stream."""
    old = configured()
    new = configured()
    logs.get_logger("t").info("once")
    assert old.getvalue() == ""
    assert [r["event"] for r in lines_of(new)] == ["once"]
    assert len(logging.getLogger().handlers) == 1


def test_capture_logs_still_works(clean_logging: None) -> None:
    """structlog.testing.capture_logs sees events after configure(), and nothing is written."""
    buffer = configured()
    with capture_logs() as captured:
        logs.get_logger("t").info("key.revoked", key_id="k1")
    assert captured == [{"event": "key.revoked", "key_id": "k1", "log_level": "info"}]
    assert buffer.getvalue() == ""


def test_console_mode_renders_readable_redacted_lines(clean_logging: None) -> None:
    """Console mode writes key=value text without colours to a non-tty, still redacted."""
    pair = keys.generate()
    buffer = configured(fmt="console")
    log = logs.get_logger("rotator.test")
    log.info("key.registered", key_id="k1", private_key=pair.private_openssh)
    try:
        raise ValueError(pair.private_openssh)
    except ValueError:
        log.exception("rotation.failed")
    text = buffer.getvalue()
    assert "key.registered" in text and "key_id=k1" in text and "private_key=[redacted]" in text
    assert "rotation.failed" in text and "ValueError: [redacted]" in text
    assert "Traceback" in text
    assert "\x1b[" not in text
    assert pair.private_openssh not in text
    assert pair.private_openssh.splitlines()[1] not in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])


class Stream(io.StringIO):
    """A text stream that says whether it is a terminal."""

    def __init__(self, *, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_auto_is_the_default_and_writes_json_off_a_terminal(clean_logging: None) -> None:
    """``auto`` (also configure()'s default) writes JSON with every field to a stream that is
    not a terminal: a pipe, a file, a container's log driver."""
    key = keys.generate().private_openssh
    for fmt in ("auto", None):
        stream = Stream(tty=False)
        if fmt is None:
            logs.configure(stream=stream)
        else:
            logs.configure(fmt=fmt, stream=stream)
        logs.get_logger("rotator.test").info("key.registered", private_key=key)
        logging.getLogger("hvac").warning("slow")
        first, second = lines_of(stream)
        assert first["event"] == "key.registered" and first["private_key"] == "[redacted]"
        assert second["logger"] == "hvac" and second["service"] == "rotator"
        assert key not in stream.getvalue()


def test_auto_writes_console_lines_on_a_terminal(clean_logging: None) -> None:
    """``auto`` writes coloured console lines to a terminal, still redacted."""
    pair = keys.generate()
    stream = Stream(tty=True)
    logs.configure(fmt="auto", stream=stream)
    log = logs.get_logger("rotator.test")
    log.info("key.registered", key_id="k1", private_key=pair.private_openssh)
    text = stream.getvalue()
    assert "key.registered" in text and "\x1b[" in text  # colours: a terminal reads it
    assert "[redacted]" in text and pair.private_openssh.splitlines()[1] not in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])


@pytest.mark.parametrize(
    ("fmt", "tty", "resolved"),
    [
        ("auto", True, "console"),
        ("auto", False, "json"),
        ("json", True, "json"),
        ("console", False, "console"),
    ],
)
def test_resolve_format(fmt: str, tty: bool, resolved: str) -> None:
    """Only ``auto`` looks at the stream; an explicit format is kept whatever the stream."""
    assert logs.resolve_format(fmt, Stream(tty=tty)) == resolved


def test_resolve_format_of_a_closed_stream_is_json() -> None:
    """A stream that cannot say (closed: isatty() raises) is no terminal: JSON."""
    class Closed(io.StringIO):
        def isatty(self) -> bool:
            raise ValueError("I/O operation on closed file")

    assert logs.resolve_format("auto", Closed()) == "json"
    assert logs.resolve_format("auto", io.StringIO()) == "json"


def _rotator_child(stderr: int | None = None) -> subprocess.Popen[str]:
    """``rotator`` with a usage error, with no ROTATOR_LOG_FORMAT: the default decides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROTATOR_")}
    return subprocess.Popen(
        [sys.executable, "-m", "rotator", "no-such-command"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if stderr is None else stderr,
        text=True,
    )


def test_usage_error_on_a_pipe_is_a_json_line() -> None:
    """By default a usage error written to a pipe is one JSON log line like every other."""
    child = _rotator_child()
    out, err = child.communicate(timeout=60)
    assert child.returncode == 2 and out == ""
    (line,) = err.splitlines()
    record = json.loads(line)
    assert record["event"] == "cli.usage_error" and record["level"] == "error"
    assert "no-such-command" in record["error"]
    assert (record["service"], record["version"]) == ("rotator", rotator.__version__)


def test_usage_error_on_a_terminal_is_argparse_text() -> None:
    """By default a usage error written to a terminal is argparse's own line, for a person."""
    main, replica = pty.openpty()
    try:
        child = _rotator_child(stderr=replica)
        os.close(replica)
        replica = -1
        child.communicate(timeout=60)
        chunks = []
        while True:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(main)
        if replica >= 0:
            os.close(replica)
    text = b"".join(chunks).decode()
    assert child.returncode == 2
    assert "rotator: error:" in text and "no-such-command" in text
    assert not text.lstrip().startswith("{")


def test_warnings_are_logged(clean_logging: None) -> None:
    """A Python warning becomes a py.warnings event instead of raw stderr text."""
    buffer = configured()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        logging.captureWarnings(True)  # catch_warnings restored the showwarning it replaced
        warnings.warn("old api", DeprecationWarning, stacklevel=1)
    (record,) = lines_of(buffer)
    assert record["logger"] == "py.warnings" and "old api" in record["event"]


def test_keyboard_interrupt_is_one_line(clean_logging: None) -> None:
    """An uncaught Ctrl-C is logged as process.interrupted, without a traceback."""
    buffer = configured()
    sys.excepthook(KeyboardInterrupt, KeyboardInterrupt(), None)
    (record,) = lines_of(buffer)
    assert record["event"] == "process.interrupted" and "exception" not in record


def test_reset_restores_hooks(clean_logging: None) -> None:
    """reset() puts back the exception hooks and removes the handler configure() installed."""
    before = (sys.excepthook, sys.unraisablehook)
    configured()
    configured()
    assert sys.excepthook is not before[0]
    logs.reset()
    assert (sys.excepthook, sys.unraisablehook) == before
    assert not any(getattr(h, "_rotator_handler", False) for h in logging.getLogger().handlers)


@pytest.mark.parametrize(("fmt", "level"), [("xml", "info"), ("json", "trace")])
def test_configure_rejects_unknown_format_or_level(fmt: str, level: str) -> None:
    """configure() refuses a format or level it does not know, before changing anything."""
    with pytest.raises(ValueError, match="must be one of"):
        logs.configure(fmt=fmt, level=level, stream=io.StringIO())


def test_every_bearer_token_and_private_key_rotator_handles_is_registered() -> None:
    """As the README says: a bearer token Encord mints and every private key rotator makes
    or loads are masked in any later log text, even a key's body line out of its armour."""
    import httpx

    from rotator.adapters.encord.client import EncordClient

    token = "tok-" + "q7" * 20  # no Bearer prefix, no secret-looking name: only registration
    answer = httpx.Response(200, json={"token": token})
    with EncordClient(
        "https://encord.test", transport=httpx.MockTransport(lambda request: answer)
    ) as client:
        assert client.bearer_token().token == token
    assert token not in logs.scrub(f"consumer got {token} from Vault")

    made = keys.generate()
    body = made.private_openssh.splitlines()[1]
    assert body not in logs.scrub(f"a line cut out of a made key: {body}")
    logs.forget_secrets()  # as if the key had been read from Vault by a new process
    assert body in logs.scrub(body)
    keys.load_private(made.private_openssh)
    assert body not in logs.scrub(f"a line cut out of a loaded key: {body}")

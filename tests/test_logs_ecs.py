"""ROTATOR_LOG_FORMAT=ecs: every line an Elastic Common Schema document, and no secret in one."""

from __future__ import annotations

import io
import json
import logging
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

import rotator
from rotator.core import keys
from rotator.runtime import logs
from tests.test_logs import CHILD, ROOT

TOKEN = "hvs.CAESIJlU2sAbCdEfGhIjKlMnOp"


@pytest.fixture(autouse=True)
def clean_logging() -> Iterator[None]:
    """Undo configure() and forget registered secrets after each test."""
    yield
    logs.reset()
    logs.forget_secrets()


def ecs_lines(emit: Any) -> tuple[list[dict[str, Any]], str]:
    """Configure ``ecs`` into a buffer, call ``emit()``, return the documents and the text."""
    buffer = io.StringIO()
    logs.configure(fmt="ecs", stream=buffer)
    emit()
    text = buffer.getvalue()
    return [json.loads(line) for line in text.splitlines()], text


def test_a_rotator_event_is_an_ecs_document() -> None:
    """A rotator event: ECS's fields in place, the event name as event.action and message,
    rotator's own fields (bound context included) under ``rotator``."""

    def emit() -> None:
        with structlog.contextvars.bound_contextvars(account="ml", run_id="r1"):
            logs.get_logger("rotator.engine").info("key.registered", key_id="k1", attempt=2)

    (doc,), text = ecs_lines(emit)
    assert list(doc)[:3] == ["@timestamp", "log.level", "message"]
    assert doc["@timestamp"].endswith("Z") and "T" in doc["@timestamp"]
    assert doc["log.level"] == "info"
    assert doc["message"] == "key.registered"
    assert doc["event"] == {"action": "key.registered"}
    assert doc["ecs.version"]
    assert doc["log"] == {"logger": "rotator.engine"}
    assert doc["service"] == {"name": "rotator", "version": rotator.__version__}
    assert doc["rotator"] == {"account": "ml", "run_id": "r1", "key_id": "k1", "attempt": 2}
    assert set(doc) == {"@timestamp", "log.level", "message", "event", "ecs.version", "log",
                        "service", "rotator"}


def test_a_library_line_is_a_message_without_an_action() -> None:
    """A library's line keeps its sentence as the message; it names no event.action."""
    (doc,), _ = ecs_lines(lambda: logging.getLogger("hvac.adapters").warning("retrying %s", "GET"))
    assert doc["message"] == "retrying GET" and doc["log.level"] == "warning"
    assert doc["log"] == {"logger": "hvac.adapters"}
    assert "event" not in doc and "rotator" not in doc
    assert doc["service"]["name"] == "rotator" and doc["ecs.version"]


def test_secrets_are_redacted_in_ecs_lines() -> None:
    """A private key and a Vault token, in fields, nested, in text and in an exception, never
    reach an ECS line; the traceback is error.stack_trace text."""
    pair = keys.generate()
    registered = "reg-" + secrets.token_hex(16)
    logs.register_secret(registered)

    def emit() -> None:
        log = logs.get_logger("rotator.engine")
        log.info("key.registered", private_key=pair.private_openssh, vault_token=TOKEN)
        log.info("vault.login", nested={"deep": [{"secret_id": "sid-1"}, f"used {TOKEN}"]})
        logging.getLogger("hvac").warning("token %s and %s", TOKEN, registered)
        try:
            raise ValueError("bad key:\n" + pair.private_openssh)
        except ValueError:
            log.exception("rotation.failed")

    (first, second, library, failed), text = ecs_lines(emit)
    body = [line for line in pair.private_openssh.splitlines() if "PRIVATE KEY" not in line]
    for secret in [pair.private_openssh, TOKEN, TOKEN[4:], registered, "sid-1", *body]:
        assert secret not in text
    assert first["rotator"] == {"private_key": "[redacted]", "vault_token": "[redacted]"}
    assert second["rotator"]["nested"]["deep"] == [{"secret_id": "[redacted]"}, "used [redacted]"]
    assert library["message"] == "token [redacted] and [redacted]"
    assert failed["event"] == {"action": "rotation.failed"} and failed["log.level"] == "error"
    trace = failed["error"]["stack_trace"]
    assert "Traceback" in trace and "ValueError: bad key:\n[redacted]" in trace


def test_odd_field_names_still_make_a_document() -> None:
    """Dotted or non-string keys in rotator's fields cannot break the line (ECS reads dots as
    nesting): dots become underscores under ``rotator``."""

    def emit() -> None:
        logs.get_logger("t").info("odd.fields", **{"a": 1, "a.b": 2}, table={3: "x", "c.d": [{}]})

    (doc,), _ = ecs_lines(emit)
    assert doc["rotator"] == {"a": 1, "a_b": 2, "table": {"3": "x", "c_d": [{}]}}


def test_ecs_subprocess_every_line_and_no_secret() -> None:
    """Structlog, stdlib, warnings, finalizer, thread and main-thread crashes: in ``ecs``
    each is one ECS document per line (event.action for rotator's own events), none with a
    key, a token or a registered secret."""
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
    child = CHILD.replace('logs.configure(fmt="json"', 'logs.configure(fmt="ecs"')
    assert child != CHILD
    result = subprocess.run(
        [sys.executable, "-c", child],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    output = result.stdout + result.stderr
    docs = [json.loads(line) for line in output.splitlines()]  # every single line parses
    assert docs, "the child wrote nothing"
    body = [line for line in pair.private_openssh.splitlines() if "PRIVATE KEY" not in line]
    for secret in [pair.private_openssh, token, token[4:], registered, "sid-1", *body]:
        assert secret not in output
    for doc in docs:
        assert doc["ecs.version"] and doc["@timestamp"].endswith("Z") and doc["log.level"]
        assert doc["service"] == {"name": "rotator", "version": rotator.__version__}
    actions = [doc["event"]["action"] for doc in docs if "event" in doc]
    assert {"key.registered", "rotation.failed", "process.unraisable"} <= set(actions)
    assert actions.count("process.crashed") == 2
    crash = next(doc for doc in docs if doc.get("event") == {"action": "process.crashed"})
    assert crash["log.level"] == "critical" and "RuntimeError" in crash["error"]["stack_trace"]
    warned = [doc for doc in docs if doc["log"]["logger"] == "py.warnings"]
    assert len(warned) == 2 and all("event" not in doc for doc in warned)


def test_cli_usage_error_in_ecs() -> None:
    """`rotator` with ROTATOR_LOG_FORMAT=ecs reports a usage error as one ECS line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROTATOR_")}
    result = subprocess.run(
        [sys.executable, "-m", "rotator", "no-such-command"],
        cwd=ROOT,
        env={**env, "ROTATOR_LOG_FORMAT": "ecs"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    doc = json.loads(line)
    assert doc["event"] == {"action": "cli.usage_error"} and doc["log.level"] == "error"
    assert "no-such-command" in doc["rotator"]["error"] and doc["ecs.version"]

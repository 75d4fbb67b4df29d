"""Pytest plugin: no secret in anything the test suite logs or prints.

Every test's captured stdout, stderr and log records, and the text of every failure, are
scanned for private keys (OpenSSH/PEM blocks, or the base64 of ``openssh-key-v1`` that
starts every OpenSSH private key body), OpenBao dev root tokens and Vault service tokens,
and every secret value the suite handled: private keys made by :func:`rotator.core.keys.generate`
and bearer tokens answered to :class:`rotator.adapters.encord.client.EncordClient`, plus any value a
test hands to :func:`remember` (keys and tokens a daemon subprocess made, read back from
Vault). A ``Bearer <credential>`` is caught even when its value was never seen.

Texts that never reach pytest's capture are added to the same session-wide check:
:func:`scan_later` for any text (subprocess output), :func:`note_exception` for every
exception a test catches and keeps going after (its ``str``, ``repr`` and whole formatted
chain). Tests may also fail at once with :func:`assert_no_secrets`.

A finding fails the session (naming the test and the kind of secret, never the secret).
"""

from __future__ import annotations

import re
import threading
import traceback
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any

import pytest

from rotator.adapters.encord import client as encord_client
from rotator.core import keys
from rotator.core.vocab import BearerToken

PATTERN = re.compile(
    r"(?P<private_key_block>-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----)"
    # base64("openssh-key-v1"): the start of every OpenSSH private key body
    r"|(?P<openssh_key_body>b3BlbnNzaC1rZXktdjE)"
    r"|(?P<openbao_dev_root_token>\bdev-[A-Za-z0-9_-]{32}\b)"
    # Vault/OpenBao service, batch and recovery tokens, and the legacy service form
    r"|(?P<vault_token>\bhv[sbr]\.[A-Za-z0-9_-]{20,}|\bs\.[A-Za-z0-9]{24}\b)"
    # An HTTP bearer credential (not a redacted one): "Bearer <16+ token characters>"
    r"|(?P<bearer_credential>\b[Bb]earer\s+(?!\[redacted\])[A-Za-z0-9._~+/=-]{16,})"
)

_known: set[str] = set()
_lock = threading.Lock()
_findings: list[str] = []
_stats = {"texts": 0, "exceptions": 0}


class _Current:
    """The test now running (findings of scan_later/note_exception name it)."""

    nodeid = "(outside a test)"
    planting = False  # marked plants_secrets: it shows secrets on purpose


def remember(value: str) -> None:
    """Add a secret value the scan must never find."""
    if len(value) >= 16:
        with _lock:
            _known.add(value)


def find_secrets(text: str) -> list[str]:
    """Kinds of secret found in ``text`` (empty when clean); never the secret itself."""
    found = [str(m.lastgroup) for m in PATTERN.finditer(text)]
    with _lock:
        known = list(_known)
    for value in known:
        if value in text:
            found.append("a secret value handled by the suite")
            continue
        # A private key's body lines, e.g. if logged with its armour stripped.
        for line in value.splitlines():
            if len(line) >= 40 and "PRIVATE KEY" not in line and line in text:
                found.append("a line of a private key")
                break
    return found


def assert_no_secrets(text: str, where: str = "output") -> None:
    """Fail the calling test if ``text`` holds a secret."""
    found = find_secrets(text)
    assert not found, f"secret material in {where}: {sorted(set(found))}"


def scan_later(text: str, where: str = "output") -> None:
    """Add ``text`` to the session-wide scan: a finding fails the session, naming the running
    test and ``where`` (never the secret). For texts pytest does not capture itself."""
    found = find_secrets(text)
    with _lock:
        _stats["texts"] += 1
        if found and not _Current.planting:
            _findings.append(f"{_Current.nodeid} ({where}): {sorted(set(found))}")


def note_exception(exc: BaseException, where: str = "exception") -> None:
    """Scan an exception a test caught (``str``, ``repr``, the formatted chain with causes)."""
    text = exception_text(exc)
    with _lock:
        _stats["exceptions"] += 1
    scan_later(text, f"{where}: {type(exc).__name__}")


def exception_text(exc: BaseException) -> str:
    """Everything an exception could show: ``str``, ``repr``, the formatted chain."""
    return "\n".join([str(exc), repr(exc), "".join(traceback.format_exception(exc))])


def exception_chain_texts(exc: BaseException) -> Iterator[str]:
    """``str``, ``repr`` and the args (both ways) of an exception and of everything on its
    ``__cause__``/``__context__`` chain: each place a secret could hide in it."""
    todo: list[BaseException] = [exc]
    seen: set[int] = set()
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield str(current)
        yield repr(current)
        for arg in current.args:
            yield str(arg)
            yield repr(arg)
        todo.extend(x for x in (current.__cause__, current.__context__) if x is not None)


def stats() -> dict[str, int]:
    """How many texts and exceptions :func:`scan_later`/:func:`note_exception` scanned."""
    with _lock:
        return dict(_stats)


def _wrap_generate(original: Callable[..., keys.KeyPair]) -> Callable[..., keys.KeyPair]:
    def generate(*args: Any, **kwargs: Any) -> keys.KeyPair:
        pair = original(*args, **kwargs)
        remember(pair.private_openssh)
        return pair

    return generate


def _wrap_bearer(
    original: Callable[[encord_client.EncordClient], BearerToken],
) -> Callable[[encord_client.EncordClient], BearerToken]:
    def bearer_token(self: encord_client.EncordClient) -> BearerToken:
        token = original(self)
        remember(token.token)
        return token

    return bearer_token


keys.generate = _wrap_generate(keys.generate)
encord_client.EncordClient.bearer_token = _wrap_bearer(  # type: ignore[method-assign,assignment]
    encord_client.EncordClient.bearer_token
)


def _texts(report: pytest.TestReport) -> Iterable[str]:
    for _, content in report.sections:
        yield content
    if report.failed:
        yield report.longreprtext


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    with _lock:
        _Current.nodeid = item.nodeid
        _Current.planting = item.get_closest_marker("plants_secrets") is not None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if item.get_closest_marker("plants_secrets") is not None:
        return
    for text in _texts(report):
        found = find_secrets(text)
        if found:
            _findings.append(f"{item.nodeid} ({report.when}): {sorted(set(found))}")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "plants_secrets: the test prints secrets on purpose to prove the scanner finds them",
    )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _findings:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        lines = ["secret scan: secret material in test output:", *_findings]
        if reporter is not None:
            for line in lines:
                reporter.write_line(line, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    counts = stats()
    if counts["texts"]:
        terminalreporter.write_line(
            f"secret scan: also checked {counts['texts']} subprocess/exception texts "
            f"({counts['exceptions']} exceptions): "
            + ("clean" if not _findings else f"{len(_findings)} finding(s)")
        )

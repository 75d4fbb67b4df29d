"""Every Encord call is bounded in time and in size, whatever the server does (issue: hostile
endpoints). Each test points the real client at a local hostile server (tests/hostile.py).

Before the bounds, a server dripping one byte every few seconds held a call for as long as it
dripped (httpx's timeouts are per read), and a 150 MiB answer was read whole into memory."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable

import pytest

from rotator.adapters.encord.client import Bounds, EncordClient, RetryPolicy
from rotator.adapters.encord.signing import EncordAuth
from rotator.core import keys
from rotator.core.errors import AmbiguousWrite, ProtocolError, RegistryUnavailable, RotatorError
from tests.hostile import Behaviour, HostileServer

BOUNDS = Bounds(
    attempt_seconds=1.0, call_seconds=2.5, max_answer_bytes=64 << 10, max_list_bytes=128 << 10
)
SLACK = 1.5  # seconds: scheduling on a loaded machine, closing sockets


def _client(url: str) -> EncordClient:
    return EncordClient(
        url,
        EncordAuth(keys.generate()),
        retry=RetryPolicy(attempts=4, base_delay=0.05, max_delay=0.1),
        bounds=BOUNDS,
    )


CALLS: dict[str, Callable[[EncordClient], object]] = {
    "whoami": lambda c: c.whoami(),
    "list_keys": lambda c: c.list_keys("sa-1"),
    "bearer_token": lambda c: c.bearer_token(),
    "delete_key": lambda c: c.delete_key("sa-1", "kh-1"),
}


@pytest.mark.parametrize("behaviour", ["drip_headers", "drip_body", "silent"])
@pytest.mark.parametrize("call", sorted(CALLS))
def test_a_dripping_or_silent_server_cannot_hold_a_call(behaviour: Behaviour, call: str) -> None:
    """A call gives up within its total deadline (retries included), as RegistryUnavailable."""
    with HostileServer(behaviour, interval=0.2) as server, _client(server.url) as client:
        started = time.monotonic()
        with pytest.raises(RegistryUnavailable) as caught:
            CALLS[call](client)
        elapsed = time.monotonic() - started
    assert elapsed < BOUNDS.call_seconds + SLACK, f"{call} held for {elapsed:.1f}s"
    assert f"Encord {call}" in str(caught.value)
    assert len(server.seen) >= 2  # it did retry within the deadline


@pytest.mark.parametrize("behaviour", ["huge_body", "endless_chunked"])
@pytest.mark.parametrize("call", ["whoami", "list_keys", "bearer_token"])
def test_a_huge_or_endless_answer_is_cut_off_at_the_cap(behaviour: Behaviour, call: str) -> None:
    """The client stops reading at the cap: memory stays bounded, and the error names the cap."""
    with HostileServer(behaviour) as server, _client(server.url) as client:
        tracemalloc.start()
        started = time.monotonic()
        try:
            with pytest.raises(ProtocolError) as caught:
                CALLS[call](client)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        elapsed = time.monotonic() - started
    assert "answer larger than 65536 bytes" in str(caught.value)
    assert peak < 4 << 20, f"peak {peak} bytes while reading a {behaviour} answer"
    assert elapsed < BOUNDS.call_seconds + SLACK


def test_a_lost_generate_answer_is_ambiguous_not_retried() -> None:
    """A key-creating POST whose answer is huge is never sent twice: it may have acted."""
    with (
        HostileServer("huge_body") as server,
        _client(server.url) as client,
        pytest.raises(AmbiguousWrite),
    ):
        client.generate_key("sa-1", "rotator:t")
    assert [s.request_line.split()[0] for s in server.seen] == ["POST"]


def test_an_upload_that_drips_is_resolved_by_listing_within_bounds() -> None:
    """A dripping upload answer times out once; the list that should settle it times out too:
    the upload ends within two calls' deadlines with a RotatorError, never hangs."""
    pair = keys.generate()
    with HostileServer("drip_headers", interval=0.2) as server, _client(server.url) as client:
        started = time.monotonic()
        with pytest.raises(RotatorError):
            client.upload_key("sa-1", "rotator:t", pair.public_line)
        elapsed = time.monotonic() - started
    assert elapsed < BOUNDS.attempt_seconds + BOUNDS.call_seconds + SLACK
    assert [s.request_line.split()[0] for s in server.seen][0] == "POST"
    assert sum(s.request_line.startswith("POST") for s in server.seen) == 1


def test_bounds_are_validated() -> None:
    """Nonsense bounds are refused at construction."""
    with pytest.raises(ValueError, match="attempt_seconds"):
        Bounds(attempt_seconds=5, call_seconds=1)
    with pytest.raises(ValueError, match="max_answer_bytes"):
        Bounds(max_answer_bytes=0)


@pytest.mark.parametrize("call", sorted(CALLS))
def test_a_redirect_is_never_followed_with_a_signature(call: str) -> None:
    """A 307 to another host (127.0.0.2 is loopback too) is refused as outside the contract;
    the other host receives nothing, so no signed request can be replayed there."""
    with (
        HostileServer("redirect", host="127.0.0.2") as elsewhere,
        HostileServer("redirect", location=elsewhere.url + "/v2/public/x") as server,
        _client(server.url) as client,
        pytest.raises(RotatorError) as caught,
    ):
        CALLS[call](client)
    assert elsewhere.seen == []
    assert "307" in str(caught.value)
    assert server.seen and "signature" in server.seen[0].headers

"""Our Encord client against the sandbox: the contract's error paths over a real socket."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from rotator.adapters.encord.client import EncordClient, RetryPolicy
from rotator.adapters.encord.signing import EncordAuth
from rotator.core import keys
from rotator.core.errors import AccessDenied, NotFound, RegistryRejected, RegistryUnavailable
from rotator.dev.sandbox import Faults
from tests.fixtures_sandbox import MakeSandbox, SandboxHandle
from tests.secret_scan import assert_no_secrets


class SleepRecorder:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def client_for(handle: SandboxHandle, sleep: SleepRecorder | None = None) -> EncordClient:
    kp = keys.load_private(handle.bootstrap_key_file.read_text())
    return EncordClient(
        handle.url,
        EncordAuth(kp),
        retry=RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05, max_retry_after=2.0),
        sleep=sleep or SleepRecorder(),
        rng=random.Random(7),
    )


@pytest.fixture
def client(sandbox: SandboxHandle) -> Iterator[EncordClient]:
    with client_for(sandbox) as c:
        yield c


def test_cap_reached_is_rejected_with_its_code(
    sandbox: SandboxHandle, client: EncordClient
) -> None:
    """The sixth key on a cap-5 account: RegistryRejected(KEY_LIMIT_REACHED), nothing added."""
    for i in range(4):
        client.upload_key("sa-alpha", f"k{i}", keys.generate().public_line)
    with pytest.raises(RegistryRejected) as info:
        client.upload_key("sa-alpha", "one-too-many", keys.generate().public_line)
    assert info.value.code == "KEY_LIMIT_REACHED" and info.value.status == 400
    assert len(client.list_keys("sa-alpha")) == 5


def test_duplicate_public_key_is_rejected(sandbox: SandboxHandle, client: EncordClient) -> None:
    """The same public key twice: RegistryRejected(DUPLICATE_KEY, 409)."""
    line = keys.generate().public_line
    client.upload_key("sa-alpha", "first", line)
    with pytest.raises(RegistryRejected) as info:
        client.upload_key("sa-alpha", "again", line)
    assert info.value.code == "DUPLICATE_KEY" and info.value.status == 409


def test_delete_unknown_key_is_not_found(client: EncordClient) -> None:
    """Deleting a key hash the account does not hold: NotFound."""
    with pytest.raises(NotFound):
        client.delete_key("sa-alpha", "no-such-key")


def test_deleted_key_no_longer_authenticates(sandbox: SandboxHandle, client: EncordClient) -> None:
    """Upload, delete, then sign with the deleted key: AccessDenied(401)."""
    kp = keys.generate()
    key = client.upload_key("sa-alpha", "short-lived", kp.public_line)
    with client.with_auth(EncordAuth(kp)) as probe:
        probe.whoami()
    client.delete_key("sa-alpha", key.key_hash)
    with client.with_auth(EncordAuth(kp)) as probe, pytest.raises(AccessDenied) as info:
        probe.whoami()
    assert info.value.status == 401


def test_throttling_is_retried_honouring_capped_retry_after(make_sandbox: MakeSandbox) -> None:
    """Every call 429 with Retry-After 60: retried with the 2 s cap, then RegistryUnavailable."""
    handle = make_sandbox(faults=Faults(throttle_rate=1.0, retry_after=60))
    sleep = SleepRecorder()
    with client_for(handle, sleep) as c, pytest.raises(RegistryUnavailable) as info:
        c.list_keys("sa-alpha")
    assert sleep.calls == [2.0, 2.0, 2.0]
    assert info.value.retry_after == 60


def test_500_bursts_are_ridden_out(make_sandbox: MakeSandbox) -> None:
    """With half the calls answered 500, listing still succeeds within the retry budget."""
    handle = make_sandbox(faults=Faults(error_rate=0.5))
    ok = 0
    with client_for(handle) as c:
        for _ in range(20):
            try:
                c.list_keys("sa-alpha")
                ok += 1
            except RegistryUnavailable:
                pass
    assert ok >= 14  # expected ~18.75; far below means retries are not happening


def test_dropped_upload_answer_creates_exactly_one_key(make_sandbox: MakeSandbox) -> None:
    """The upload is committed and its connection dropped: the client finds it by listing."""
    handle = make_sandbox(faults=Faults(drop_upload_rate=1.0))
    kp = keys.generate()
    with client_for(handle) as c:
        key = c.upload_key("sa-alpha", "dropped", kp.public_line)
        listed = c.list_keys("sa-alpha")
    assert key.key_id == kp.key_id
    assert [k.key_id for k in listed].count(kp.key_id) == 1
    assert len(listed) == 2
    lines = handle.journal_path.read_text().splitlines() if handle.journal_path else []
    assert sum('"key.added"' in line for line in lines) == 2  # bootstrap + this one only


def test_generate_returns_a_working_private_key_once(
    sandbox: SandboxHandle, client: EncordClient
) -> None:
    """Encord-generated key: the private half signs, and no error text carries it."""
    generated = client.generate_key("sa-alpha", "api-key")
    kp = keys.load_private(generated.private_openssh)
    assert kp.key_id == generated.key.key_id and generated.key.origin == "generated"
    with client.with_auth(EncordAuth(kp)) as probe:
        probe.whoami()
        token = probe.bearer_token()
    assert token.token and token.token not in repr(token)
    assert_no_secrets(repr(generated) + repr(token))

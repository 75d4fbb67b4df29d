"""The Encord sandbox: the real SDK against it, and Part 2 of the contract over raw httpx."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic.warnings import PydanticDeprecatedSince212

from rotator.adapters.encord.signing import EncordAuth, sign
from rotator.core import keys
from rotator.core.errors import ConfigError
from rotator.core.keys import KeyPair
from rotator.core.vocab import parse_rfc3339
from rotator.dev.sandbox import Faults, Sandbox, SeedConfig
from rotator.dev.sandbox.api import Reply, Request, is_loopback
from rotator.dev.sandbox.cli import main
from rotator.dev.sandbox.store import Refused, Store, may_manage
from tests.fixtures_sandbox import MakeSandbox, SandboxHandle

# The SDK trips a pydantic deprecation warning at import; filterwarnings=error would fail it.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", PydanticDeprecatedSince212)
    from encord.exceptions import AuthenticationError, RateLimitExceededError
    from encord.http.constants import RequestsSettings
    from encord.user_client import EncordUserClient

TIMEOUT = 5.0
# No retries and short timeouts: the SDK's defaults retry with back-off and wait 180 s.
FAST = RequestsSettings(
    max_retries=0, connection_retries=0, connect_timeout=5, read_timeout=5, write_timeout=5
)
TAGS = "/v2/public/organisation/organisation-tags"
BEARER = "/v2/public/user/bearer-token"


class FakeClock:
    """Real time shifted by ``offset`` seconds (the SDK signs with real time)."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    def __call__(self) -> float:
        return time.time() + self.offset


def keys_path(sa: str) -> str:
    return f"/v2/public/service-accounts/{sa}/keys"


def bootstrap(handle: SandboxHandle) -> KeyPair:
    return keys.load_private(handle.bootstrap_key_file.read_text())


def client(handle: SandboxHandle, key: KeyPair, **auth: Any) -> httpx.Client:
    return httpx.Client(base_url=handle.url, auth=EncordAuth(key, **auth), timeout=TIMEOUT)


def upload(c: httpx.Client, sa: str, pair: KeyPair, title: str = "t") -> httpx.Response:
    return c.post(keys_path(sa), json={"title": title, "publicKey": pair.public_line})


def list_all(c: httpx.Client, sa: str) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    params: dict[str, str] = {}
    while True:
        r = c.get(keys_path(sa), params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        results += page["results"]
        if page["nextPageToken"] is None:
            return results
        params = {"pageToken": page["nextPageToken"]}


def journal(handle: SandboxHandle) -> list[dict[str, Any]]:
    assert handle.journal_path is not None
    return [json.loads(line) for line in handle.journal_path.read_text().splitlines()]


def sdk(handle: SandboxHandle, key_text: str) -> EncordUserClient:
    return EncordUserClient.create_with_ssh_private_key(
        key_text, domain=handle.url, requests_settings=FAST
    )


def seed_of(folder: Path, *accounts: tuple[str, str, str]) -> dict[str, Any]:
    """Accounts as (name, role, organisation); hash ``sa-<name>``, key file in ``folder``."""
    return {
        "service_accounts": [
            {
                "name": name,
                "hash": f"sa-{name}",
                "role": role,
                "organisation": org,
                "bootstrap_key_file": str(folder / f"{name}.key"),
            }
            for name, role, org in accounts
        ]
    }


# -- the real SDK ---------------------------------------------------------------------


def test_sdk_authenticates_with_bootstrap_key(sandbox: SandboxHandle) -> None:
    """The encord SDK, given the bootstrap key file's text, lists tags and mints a token."""
    user = sdk(sandbox, sandbox.bootstrap_key_file.read_text())
    assert user.list_organisation_tags() == []
    assert isinstance(user.get_bearer_token(), str)


def test_bootstrap_key_file_is_private_and_registered(sandbox: SandboxHandle) -> None:
    """The bootstrap key file is mode 0600 and holds the key the account has registered."""
    assert sandbox.bootstrap_key_file.stat().st_mode & 0o777 == 0o600
    [key] = sandbox.sandbox.keys("alpha")
    assert key.key_id == bootstrap(sandbox).key_id
    assert (key.title, key.origin) == ("bootstrap", "uploaded")


def test_sdk_unknown_key_is_authentication_error(sandbox: SandboxHandle) -> None:
    """A key the sandbox never registered gets 401, which the SDK raises as AuthenticationError."""
    stranger = keys.generate()
    with pytest.raises(AuthenticationError):
        sdk(sandbox, stranger.private_openssh).list_organisation_tags()
    [line] = [j for j in journal(sandbox) if j["event"] == "auth.failed"]
    assert (line["key_id"], line["reason"], line["account"]) == (
        stranger.key_id,
        "unknown key",
        None,
    )


def test_sdk_deleted_key_is_authentication_error(sandbox: SandboxHandle) -> None:
    """Once the bootstrap key is deleted (by the account's second key), the SDK gets 401."""
    first, second = bootstrap(sandbox), keys.generate()
    with client(sandbox, first) as c:
        assert upload(c, sandbox.account_hash, second).status_code == 200
        [old] = [k for k in list_all(c, sandbox.account_hash) if k["keyId"] == first.key_id]
    with client(sandbox, second) as c:
        assert c.delete(f"{keys_path(sandbox.account_hash)}/{old['keyHash']}").status_code == 204
    with pytest.raises(AuthenticationError):
        sdk(sandbox, first.private_openssh).get_bearer_token()
    failed = [j for j in journal(sandbox) if j["event"] == "auth.failed"]
    assert [(j["key_id"], j["reason"], j["account"]) for j in failed] == [
        (first.key_id, "deleted key", None)
    ]


def test_sdk_bearer_token_accepted_until_it_expires(make_sandbox: MakeSandbox) -> None:
    """A minted token works with create_with_bearer_token, and is refused after token_ttl."""
    clock = FakeClock()
    handle = make_sandbox(clock=clock, token_ttl=60.0)
    token = sdk(handle, handle.bootstrap_key_file.read_text()).get_bearer_token()
    bearer = EncordUserClient.create_with_bearer_token(
        token, domain=handle.url, requests_settings=FAST
    )
    assert bearer.list_organisation_tags() == []
    clock.offset = 61
    with pytest.raises(AuthenticationError):
        bearer.list_organisation_tags()
    assert [j["reason"] for j in journal(handle) if j["event"] == "auth.failed"] == [
        "expired bearer token"
    ]


def test_bearer_token_only_for_organisation_tags(sandbox: SandboxHandle) -> None:
    """A bearer token does not authorise key management or minting; unknown tokens are refused."""
    with client(sandbox, bootstrap(sandbox)) as c:
        token = c.get(BEARER).json()["token"]
    with httpx.Client(base_url=sandbox.url, timeout=TIMEOUT) as raw:
        auth = {"Authorization": f"Bearer {token}"}
        assert raw.get(TAGS, headers=auth).status_code == 200
        assert raw.get(keys_path(sandbox.account_hash), headers=auth).status_code == 401
        assert raw.get(BEARER, headers=auth).status_code == 401
        assert raw.get(TAGS, headers={"Authorization": "Bearer nope"}).status_code == 401
        assert raw.get(TAGS).status_code == 401


def test_sdk_sees_injected_throttle(make_sandbox: MakeSandbox) -> None:
    """An injected 429 reaches the SDK as RateLimitExceededError with the Retry-After value."""
    handle = make_sandbox(faults=Faults(throttle_rate=1.0, retry_after=7))
    with pytest.raises(RateLimitExceededError) as caught:
        sdk(handle, handle.bootstrap_key_file.read_text()).list_organisation_tags()
    assert caught.value.retry_after == 7


# -- Part 2 over raw httpx ------------------------------------------------------------


def test_upload_and_generate_return_contract_keys(sandbox: SandboxHandle) -> None:
    """Upload answers the Key; generate adds a private key that loads and then authenticates."""
    pair = keys.generate("laptop")
    with client(sandbox, bootstrap(sandbox)) as c:
        r = upload(c, sandbox.account_hash, pair, title="mine")
        assert r.status_code == 200
        key = r.json()
        assert set(key) == {"keyHash", "keyId", "title", "publicKey", "origin", "createdAt"}
        assert (key["keyId"], key["title"], key["origin"]) == (pair.key_id, "mine", "uploaded")
        assert key["publicKey"] == pair.public_line
        g = c.post(keys_path(sandbox.account_hash) + "/generate", json={"title": "api"})
        assert g.status_code == 200
        made = g.json()
    assert made["origin"] == "generated" and made["keyHash"] != key["keyHash"]
    generated = keys.load_private(made["privateKey"])
    assert generated.key_id == made["keyId"] == keys.key_id_of_line(made["publicKey"])
    with client(sandbox, generated) as c2:
        listed = list_all(c2, sandbox.account_hash)
    assert "privateKey" not in json.dumps(listed)
    assert [k["title"] for k in listed] == ["bootstrap", "mine", "api"]
    stamps = [k["createdAt"] for k in listed]
    assert all(len(s) == len("2026-11-29T12:00:00.123456Z") and s.endswith("Z") for s in stamps)
    assert stamps == sorted(stamps) and len(set(stamps)) == 3


def test_key_limit_reached_at_cap(sandbox: SandboxHandle) -> None:
    """With 5 keys held, both upload and generate get 400 KEY_LIMIT_REACHED and add nothing."""
    with client(sandbox, bootstrap(sandbox)) as c:
        for _ in range(4):
            assert upload(c, sandbox.account_hash, keys.generate()).status_code == 200
        r = upload(c, sandbox.account_hash, keys.generate())
        g = c.post(keys_path(sandbox.account_hash) + "/generate", json={"title": "x"})
    for answer in (r, g):
        assert answer.status_code == 400
        assert answer.json()["code"] == "KEY_LIMIT_REACHED"
        assert answer.json()["message"]
    assert len(sandbox.sandbox.keys("alpha")) == 5


def test_duplicate_public_key_refused_across_accounts(
    make_sandbox: MakeSandbox, tmp_path: Path
) -> None:
    """A public key registered on one account is 409 DUPLICATE_KEY on any account, comment aside."""
    handle = make_sandbox(
        seed=seed_of(tmp_path, ("alpha", "member", "acme"), ("beta", "member", "acme"))
    )
    beta = keys.load_private((tmp_path / "beta.key").read_text())
    shared = keys.generate("one")
    with client(handle, bootstrap(handle)) as a, client(handle, beta) as b:
        assert upload(a, "sa-alpha", shared).status_code == 200
        again = b.post(
            keys_path("sa-beta"),
            json={"title": "t", "publicKey": shared.public_line.replace(" one", " other")},
        )
        same_account = upload(a, "sa-alpha", shared)
        alphas_bootstrap = upload(b, "sa-beta", bootstrap(handle))
    for r in (again, same_account, alphas_bootstrap):
        assert r.status_code == 409
        assert r.json()["code"] == "DUPLICATE_KEY"
    assert len(handle.sandbox.keys("beta")) == 1


@pytest.mark.parametrize(
    "public_key",
    [
        "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7",
        "ssh-ed25519 not-base64!",
        "ssh-ed25519",
        "",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPQrnVWUt/EiB9oiYqoboeMdc+/A0nuRsWzJBgNBEgTu\nx y",
    ],
)
def test_invalid_public_key_refused(sandbox: SandboxHandle, public_key: str) -> None:
    """Anything but one Ed25519 OpenSSH public line is 400 INVALID_PUBLIC_KEY."""
    with client(sandbox, bootstrap(sandbox)) as c:
        r = c.post(keys_path(sandbox.account_hash), json={"title": "t", "publicKey": public_key})
    assert r.status_code == 400
    assert r.json()["code"] == "INVALID_PUBLIC_KEY"


def test_private_key_posted_as_public_key_is_not_echoed(sandbox: SandboxHandle) -> None:
    """Posting a private key as publicKey is refused without quoting it, nor journaling it."""
    secret = keys.generate()
    with client(sandbox, bootstrap(sandbox)) as c:
        r = c.post(
            keys_path(sandbox.account_hash),
            json={"title": "t", "publicKey": secret.private_openssh},
        )
    assert r.status_code == 400 and r.json()["code"] == "INVALID_PUBLIC_KEY"
    body_line = secret.private_openssh.splitlines()[1]
    assert body_line not in r.text
    assert sandbox.journal_path is not None
    assert body_line not in sandbox.journal_path.read_text()


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"[1, 2]", "application/json"),
        (b'{"publicKey": "ssh-ed25519 AAAA"}', "application/json"),
        (b'{"title": 5}', "application/json"),
        (b'{"title": "t", "publicKey": 5}', "application/json"),
    ],
)
def test_malformed_body_is_400(sandbox: SandboxHandle, body: bytes, content_type: str) -> None:
    """A body that is not a JSON object with the contract's fields is 400 with a message."""
    with client(sandbox, bootstrap(sandbox)) as c:
        r = c.post(
            keys_path(sandbox.account_hash), content=body, headers={"Content-Type": content_type}
        )
    assert r.status_code == 400
    assert r.json()["message"] and r.json()["code"] == "INVALID_REQUEST"


def test_delete_key_and_unknown_key(sandbox: SandboxHandle) -> None:
    """DELETE answers 204 with no body and removes the key; an unknown key hash is 404."""
    extra = keys.generate()
    with client(sandbox, bootstrap(sandbox)) as c:
        made = upload(c, sandbox.account_hash, extra).json()
        gone = c.delete(f"{keys_path(sandbox.account_hash)}/{made['keyHash']}")
        assert (gone.status_code, gone.content) == (204, b"")
        again = c.delete(f"{keys_path(sandbox.account_hash)}/{made['keyHash']}")
        unknown = c.delete(f"{keys_path(sandbox.account_hash)}/no-such-key")
        assert [k["keyId"] for k in list_all(c, sandbox.account_hash)] == [
            bootstrap(sandbox).key_id
        ]
    for r in (again, unknown):
        assert r.status_code == 404 and r.json()["message"]


def test_pagination_over_more_than_a_page(make_sandbox: MakeSandbox, tmp_path: Path) -> None:
    """Seven keys come in pages of 3, 3, 1 with opaque tokens; bad or foreign tokens are 400."""
    seed = seed_of(tmp_path, ("alpha", "member", "acme"), ("beta", "member", "acme"))
    seed["service_accounts"][0]["key_cap"] = 7
    handle = make_sandbox(seed=seed, page_size=3)
    with client(handle, bootstrap(handle)) as c:
        uploaded = [keys.generate() for _ in range(6)]
        for pair in uploaded:
            assert upload(c, "sa-alpha", pair).status_code == 200
        sizes: list[int] = []
        seen: list[str] = []
        tokens: list[str] = []
        while True:
            params = {"pageToken": tokens[-1]} if tokens else {}
            page = c.get(keys_path("sa-alpha"), params=params).json()
            sizes.append(len(page["results"]))
            seen += [k["keyId"] for k in page["results"]]
            if page["nextPageToken"] is None:
                break
            tokens.append(page["nextPageToken"])
        bad = c.get(keys_path("sa-alpha"), params={"pageToken": "garbage"})
    assert sizes == [3, 3, 1]
    assert seen == [bootstrap(handle).key_id] + [p.key_id for p in uploaded]
    assert bad.status_code == 400 and bad.json()["code"] == "INVALID_PAGE_TOKEN"
    assert len(tokens) == 2 and all("sa-alpha" not in t for t in tokens)
    beta = keys.load_private((tmp_path / "beta.key").read_text())
    with client(handle, beta) as b:
        foreign = b.get(keys_path("sa-beta"), params={"pageToken": tokens[0]})
    assert foreign.status_code == 400


def test_authorisation_self_admin_and_others(make_sandbox: MakeSandbox, tmp_path: Path) -> None:
    """A member manages only itself; an admin manages its organisation; others get 403."""
    handle = make_sandbox(
        seed=seed_of(
            tmp_path,
            ("alpha", "member", "acme"),
            ("beta", "member", "acme"),
            ("boss", "admin", "acme"),
            ("outsider", "admin", "other"),
        )
    )

    def key_of(name: str) -> KeyPair:
        return keys.load_private((tmp_path / f"{name}.key").read_text())

    def status(who: str, method: str, sa: str) -> int:
        with client(handle, key_of(who)) as c:
            if method == "GET":
                return c.get(keys_path(sa)).status_code
            return upload(c, sa, keys.generate()).status_code

    assert status("alpha", "GET", "sa-alpha") == 200
    assert status("alpha", "GET", "sa-beta") == 403
    assert status("alpha", "POST", "sa-beta") == 403
    assert status("alpha", "GET", "sa-boss") == 403
    assert status("boss", "GET", "sa-alpha") == 200
    assert status("boss", "POST", "sa-beta") == 200
    assert status("outsider", "GET", "sa-alpha") == 403
    assert status("outsider", "POST", "sa-alpha") == 403
    assert status("alpha", "GET", "sa-nobody") == 404
    assert len(handle.sandbox.keys("beta")) == 2 and len(handle.sandbox.keys("alpha")) == 1


@pytest.mark.parametrize(
    ("offset", "expected"), [(-301, 401), (-300, 200), (0, 200), (300, 200), (301, 401)]
)
def test_signature_window_is_300_seconds(
    make_sandbox: MakeSandbox, offset: int, expected: int
) -> None:
    """A signature created more than 300 s from the sandbox clock is refused, within is accepted."""
    signed_at = int(time.time())
    handle = make_sandbox(clock=lambda: float(signed_at + offset))
    with client(handle, bootstrap(handle), clock=lambda: float(signed_at)) as c:
        assert c.get(TAGS).status_code == expected


def test_tampered_requests_are_401(sandbox: SandboxHandle) -> None:
    """A body, path or method other than the one signed is refused with 401 and journaled."""
    key = bootstrap(sandbox)
    target = keys_path(sandbox.account_hash)
    body = json.dumps({"title": "t", "publicKey": keys.generate().public_line}).encode()
    headers = sign(
        "POST",
        target,
        body,
        private_key=key.private_key,
        key_id=key.key_id,
        created=int(time.time()),
    )
    other_body = json.dumps({"title": "t", "publicKey": keys.generate().public_line}).encode()
    with httpx.Client(base_url=sandbox.url, timeout=TIMEOUT) as raw:
        tampered_body = raw.post(target, content=other_body, headers=headers)
        moved = raw.post(target + "/generate", content=body, headers=headers)
        as_get = raw.request("GET", target, content=body, headers=headers)
        query_added = raw.post(target + "?x=1", content=body, headers=headers)
        genuine = raw.post(target, content=body, headers=headers)
    assert [r.status_code for r in (tampered_body, moved, as_get, query_added)] == [401] * 4
    assert tampered_body.json()["message"]
    assert genuine.status_code == 200
    reasons = [j["reason"] for j in journal(sandbox) if j["event"] == "auth.failed"]
    assert reasons[0] == "content digest does not match the body"
    assert reasons[1:] == ["signature does not verify"] * 3
    assert all(j["account"] == "alpha" for j in journal(sandbox)[2:] if j["event"] == "auth.failed")


def test_request_target_is_checked_raw(sandbox: SandboxHandle) -> None:
    """The signature covers the path and query as sent: a percent-encoded target verifies as is."""
    with client(sandbox, bootstrap(sandbox)) as c:
        r = c.get(keys_path(sandbox.account_hash), params={"pageToken": "a b/c"})
    assert r.status_code == 400 and r.json()["code"] == "INVALID_PAGE_TOKEN"


# -- faults -----------------------------------------------------------------------------


def test_injected_500_and_429(make_sandbox: MakeSandbox) -> None:
    """error_rate=1 answers 500 "injected"; throttle_rate=1 answers 429 with Retry-After."""
    failing = make_sandbox(faults=Faults(error_rate=1.0))
    throttled = make_sandbox(faults=Faults(throttle_rate=1.0, retry_after=7))
    with client(failing, bootstrap(failing)) as c:
        r500 = upload(c, failing.account_hash, keys.generate())
    with client(throttled, bootstrap(throttled)) as c:
        r429 = upload(c, throttled.account_hash, keys.generate())
    assert (r500.status_code, r500.json()) == (500, {"message": "injected"})
    assert r429.status_code == 429 and r429.headers["Retry-After"] == "7"
    assert len(failing.sandbox.keys("alpha")) == len(throttled.sandbox.keys("alpha")) == 1


def test_injected_latency(make_sandbox: MakeSandbox) -> None:
    """latency_ms delays every /v2/public answer by at least that long."""
    handle = make_sandbox(faults=Faults(latency_ms=300))
    with client(handle, bootstrap(handle)) as c:
        started = time.monotonic()
        assert c.get(TAGS).status_code == 200
        assert time.monotonic() - started >= 0.3


def test_dropped_upload_is_committed(make_sandbox: MakeSandbox) -> None:
    """With drop_upload_rate=1 the connection closes unanswered, yet listing shows the key."""
    handle = make_sandbox(faults=Faults(drop_upload_rate=1.0))
    pair = keys.generate()
    with client(handle, bootstrap(handle)) as c:
        with pytest.raises(httpx.RemoteProtocolError):
            upload(c, handle.account_hash, pair)
        with pytest.raises(httpx.RemoteProtocolError):
            c.post(keys_path(handle.account_hash) + "/generate", json={"title": "api"})
        listed = list_all(c, handle.account_hash)
    assert pair.key_id in [k["keyId"] for k in listed]
    assert [k["origin"] for k in listed] == ["uploaded", "uploaded", "generated"]
    assert [j["key_count"] for j in journal(handle) if j["event"] == "key.added"] == [1, 2, 3]


def test_a_new_key_authenticates_only_once_propagated(make_sandbox: MakeSandbox) -> None:
    """propagation_ms: a key added through the API answers 401 until that long has passed
    (journalled as not propagated); raised again, it fails again; seeded keys never do."""
    shift = [0.0]  # the sandbox's clock, moved on by hand (within the signature window)
    handle = make_sandbox(faults=Faults(propagation_ms=5000), clock=lambda: time.time() + shift[0])
    pair = keys.generate()
    with client(handle, bootstrap(handle)) as c:
        assert upload(c, handle.account_hash, pair).status_code == 200
        assert c.get(TAGS).status_code == 200, "the seeded key is not affected"
    with client(handle, pair) as fresh:
        assert fresh.get(TAGS).status_code == 401
        shift[0] += 5
        assert fresh.get(TAGS).status_code == 200
        handle.sandbox.faults = Faults(propagation_ms=60_000)
        assert fresh.get(TAGS).status_code == 401
    failed = [j for j in journal(handle) if j["event"] == "auth.failed"]
    assert [j["reason"] for j in failed] == ["not propagated", "not propagated"]
    assert {j["key_id"] for j in failed} == {pair.key_id}


def test_faults_endpoint_reads_and_updates(sandbox: SandboxHandle) -> None:
    """PUT /_sandbox/faults changes only the given fields, takes effect, and refuses bad values."""
    with httpx.Client(base_url=sandbox.url, timeout=TIMEOUT) as raw:
        assert raw.get("/_sandbox/faults").json() == Faults().to_json()
        r = raw.put("/_sandbox/faults", json={"throttle_rate": 1, "retry_after": 3})
        assert r.status_code == 200
        assert r.json() == {**Faults().to_json(), "throttle_rate": 1.0, "retry_after": 3}
        assert sandbox.sandbox.faults == Faults(throttle_rate=1.0, retry_after=3)
        with client(sandbox, bootstrap(sandbox)) as c:
            throttled = c.get(TAGS)
        assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "3"
        assert raw.get("/_sandbox/faults").status_code == 200  # control API is never faulted
        for bad in ({"error_rate": 2}, {"latency_ms": -1}, {"nope": 1}, {"error_rate": True}):
            refused = raw.put("/_sandbox/faults", json=bad)
            assert refused.status_code == 400, bad
        assert raw.put("/_sandbox/faults", content=b"[]").status_code == 400
        assert raw.put("/_sandbox/faults", json={"throttle_rate": 0}).status_code == 200
    with client(sandbox, bootstrap(sandbox)) as c:
        assert c.get(TAGS).status_code == 200


def test_state_endpoint_shows_public_parts_only(sandbox: SandboxHandle) -> None:
    """GET /_sandbox/state lists accounts and keys, never a private key."""
    with client(sandbox, bootstrap(sandbox)) as c:
        made = c.post(keys_path(sandbox.account_hash) + "/generate", json={"title": "api"}).json()
    with httpx.Client(base_url=sandbox.url, timeout=TIMEOUT) as raw:
        state = raw.get("/_sandbox/state")
        assert raw.get("/_sandbox/nothing").status_code == 404
    [account] = state.json()["accounts"]
    assert (account["name"], account["hash"], account["key_cap"]) == ("alpha", "sa-alpha", 5)
    assert [k["keyId"] for k in account["keys"]] == [bootstrap(sandbox).key_id, made["keyId"]]
    assert "PRIVATE KEY" not in state.text


def test_control_api_is_loopback_only() -> None:
    """Only loopback client addresses (v4, v6, v4-mapped v6) may use /_sandbox."""
    for host in ("127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"):
        assert is_loopback(host), host
    for host in ("10.0.0.1", "192.168.1.5", "::ffff:10.0.0.1", "2001:db8::1", "not-an-ip"):
        assert not is_loopback(host), host


def test_request_and_reply_reprs_hide_secrets() -> None:
    """A Reply's body (private key, token) and a Request's headers and body never show in repr."""
    reply = Reply(200, {"token": "tok-secret", "privateKey": "pk-secret"})
    request = Request(
        "GET", "/x", {"Authorization": "Bearer tok-secret"}, b"pk-secret", client_host="::1"
    )
    for text in (repr(reply), repr(request)):
        assert "secret" not in text


def test_keys_helper_and_unknown_account(sandbox: SandboxHandle) -> None:
    """Sandbox.keys returns RemoteKey values with tz-aware times; an unknown account is KeyError."""
    [key] = sandbox.sandbox.keys("alpha")
    assert key.created_at.tzinfo is not None
    assert key.created_at == parse_rfc3339(key.created_at.isoformat())
    with pytest.raises(KeyError):
        sandbox.sandbox.keys("nobody")


def test_store_rules_without_http() -> None:
    """The store alone (what tests/fakes.py builds on): accounts added by hand, check_new_key
    refusing as add_key does (bad line, duplicate, cap; generate checks the cap only),
    enforce_cap=False letting an account pass its cap, may_manage's roles."""
    store = Store(clock=time.time, journal_path=None, state_path=None)
    alpha = store.add_account("alpha", "sa-alpha", key_cap=1)
    boss = store.add_account("boss", "sa-boss", role="admin", organisation="default")
    outsider = store.add_account("outsider", "sa-out", role="admin", organisation="other")
    with pytest.raises(ValueError, match="exists"):
        store.add_account("alpha", "sa-new")
    with pytest.raises(ValueError, match="exists"):
        store.add_account("new", "sa-alpha")
    pair = keys.generate()
    store.check_new_key(alpha, pair.public_line)
    store.check_new_key(alpha, None)
    store.add_key(alpha, title="t", public_line=pair.public_line, origin="uploaded")

    def code(public_line: str | None, **kwargs: bool) -> tuple[int, str]:
        with pytest.raises(Refused) as refused:
            store.check_new_key(alpha, public_line, **kwargs)
        return refused.value.status, refused.value.code

    assert code("ssh-rsa AAAA nope") == (400, "INVALID_PUBLIC_KEY")
    assert code(pair.public_line) == (409, "DUPLICATE_KEY")
    assert code(pair.public_line, enforce_cap=False) == (409, "DUPLICATE_KEY")
    assert code(keys.generate().public_line) == (400, "KEY_LIMIT_REACHED")
    assert code(None) == (400, "KEY_LIMIT_REACHED")
    store.check_new_key(alpha, None, enforce_cap=False)
    with pytest.raises(Refused):
        store.add_key(alpha, title="t", public_line=keys.generate().public_line, origin="uploaded")
    over = keys.generate().public_line
    store.add_key(alpha, title="t", public_line=over, origin="uploaded", enforce_cap=False)
    assert len(store.keys_of("alpha")) == 2
    assert may_manage(alpha, alpha) and may_manage(boss, alpha)
    assert not may_manage(alpha, boss) and not may_manage(outsider, alpha)


# -- journal, state, concurrency --------------------------------------------------------


def test_journal_lines_counts_and_no_secrets(
    sandbox: SandboxHandle, caplog: pytest.LogCaptureFixture
) -> None:
    """Each add/delete/failed auth is one line with the right count; no private key or token
    reaches the journal or the sandbox's debug log."""
    with caplog.at_level(logging.DEBUG, logger="rotator.sandbox"):
        with client(sandbox, bootstrap(sandbox)) as c:
            generated = c.post(keys_path(sandbox.account_hash) + "/generate", json={"title": "x"})
            made = generated.json()
            token = c.get(BEARER).json()["token"]
            c.delete(f"{keys_path(sandbox.account_hash)}/{made['keyHash']}")
        with client(sandbox, keys.generate()) as stranger:
            assert stranger.get(TAGS).status_code == 401
        with httpx.Client(base_url=sandbox.url, timeout=TIMEOUT) as raw:
            assert raw.get(TAGS, headers={"Authorization": f"Bearer {token}x"}).status_code == 401
    logged = caplog.text
    assert "/generate" in logged  # the request log is there, and it is clean:
    assert token not in logged and made["privateKey"].splitlines()[1] not in logged
    lines = journal(sandbox)
    assert [(j["event"], j["key_count"]) for j in lines] == [
        ("key.added", 1),
        ("key.added", 2),
        ("key.deleted", 1),
        ("auth.failed", None),
        ("auth.failed", None),
    ]
    base = {"ts", "event", "account", "account_hash", "key_id", "key_count", "reason"}
    # Key lines also name the key's title and the key id that signed the call (``by``).
    assert all(
        set(j) == (base | {"title", "by"} if j["event"].startswith("key.") else base)
        for j in lines
    )
    assert lines[1]["key_id"] == made["keyId"] and lines[1]["account_hash"] == "sa-alpha"
    assert all(parse_rfc3339(j["ts"]) for j in lines)
    assert sandbox.journal_path is not None
    text = sandbox.journal_path.read_text()
    assert "PRIVATE KEY" not in text
    assert made["privateKey"].splitlines()[1] not in text
    assert token not in text


def test_state_file_survives_restart(make_sandbox: MakeSandbox, tmp_path: Path) -> None:
    """Keys and tokens persist across a restart; no new bootstrap key is made."""
    state = tmp_path / "state.json"
    seed = seed_of(tmp_path, ("alpha", "member", "acme"))
    first = make_sandbox(seed=seed, state_path=state)
    key_text = first.bootstrap_key_file.read_text()
    with client(first, bootstrap(first)) as c:
        assert upload(c, "sa-alpha", keys.generate(), title="kept").status_code == 200
        token = c.get(BEARER).json()["token"]
    before = first.sandbox.keys("alpha")
    first.sandbox.stop()
    assert state.stat().st_mode & 0o777 == 0o600
    assert "PRIVATE KEY" not in state.read_text() and token not in state.read_text()

    second = make_sandbox(seed=seed, state_path=state)
    assert second.bootstrap_key_file.read_text() == key_text
    assert second.sandbox.keys("alpha") == before
    assert sdk(second, key_text).list_organisation_tags() == []
    bearer = EncordUserClient.create_with_bearer_token(
        token, domain=second.url, requests_settings=FAST
    )
    assert bearer.list_organisation_tags() == []


def test_concurrent_uploads_never_exceed_cap(sandbox: SandboxHandle) -> None:
    """Twenty parallel uploads to an account with room for four: exactly four succeed."""
    key = bootstrap(sandbox)
    statuses: list[int] = []
    lock = threading.Lock()

    def one() -> None:
        with client(sandbox, key) as c:
            code = upload(c, sandbox.account_hash, keys.generate()).status_code
        with lock:
            statuses.append(code)

    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200] * 4 + [400] * 16
    assert len(sandbox.sandbox.keys("alpha")) == 5
    assert [j["key_count"] for j in journal(sandbox)] == [1, 2, 3, 4, 5]


# -- seed, constructor and CLI ----------------------------------------------------------


def test_seed_validation_lists_every_problem(tmp_path: Path) -> None:
    """A bad seed raises one ConfigError naming each problem, and duplicates are refused."""
    with pytest.raises(ConfigError) as caught:
        SeedConfig.from_dict(
            {
                "service_accounts": [
                    {"name": "", "hash": "a/b", "key_cap": 0, "role": "owner", "x": 1}
                ]
            }
        )
    text = str(caught.value)
    for field in ("name", "hash", "key_cap", "role", "bootstrap_key_file", "unknown field 'x'"):
        assert field in text
    assert "\n" not in text
    twins = seed_of(tmp_path, ("a", "member", "o"), ("b", "member", "o"))
    twins["service_accounts"][1]["hash"] = "sa-a"
    with pytest.raises(ConfigError, match="duplicate hash sa-a"):
        SeedConfig.from_dict(twins)
    with pytest.raises(ConfigError, match="at least one"):
        SeedConfig.from_dict({"service_accounts": []})


def test_cli_bad_seed_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad seeds and bad arguments print one line on stderr and return 2."""
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{nope")
    bad_seed = tmp_path / "seed.json"
    bad_seed.write_text(json.dumps({"service_accounts": [{"name": "x"}]}))
    good = tmp_path / "good.json"
    good.write_text(json.dumps(seed_of(tmp_path, ("alpha", "member", "o"))))
    cases = [
        ["--seed", str(bad_json)],
        ["--seed", str(bad_seed)],
        ["--seed", str(tmp_path / "missing.json")],
        ["--seed", str(good), "--error-rate", "2"],
        ["--seed", str(good), "--port", "many"],
        ["--seed", str(good), "--page-size", "0"],
        ["--seed", str(good), "--bogus"],
        [],
    ]
    for argv in cases:
        assert main(argv) == 2, argv
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.count("\n") == 1 and captured.err.startswith("rotator sandbox: "), argv
    assert not (tmp_path / "alpha.key").exists()


def test_cli_serves_until_sigterm(tmp_path: Path) -> None:
    """The CLI prints sandbox.started with its URL, answers, and exits 0 on SIGTERM."""
    seed = tmp_path / "seed.json"
    seed.write_text(
        json.dumps(
            {"service_accounts": [{"name": "a", "hash": "sa-a", "bootstrap_key_file": "a.key"}]}
        )
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rotator.dev.sandbox",
            "--seed",
            str(seed),
            "--port",
            "0",
            "--journal",
            str(tmp_path / "j.jsonl"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    try:
        assert proc.stdout is not None
        started = json.loads(proc.stdout.readline())
        assert started["event"] == "sandbox.started"
        key = keys.load_private((tmp_path / "a.key").read_text())  # relative to the seed file
        with httpx.Client(base_url=started["url"], auth=EncordAuth(key), timeout=TIMEOUT) as c:
            assert c.get(TAGS).json() == {"results": [], "nextPageToken": None}
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1]) == {"event": "sandbox.stopped"}


def test_constructor_validation_and_single_start(tmp_path: Path) -> None:
    """Bad page_size/token_ttl are ConfigError; a Sandbox starts once and stops idempotently."""
    seed = seed_of(tmp_path, ("alpha", "member", "o"))
    with pytest.raises(ConfigError):
        Sandbox(seed, page_size=0)
    with pytest.raises(ConfigError):
        Sandbox(seed, token_ttl=0)
    box = Sandbox(seed)
    with box, pytest.raises(RuntimeError):
        box.start()
    box.stop()
    with pytest.raises(RuntimeError):
        _ = box.url

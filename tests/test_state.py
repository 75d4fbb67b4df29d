"""The state record: exact round trip, one-line CorruptState for nonsense, no private key shown."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings

from rotator.core.errors import CorruptState
from rotator.core.state import (
    AccountState,
    BearerState,
    KeyRecord,
    KindState,
    LastRun,
    Pending,
    from_dict,
    public_view,
    to_dict,
)
from tests.strategies import PRIVATE, account_states


@settings(max_examples=150)
@given(account_states)
def test_round_trip_is_exact(state: AccountState) -> None:
    """Any record survives to_dict, JSON and from_dict unchanged, version included."""
    data = json.loads(json.dumps(to_dict(state)))
    assert from_dict(data, state.version, account="alpha") == state


@settings(max_examples=60)
@given(account_states)
def test_no_private_key_in_public_view_or_reprs(state: AccountState) -> None:
    """public_view and the repr of the record and each of its parts never show a private key."""
    shown = [json.dumps(public_view(state)), repr(state)]
    for ks in state.kinds.values():
        shown += [repr(ks), repr(ks.current), repr(ks.pending), *map(repr, ks.retiring)]
    for text_shown in shown:
        assert "PRIVATE KEY" not in text_shown
        for pk in PRIVATE:
            assert pk.strip().splitlines()[1] not in text_shown


def test_public_view_keeps_everything_but_private_keys() -> None:
    """public_view drops exactly the private keys and keeps ids, titles and times."""
    t = datetime(2030, 1, 1, tzinfo=UTC)
    rec = KeyRecord("a" * 64, "kh", "ssh-ed25519 AAAA", "t", "uploaded", t, t, PRIVATE[0])
    pending = Pending("registered", "t", "r", t, key_id="b" * 64, private_key=PRIVATE[1])
    state = AccountState(
        kinds={"ssh-key": KindState(current=rec, retiring=(rec,), pending=pending)}
    )
    view = public_view(state)
    ks = view["kinds"]["ssh-key"]
    assert ks["current"]["key_id"] == "a" * 64 and "private_key" not in ks["current"]
    assert "private_key" not in ks["retiring"][0] and "private_key" not in ks["pending"]
    assert ks["pending"]["key_id"] == "b" * 64
    # to_dict itself is untouched (it is what Vault stores).
    assert to_dict(state)["kinds"]["ssh-key"]["current"]["private_key"] == PRIVATE[0]


def test_missing_record_is_empty_state() -> None:
    """No record at all reads as an empty state carrying the given version."""
    assert from_dict(None, 0, account="alpha") == AccountState()


# --- nonsense records ---------------------------------------------------------------------------


def _good() -> dict[str, Any]:
    t = datetime(2030, 1, 1, tzinfo=UTC)
    rec = KeyRecord("a" * 64, "kh", "ssh-ed25519 AAAA", "t", "uploaded", t, t, PRIVATE[0], t)
    state = AccountState(
        kinds={
            "ssh-key": KindState(
                current=rec,
                retiring=(rec,),
                pending=Pending("intent", "t", "r", t, key_id="c" * 64, private_key=PRIVATE[2]),
                last=LastRun("rotated", t, "due", key_id="a" * 64),
                last_success=t,
            )
        },
        bearer=BearerState(t, t, "a" * 64),
    )
    return to_dict(state)


def _set(path: str, value: object) -> dict[str, Any]:
    data = copy.deepcopy(_good())
    *parents, last = path.split(".")
    node: Any = data
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return data


_DELETE = object()
SSH = "kinds.ssh-key"

NONSENSE = [
    # (mutation, words the one-line message must contain)
    ("schema", 2, "schema"),
    ("schema", _DELETE, "schema"),
    ("kinds", [], "'kinds'"),
    ("kinds.rsa-key", {}, "'rsa-key'"),
    (f"{SSH}.current", "yes", "'current'"),
    (f"{SSH}.current.key_id", _DELETE, "'key_id'"),
    (f"{SSH}.current.key_id", 42, "'key_id'"),
    (f"{SSH}.current.private_key", "", "'private_key'"),
    (f"{SSH}.current.issued_at", "yesterday", "'issued_at'"),
    (f"{SSH}.current.expires_at", "2030-13-01T00:00:00Z", "'expires_at'"),
    (f"{SSH}.current.expires_at", "2030-01-01T00:00:00", "'expires_at'"),  # naive
    (f"{SSH}.current.origin", "stolen", "'current.origin'"),
    # times a duration could not be added to without OverflowError (far future, or past)
    (f"{SSH}.current.issued_at", "9999-12-31T23:59:59Z", "'issued_at' is out of range"),
    (f"{SSH}.last.at", "9000-01-01T00:00:00Z", "'at' is out of range"),
    ("bearer.expires_at", "0001-01-01T00:00:00Z", "'expires_at' is out of range"),
    (f"{SSH}.retiring", "none", "'retiring'"),
    (f"{SSH}.retiring.0.retire_after", 17, "'retire_after'"),
    (f"{SSH}.retiring.0.title", None, "'title'"),
    (f"{SSH}.pending.phase", "done", "'pending.phase'"),
    (f"{SSH}.pending.started_at", _DELETE, "'started_at'"),
    (f"{SSH}.pending.phase", "registered", "'key_id' and 'private_key'"),
    (f"{SSH}.last.at", "later", "'at'"),
    (f"{SSH}.last", ["rotated"], "'last'"),
    (f"{SSH}.last_success", 0, "'last_success'"),
    ("bearer.minted_with", _DELETE, "'minted_with'"),
    ("bearer", "token", "'bearer'"),
]


def test_good_record_parses() -> None:
    """The record the nonsense cases start from is itself valid (so each case tests one fault)."""
    assert from_dict(_good(), 3, account="alpha").version == 3


@pytest.mark.parametrize(("path", "value", "names"), NONSENSE, ids=[n[0] for n in NONSENSE])
def test_nonsense_raises_one_line_naming_the_field(path: str, value: object, names: str) -> None:
    """Each kind of nonsense raises CorruptState: one line, naming the field, no key text."""
    data = _set(path, value)
    if path == f"{SSH}.pending.phase" and value == "registered":
        data["kinds"]["ssh-key"]["pending"]["private_key"] = None
    with pytest.raises(CorruptState) as info:
        from_dict(data, 1, account="alpha")
    message = str(info.value)
    assert "\n" not in message
    assert names in message
    assert "account 'alpha'" in message
    assert "PRIVATE KEY" not in message


@pytest.mark.parametrize("root", [[], "x", 3])
def test_record_that_is_not_an_object(root: object) -> None:
    """A record that is not a JSON object at all is CorruptState, not a TypeError."""
    with pytest.raises(CorruptState, match="'record' is not an object"):
        from_dict(root, 1, account="alpha")  # type: ignore[arg-type]

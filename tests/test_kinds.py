"""Each credential kind described once: who makes the pair, how the key gets to Encord, what
a key found for an unfinished intent means; and the keys the record knows, for probing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import pytest

from rotator.core import keys
from rotator.core.errors import CorruptState
from rotator.core.kinds import KINDS, ApiKey, Held, SshKey, known_keys, spec
from rotator.core.ports import AwaitingPerson
from rotator.core.state import AccountState, KeyRecord, KindState, Pending
from rotator.core.vocab import KEY_KINDS, GeneratedKey, KnownKey, RemoteKey
from tests.fakes import START, FakeClock, FakeEncord, FakeRegistry

TITLE = "rotator:alpha:20300101T090000Z-abcdef"


def registry() -> tuple[FakeEncord, FakeRegistry]:
    encord = FakeEncord(FakeClock())
    encord.add_account("sa-alpha")
    signer = keys.generate()
    encord.add_key("sa-alpha", signer.public_line, "signer")
    return encord, encord.registry("sa-alpha", signer)


class PersonRegistry(FakeRegistry):
    """A registrar that leaves registering to a person."""

    def upload_key(self, title: str, public_line: str) -> RemoteKey | AwaitingPerson:
        return AwaitingPerson("add it")

    def generate_key(self, title: str) -> GeneratedKey | AwaitingPerson:
        return AwaitingPerson("not here")


def test_every_kind_is_described_once() -> None:
    """Each key kind has its description, found by name; an unknown name is refused."""
    assert set(KINDS) == set(KEY_KINDS)
    assert {k: spec(k).origin for k in KEY_KINDS} == {
        "ssh-key": "uploaded",
        "api-key": "generated",
    }
    with pytest.raises(ValueError, match="rsa-key"):
        spec("rsa-key")


def test_ssh_key_intent_holds_the_whole_pair() -> None:
    """An ssh-key intent is made by rotator: key id, public line (titled) and private half,
    all recorded before Encord is called."""
    intent = SshKey().intent(TITLE, "due", START)
    assert intent.phase == "intent" and intent.title == TITLE and intent.started_at == START
    assert intent.private_key is not None and intent.public_key is not None
    kp = keys.load_private(intent.private_key)
    assert kp.key_id == intent.key_id == keys.key_id_of_line(intent.public_key)
    assert intent.public_key.endswith(f" {TITLE}")


def test_api_key_intent_holds_only_a_title() -> None:
    """An api-key intent names the rotation; Encord will make the pair."""
    intent = ApiKey().intent(TITLE, "due", START)
    assert intent == Pending("intent", TITLE, "due", START)


def test_ssh_key_registers_by_upload() -> None:
    """The public half is uploaded; the private half is the intent's."""
    encord, reg = registry()
    intent = SshKey().intent(TITLE, "due", START)
    held = SshKey().register(reg, intent)
    assert isinstance(held, Held)
    assert held.key.key_id == intent.key_id and held.key.origin == "uploaded"
    assert held.private_openssh == intent.private_key
    assert [c[0] for c in encord.call_log] == ["upload_key"]


def test_api_key_registers_by_generate() -> None:
    """Encord generates the key; its answer supplies the private half, which works."""
    encord, reg = registry()
    held = ApiKey().register(reg, ApiKey().intent(TITLE, "due", START))
    assert isinstance(held, Held) and held.key.origin == "generated"
    assert held.key.title == TITLE
    assert encord.authenticates("sa-alpha", held.private_openssh)
    assert [c[0] for c in encord.call_log] == ["generate_key"]


@pytest.mark.parametrize("kind", KEY_KINDS)
def test_a_person_registering_is_passed_on(kind: str) -> None:
    """A registrar's AwaitingPerson comes back as the answer, whatever the kind."""
    encord, reg = registry()
    person = PersonRegistry(encord, reg.account, reg.signer)
    answer = spec(kind).register(person, spec(kind).intent(TITLE, "due", START))
    assert answer == AwaitingPerson("add it" if kind == "ssh-key" else "not here")


def test_found_keys_of_an_ssh_key_intent_are_adopted() -> None:
    """Encord holding the intent's key id (answer lost, or added by a person) lets the
    rotation go on with it; nothing is ever lost, the private half being recorded."""
    intent = SshKey().intent(TITLE, "due", START)
    assert intent.key_id is not None and intent.public_key is not None
    held = RemoteKey("kh-1", intent.key_id, "added by hand", intent.public_key, "uploaded", START)
    other = RemoteKey("kh-2", "f" * 64, TITLE, "ssh-ed25519 B", "uploaded", START)
    remote = {k.key_id: k for k in (held, other)}
    assert SshKey().adoptable(intent, remote) == Held(held, str(intent.private_key))
    assert SshKey().adoptable(intent, {other.key_id: other}) is None
    assert SshKey().lost(intent, remote) == []


def test_found_keys_of_an_api_key_intent_are_lost() -> None:
    """A generated key found under the intent's title came without its private half: it is
    to be rolled back, never adopted."""
    intent = ApiKey().intent(TITLE, "due", START)
    mine = RemoteKey("kh-1", "a" * 64, TITLE, "ssh-ed25519 A", "generated", START)
    other = RemoteKey("kh-2", "b" * 64, "break-glass", "ssh-ed25519 B", "uploaded", START)
    remote = {k.key_id: k for k in (mine, other)}
    assert ApiKey().adoptable(intent, remote) is None
    assert ApiKey().lost(intent, remote) == [mine]


def test_an_ssh_key_intent_without_its_pair_is_a_corrupt_record() -> None:
    """A hand-edited intent that lost its key pair is named as a corrupt record, not an
    assertion."""
    encord, reg = registry()
    bare = Pending("intent", TITLE, "due", START, key_id="a" * 64)
    with pytest.raises(CorruptState, match="no key pair"):
        SshKey().register(reg, bare)
    assert encord.call_log == []


def _record(n: int, kind_origin: str = "uploaded") -> KeyRecord:
    kp = keys.generate(comment=f"k{n}")
    return KeyRecord(
        key_id=kp.key_id,
        key_hash=f"kh-{n}",
        public_key=kp.public_line,
        title=f"t{n}",
        origin="uploaded" if kind_origin == "uploaded" else "generated",
        issued_at=START,
        expires_at=START + timedelta(days=90),
        private_key=kp.private_openssh,
    )


def test_known_keys_are_every_key_the_record_holds_a_private_half_of() -> None:
    """Current, retiring and a pending key with its pair, kind by kind; an api-key intent
    (a title only) is not a key yet. None shows a private half in its repr."""
    cur, old, api = _record(1), _record(2), _record(3, "generated")
    ssh_intent = SshKey().intent(TITLE, "due", START)
    state = AccountState(
        kinds={
            "ssh-key": KindState(current=cur, retiring=(old,), pending=ssh_intent),
            "api-key": KindState(current=api, pending=ApiKey().intent("t", "due", START)),
        }
    )
    known: Sequence[KnownKey] = known_keys(state)
    assert [k.key_id for k in known] == [api.key_id, cur.key_id, old.key_id, ssh_intent.key_id]
    by_id = {k.key_id: k for k in known}
    assert by_id[cur.key_id] == KnownKey(
        cur.key_id, "kh-1", "t1", cur.public_key, "uploaded", START, cur.private_key
    )
    assert by_id[api.key_id].origin == "generated"
    pending = by_id[str(ssh_intent.key_id)]
    assert pending.key_hash is None and pending.private_openssh == ssh_intent.private_key
    assert "PRIVATE KEY" not in repr(known)

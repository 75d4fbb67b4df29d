"""plan() is pure and safe for any snapshot: properties (Hypothesis) and one example per reason."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from rotator.core.policy import (
    DEFAULT_INSTANCE,
    Action,
    Blocked,
    DeleteOrphan,
    Forget,
    MintBearer,
    Policy,
    ResumeRotation,
    Revoke,
    Rotate,
    Snapshot,
    Wait,
    describe,
    due_at,
    owned_title_prefix,
    plan,
)
from rotator.core.state import (
    AccountState,
    BearerState,
    KeyRecord,
    KindState,
    LastRun,
    Pending,
    Phase,
)
from rotator.core.vocab import EARLIEST, KEY_KINDS, LATEST, MAX_DURATION, KeyKind, RemoteKey

ACCOUNT = "alpha"
INSTANCE = DEFAULT_INSTANCE  # the policies below leave it unset
T0 = datetime(2030, 1, 1, tzinfo=UTC)
PRIVATE = "placeholder, not a key: plan() never reads it"


def kid(n: int) -> str:
    return f"{n:064x}"


def owned_title(n: int) -> str:
    return f"{owned_title_prefix(INSTANCE, ACCOUNT)}20300101T000000Z-{n:06x}"


def record(n: int, issued: datetime, *, retire_after: datetime | None = None,
           title: str | None = None, ttl: timedelta = timedelta(days=90)) -> KeyRecord:
    return KeyRecord(
        key_id=kid(n),
        key_hash=f"kh-{n}",
        public_key=f"ssh-ed25519 AAAA{n}",
        title=title or owned_title(n),
        origin="uploaded",
        issued_at=issued,
        expires_at=issued + ttl,
        private_key=PRIVATE,
        retire_after=retire_after,
    )


def remote_of(rec: KeyRecord | RemoteKey) -> RemoteKey:
    created = rec.issued_at if isinstance(rec, KeyRecord) else rec.created_at
    return RemoteKey(rec.key_hash, rec.key_id, rec.title, rec.public_key, "uploaded", created)


def foreign(n: int, title: str = "break-glass") -> RemoteKey:
    return RemoteKey(f"kh-{n}", kid(n), title, f"ssh-ed25519 AAAA{n}", "uploaded", T0)


# Keys this deployment never owns by title: people's, another account's, another deployment's
# on the same account, and this account's in the title format before instances.
FOREIGN_TITLES = [
    "break-glass",
    "rotator:beta:20300101T000000Z-0",
    "ci",
    f"rotator:other-deployment:{ACCOUNT}:20300101T000000Z-0",
    f"rotator:{INSTANCE}:beta:20300101T000000Z-0",
    f"rotator:{ACCOUNT}:20300101T000000Z-0",
]

# --- strategies -----------------------------------------------------------------------------

PHASES: tuple[Phase, ...] = ("intent", "registered")
offsets = st.integers(-200 * 86400, 200 * 86400).map(lambda s: T0 + timedelta(seconds=s))


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    kinds: tuple[KeyKind, ...] = tuple(
        draw(st.lists(st.sampled_from(KEY_KINDS), min_size=1, max_size=2, unique=True))
    )
    ttl_h = draw(st.integers(2, 400 * 24))
    before_h = draw(st.integers(1, ttl_h - 1))
    grace_h = draw(st.integers(0, before_h))
    return Policy(
        key_ttl=timedelta(hours=ttl_h),
        rotate_before=timedelta(hours=before_h),
        grace=timedelta(hours=grace_h),
        key_cap=draw(st.integers(2 * len(kinds), 8)),
        kinds=kinds,
        bearer=draw(st.booleans()),
        bearer_ttl=timedelta(minutes=draw(st.integers(5, 600))),
    )


@st.composite
def snapshots(draw: st.DrawFn) -> tuple[Snapshot, Policy, datetime, frozenset[str]]:
    """A record and a remote list that agree, disagree or half-agree, arbitrarily."""
    counter = iter(range(1, 10_000))
    remote: list[RemoteKey] = []
    kinds: dict[str, KindState] = {}
    consumer: dict[str, str | None] = {}

    def maybe_remote(rec: KeyRecord | RemoteKey) -> None:
        if draw(st.integers(0, 5)) > 0:  # mostly present at Encord, sometimes missing
            remote.append(remote_of(rec))

    for kind in draw(st.lists(st.sampled_from(KEY_KINDS), max_size=2, unique=True)):
        current = None
        if draw(st.booleans()):
            n = next(counter)
            title = owned_title(n) if draw(st.booleans()) else "adopted admin key"
            current = record(n, draw(offsets), title=title)
            maybe_remote(current)
        retiring = []
        for _ in range(draw(st.integers(0, 3))):
            rec = record(next(counter), draw(offsets), retire_after=draw(st.none() | offsets))
            retiring.append(rec)
            maybe_remote(rec)
        pending = None
        if draw(st.booleans()):
            n = next(counter)
            phase: Phase = draw(st.sampled_from(PHASES))
            api_intent = kind == "api-key" and phase == "intent"
            pending = Pending(
                phase=phase,
                title=owned_title(n),
                reason="due",
                started_at=draw(offsets),
                key_id=None if api_intent else kid(n),
                private_key=None if api_intent else PRIVATE,
            )
            if draw(st.booleans()):  # registered at Encord already (or answer lost)
                remote.append(foreign(n, owned_title(n)))
        kinds[kind] = KindState(current=current, retiring=tuple(retiring), pending=pending)
        choice = draw(st.sampled_from(["same", "other", "none", "absent"]))
        if choice == "same" and current is not None:
            consumer[kind] = current.key_id
        elif choice == "other":
            consumer[kind] = kid(next(counter))
        elif choice == "none":
            consumer[kind] = None
    for _ in range(draw(st.integers(0, 4))):  # humans' keys and other accounts' rotator keys
        title = draw(st.sampled_from(FOREIGN_TITLES))
        remote.append(foreign(next(counter), title))
    for _ in range(draw(st.integers(0, 3))):  # orphans: rotator's title, no record
        n = next(counter)
        created = draw(offsets)  # some younger than GRACE at ``now``, some older
        remote.append(replace(foreign(n, owned_title(n)), created_at=created))
        if draw(st.integers(0, 3)) == 0:  # held by consumers: the newest version of a path
            consumer[draw(st.sampled_from(KEY_KINDS))] = kid(n)
    remote = draw(st.permutations(remote))
    bearer = None
    if draw(st.booleans()):
        issued = draw(offsets)
        signer_ids = [ks.current.key_id for ks in kinds.values() if ks.current] + [kid(9999)]
        bearer = BearerState(
            issued_at=issued,
            expires_at=issued + timedelta(minutes=draw(st.integers(1, 600))),
            minted_with=draw(st.sampled_from(signer_ids)),
        )
    state = AccountState(kinds=kinds, bearer=bearer, version=draw(st.integers(0, 50)))
    snap = Snapshot(ACCOUNT, state, tuple(remote), consumer)
    policy = draw(policies())
    force = frozenset(draw(st.lists(st.sampled_from(KEY_KINDS), max_size=2)))
    return snap, policy, draw(offsets), force


# --- what "room" and "owned" really are, computed independently of plan() -------------------


def _record_ids(state: AccountState) -> set[str]:
    ids: set[str] = set()
    for ks in state.kinds.values():
        ids |= {k.key_id for k in ks.retiring}
        if ks.current:
            ids.add(ks.current.key_id)
        if ks.pending and ks.pending.key_id:
            ids.add(ks.pending.key_id)
    return ids


def _current_ids(state: AccountState) -> set[str]:
    return {ks.current.key_id for ks in state.kinds.values() if ks.current}


def _new_slots_for_intents(snap: Snapshot) -> int:
    """Intents that, resumed, will create a key Encord does not hold yet."""
    remote_ids = {k.key_id for k in snap.remote}
    titles = {k.title for k in snap.remote}
    n = 0
    for ks in snap.state.kinds.values():
        p = ks.pending
        if p is None or p.phase != "intent":
            continue
        present = p.key_id in remote_ids if p.key_id else p.title in titles
        n += not present
    return n


def _deleted(actions: Sequence[Action]) -> set[str]:
    out: set[str] = set()
    for a in actions:
        if isinstance(a, Revoke | DeleteOrphan):
            out.add(a.key.key_id)
    return out


# --- properties -----------------------------------------------------------------------------

Case = tuple[Snapshot, Policy, datetime, frozenset[str]]


@settings(max_examples=400)
@given(snapshots())
def test_plan_never_goes_over_the_cap(case: Case) -> None:
    """Keys held after the plan's deletions, plus resumed intents, plus its Rotates fit the cap."""
    snap, policy, now, force = case
    actions = plan(snap, policy, now, force=force)
    rotates = sum(isinstance(a, Rotate) for a in actions)
    held = len({k.key_id for k in snap.remote} - _deleted(actions))
    if rotates:
        assert held + _new_slots_for_intents(snap) + rotates <= policy.key_cap


@settings(max_examples=400)
@given(snapshots())
def test_plan_only_deletes_owned_keys_it_may_delete(case: Case) -> None:
    """No Revoke or DeleteOrphan targets a current key, a foreign key (another deployment's, or
    this account's in the old title format that no record explains), a key in its grace, the
    key at the newest version of a consumer path, or an orphan Encord made less than GRACE ago."""
    snap, policy, now, force = case
    state = snap.state
    remote_ids = {k.key_id for k in snap.remote}
    in_record = _record_ids(state)
    for a in plan(snap, policy, now, force=force):
        if isinstance(a, Revoke):
            assert a.key.key_id not in _current_ids(state)
            assert a.key.key_id in remote_ids
            retiring = {k.key_id: k for k in state.kind(a.kind).retiring}
            assert retiring[a.key.key_id] == a.key
            assert a.key.retire_after is not None and a.key.retire_after <= now
        elif isinstance(a, DeleteOrphan):
            assert a.key.key_id not in in_record
            assert a.key.title.startswith(owned_title_prefix(policy.instance, ACCOUNT))
            pending_titles = {ks.pending.title for ks in state.kinds.values() if ks.pending}
            assert a.key.title not in pending_titles
            # Orphan safety: never a key consumers hold, never one younger than GRACE.
            assert a.key.key_id not in set(snap.consumer_key_ids.values())
            assert now - a.key.created_at >= policy.grace


@settings(max_examples=400)
@given(snapshots())
def test_blocked_by_cap_only_without_room(case: Case) -> None:
    """Blocked(blocked_by_cap) is planned only when one more key would really exceed the cap."""
    snap, policy, now, force = case
    actions = plan(snap, policy, now, force=force)
    held = len({k.key_id for k in snap.remote} - _deleted(actions)) + _new_slots_for_intents(snap)
    for a in actions:
        if isinstance(a, Rotate):
            held += 1
        elif isinstance(a, Blocked) and a.reason == "blocked_by_cap":
            assert held + 1 > policy.key_cap


@settings(max_examples=300)
@given(snapshots())
def test_plan_shape(case: Case) -> None:
    """The plan is deterministic, ends with its only Wait (in the future), resumes every pending
    rotation, rotates only configured kinds at most once and never a kind mid-rotation."""
    snap, policy, now, force = case
    actions = plan(snap, policy, now, force=force)
    assert plan(snap, policy, now, force=force) == actions
    assert describe(actions) == describe(plan(snap, policy, now, force=force))
    assert isinstance(actions[-1], Wait)
    assert sum(isinstance(a, Wait) for a in actions) == 1
    until = actions[-1].until
    assert until is None or until > now
    pending = {k for k, ks in snap.state.kinds.items() if ks.pending is not None}
    assert {a.kind for a in actions if isinstance(a, ResumeRotation)} == pending
    rotated = [a.kind for a in actions if isinstance(a, Rotate)]
    assert len(rotated) == len(set(rotated))
    assert set(rotated) <= set(policy.kinds) - pending
    if snap.state.signer() is None:
        assert not rotated
        assert not any(isinstance(a, MintBearer) for a in actions)
    if not policy.bearer:
        assert not any(isinstance(a, MintBearer) for a in actions)


edge_times = st.sampled_from([EARLIEST, LATEST - timedelta(microseconds=1)]) | st.datetimes(
    min_value=EARLIEST.replace(tzinfo=None),
    max_value=(LATEST - timedelta(microseconds=1)).replace(tzinfo=None),
    timezones=st.just(UTC),
)
long_hours = st.integers(1, int(MAX_DURATION / timedelta(hours=1)))


@settings(max_examples=300)
@given(
    issued=edge_times, now=edge_times, failed_at=edge_times, bearer_at=edge_times,
    created=edge_times, hours=st.lists(long_hours, min_size=3, max_size=3, unique=True),
)
def test_plan_never_overflows_within_the_accepted_range(
    issued: datetime, now: datetime, failed_at: datetime, bearer_at: datetime,
    created: datetime, hours: list[int],
) -> None:
    """Any time the state reader and Encord's answers accept, with any durations configuration
    accepts (up to 100 years), plans without OverflowError (it used to escape as 'internal')."""
    before, ttl, grace = sorted(hours)[0], sorted(hours)[2], min(hours)
    policy = Policy(
        key_ttl=timedelta(hours=ttl), rotate_before=timedelta(hours=before),
        grace=timedelta(hours=grace), key_cap=5, bearer_ttl=MAX_DURATION,
        check_interval=MAX_DURATION, jitter=MAX_DURATION,
    )
    cur = record(1, issued, ttl=timedelta(0))
    old = record(2, issued, retire_after=failed_at, ttl=timedelta(0))
    bearer = BearerState(issued_at=bearer_at, expires_at=bearer_at, minted_with=cur.key_id)
    snap = _snap(cur, retiring=(old,), extra=(remote_of(replace(foreign(3, owned_title(3)),
                 created_at=created)),), bearer=bearer)
    failed = LastRun(outcome="failed", at=failed_at, reason="due")
    snap = replace(snap, state=snap.state.with_kind(
        "ssh-key", replace(snap.state.kind("ssh-key"), last=failed)))
    for force in (frozenset(), frozenset({"ssh-key"})):
        assert isinstance(plan(snap, policy, now, force=force)[-1], Wait)


# --- examples, one per reason ---------------------------------------------------------------

POLICY = Policy(
    key_ttl=timedelta(days=90),
    rotate_before=timedelta(days=14),
    grace=timedelta(hours=24),
    key_cap=5,
    kinds=("ssh-key",),
    bearer=False,
)


def _snap(
    current: KeyRecord | None,
    *,
    retiring: tuple[KeyRecord, ...] = (),
    extra: tuple[RemoteKey, ...] = (),
    consumer: str | None = "same",
    bearer: BearerState | None = None,
    present: bool = True,
) -> Snapshot:
    remote = [remote_of(k) for k in retiring] + list(extra)
    if current is not None and present:
        remote.insert(0, remote_of(current))
    consumers: dict[str, str | None] = {}
    if current is not None:
        consumers["ssh-key"] = current.key_id if consumer == "same" else consumer
    state = AccountState(
        kinds={"ssh-key": KindState(current=current, retiring=retiring)} if current else {},
        bearer=bearer,
    )
    return Snapshot(ACCOUNT, state, tuple(remote), consumers)


def _only(actions: list[Action], cls: type) -> list[Action]:
    return [a for a in actions if isinstance(a, cls)]


def test_rotates_when_due() -> None:
    """A key at or past issued + TTL - ROTATE_BEFORE is rotated, the reason saying time left."""
    cur = record(1, T0)
    now = due_at(cur, POLICY)
    assert now == T0 + timedelta(days=76)
    assert _only(plan(_snap(cur), POLICY, now), Rotate) == [Rotate("ssh-key", "expires_in_14d")]


def test_waits_until_due() -> None:
    """A key not yet due is left alone and the plan waits exactly until it falls due."""
    cur = record(1, T0)
    actions = plan(_snap(cur), POLICY, T0 + timedelta(days=10))
    assert actions == [Wait(until=T0 + timedelta(days=76), reason="next_due")]


def test_no_current_key_of_a_configured_kind() -> None:
    """A configured kind without a key (api-key here) is created once a signer exists."""
    policy = replace(POLICY, kinds=("ssh-key", "api-key"))
    actions = plan(_snap(record(1, T0)), policy, T0)
    assert _only(actions, Rotate) == [Rotate("api-key", "no_current_key")]


def test_not_bootstrapped() -> None:
    """Without any key to sign with, nothing is rotated: Blocked(not_bootstrapped)."""
    actions = plan(_snap(None), POLICY, T0)
    assert actions[0] == Blocked("ssh-key", "not_bootstrapped")


def test_current_missing_at_encord() -> None:
    """A current key Encord no longer lists is replaced at once, whatever its age."""
    actions = plan(_snap(record(1, T0), present=False), POLICY, T0 + timedelta(days=1))
    assert _only(actions, Rotate) == [Rotate("ssh-key", "current_missing_at_encord")]


def test_consumer_path_mismatch() -> None:
    """A consumer path whose newest version is not the current key is rewritten by a rotation."""
    for consumer in (kid(77), None):
        actions = plan(_snap(record(1, T0), consumer=consumer), POLICY, T0 + timedelta(days=1))
        assert _only(actions, Rotate) == [Rotate("ssh-key", "consumer_path_mismatch")]


def test_force_rotates_a_young_key() -> None:
    """force rotates a key that is not due, with reason 'requested'."""
    actions = plan(_snap(record(1, T0)), POLICY, T0, force=frozenset({"ssh-key"}))
    assert _only(actions, Rotate) == [Rotate("ssh-key", "requested")]


def test_force_still_respects_the_cap() -> None:
    """force does not override the cap: at 5/5 keys it is Blocked(blocked_by_cap)."""
    extra = tuple(foreign(10 + i) for i in range(4))
    actions = plan(_snap(record(1, T0), extra=extra), POLICY, T0, force=frozenset({"ssh-key"}))
    assert _only(actions, Rotate) == []
    assert _only(actions, Blocked) == [Blocked("ssh-key", "blocked_by_cap", "5/5 keys held")]


def test_grace_over_revokes_first_and_makes_room() -> None:
    """At the cap, a retiring key whose grace is over is revoked and that makes room to rotate."""
    cur = record(1, T0)
    old = record(2, T0 - timedelta(days=80), retire_after=T0 + timedelta(days=70))
    extra = tuple(foreign(10 + i) for i in range(3))
    now = due_at(cur, POLICY)
    actions = plan(_snap(cur, retiring=(old,), extra=extra), POLICY, now)
    assert [type(a) for a in actions] == [Revoke, Rotate, Wait]


def test_retiring_key_in_grace_is_kept_and_blocks_at_cap() -> None:
    """A retiring key still in its grace is neither revoked nor ignored for the cap."""
    cur = record(1, T0)
    old = record(2, T0 - timedelta(days=80), retire_after=T0 + timedelta(days=80))
    extra = tuple(foreign(10 + i) for i in range(3))
    actions = plan(_snap(cur, retiring=(old,), extra=extra), POLICY, due_at(cur, POLICY))
    assert [type(a) for a in actions] == [Blocked, Wait]
    assert actions[-1] == Wait(until=T0 + timedelta(days=80), reason="next_due")


def test_retiring_key_gone_is_forgotten() -> None:
    """A retiring key Encord no longer lists is dropped from the record, not deleted."""
    cur = record(1, T0)
    old = record(2, T0, retire_after=T0 + timedelta(days=1))
    snap = _snap(cur, retiring=(old,))
    snap = replace(snap, remote=tuple(k for k in snap.remote if k.key_id != old.key_id))
    assert _only(plan(snap, POLICY, T0), Forget) == [Forget("ssh-key", old.key_id)]


def test_orphans_deleted_foreign_keys_kept() -> None:
    """Keys this deployment titled that no record explains are deleted once GRACE old; other
    titles (people's, other accounts', other deployments', the old format's) are never touched."""
    orphan = foreign(20, owned_title(20))
    others = tuple(foreign(21 + i, title) for i, title in enumerate(FOREIGN_TITLES))
    actions = plan(_snap(record(1, T0), extra=(orphan, *others)), POLICY, T0 + POLICY.grace)
    assert _only(actions, DeleteOrphan) == [DeleteOrphan(orphan)]


def test_young_orphan_kept_until_grace() -> None:
    """An orphan Encord made less than GRACE ago is kept (a consumer may hold it), and the plan
    wakes up when it may go."""
    orphan = foreign(20, owned_title(20))  # created at T0
    actions = plan(_snap(record(1, T0 - timedelta(days=1)), extra=(orphan,)), POLICY,
                   T0 + timedelta(hours=1))
    assert _only(actions, DeleteOrphan) == []
    assert actions[-1] == Wait(until=T0 + POLICY.grace, reason="next_due")


def test_orphan_at_a_consumer_path_kept() -> None:
    """An orphan that is the key at the newest version of a consumer path (a record lost, or
    rolled back) is never deleted, however old: consumers hold it."""
    held = foreign(20, owned_title(20))
    snap = _snap(record(1, T0), extra=(held,), consumer=held.key_id)
    actions = plan(snap, POLICY, T0 + timedelta(days=30))
    assert _only(actions, DeleteOrphan) == []
    assert _only(actions, Rotate) == [Rotate("ssh-key", "consumer_path_mismatch")]


BEARER_POLICY = replace(POLICY, bearer=True, bearer_ttl=timedelta(hours=1))


def test_bearer_minted_when_missing() -> None:
    """With no bearer token yet, one is minted."""
    actions = plan(_snap(record(1, T0)), BEARER_POLICY, T0)
    assert _only(actions, MintBearer) == [MintBearer("no_token")]


def test_bearer_refresh_margin() -> None:
    """A token is re-minted once less than the refresh margin (a quarter of its life, at least
    one check period) is left, and the plan waits until exactly that moment before then."""
    assert BEARER_POLICY.bearer_refresh_margin() == timedelta(minutes=15)
    slow = replace(BEARER_POLICY, check_interval=timedelta(minutes=30))
    assert slow.bearer_refresh_margin() == timedelta(minutes=30, seconds=30)
    cur = record(1, T0)
    b = BearerState(issued_at=T0, expires_at=T0 + timedelta(hours=1), minted_with=cur.key_id)
    early = plan(_snap(cur, bearer=b), BEARER_POLICY, T0 + timedelta(minutes=44))
    assert not _only(early, MintBearer)
    assert early[-1] == Wait(until=T0 + timedelta(minutes=45), reason="next_due")
    late = plan(_snap(cur, bearer=b), BEARER_POLICY, T0 + timedelta(minutes=45))
    assert _only(late, MintBearer) == [MintBearer("expires_in_15m")]


def test_bearer_signer_changed() -> None:
    """A token minted by another key than the signer, or with a rotation planned, is re-minted."""
    cur = record(1, T0)
    b = BearerState(issued_at=T0, expires_at=T0 + timedelta(hours=1), minted_with=kid(5))
    assert _only(plan(_snap(cur, bearer=b), BEARER_POLICY, T0), MintBearer) == [
        MintBearer("signer_changed")
    ]
    b = replace(b, minted_with=cur.key_id)
    actions = plan(_snap(cur, bearer=b), BEARER_POLICY, T0, force=frozenset({"ssh-key"}))
    assert [type(a) for a in actions] == [Rotate, MintBearer, Wait]
    assert actions[1] == MintBearer("signer_changed")


def test_pending_rotation_is_resumed_not_restarted() -> None:
    """A half-done rotation is resumed first, and no second rotation of that kind is planned."""
    cur = record(1, T0)
    snap = _snap(cur)
    pending = Pending("intent", owned_title(9), "due", T0, key_id=kid(9), private_key=PRIVATE)
    ks = replace(snap.state.kind("ssh-key"), pending=pending)
    snap = replace(snap, state=snap.state.with_kind("ssh-key", ks))
    actions = plan(snap, POLICY, due_at(cur, POLICY), force=frozenset({"ssh-key"}))
    assert [type(a) for a in actions] == [ResumeRotation, Wait]

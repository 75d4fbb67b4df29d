"""VaultStore and OpenBaoDev against a real OpenBao dev server (no mocks of Vault)."""

from __future__ import annotations

import contextlib
import os
import socket
import time
import traceback
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rotator.adapters.vault import VaultStore, Versioned, connect
from rotator.core.errors import (
    AccessDenied,
    ConfigError,
    CorruptState,
    StoreConflict,
    StoreUnavailable,
)
from rotator.dev.openbao import OpenBaoDev, OpenBaoError, find_bao
from tests.fixtures_openbao import MakeToken

SECRET_VALUE = "-----BEGIN OPENSSH PRIVATE KEY-----very-secret-material"


def assert_clean(exc: BaseException, *secrets: str) -> None:
    """The error is one line, has no chain, and no secret shows in any rendering of it."""
    assert "\n" not in str(exc)
    assert exc.__cause__ is None
    assert exc.__context__ is None
    rendered = "".join(traceback.format_exception(exc)) + repr(exc) + str(exc) + repr(exc.args)
    for secret in secrets:
        assert secret not in rendered


@contextlib.contextmanager
def client(addr: str, token: str, **kwargs: Any) -> Iterator[Any]:
    """An hvac client from rotator.adapters.vault.connect, closed afterwards."""
    c = connect(addr, token, **kwargs)
    try:
        yield c
    finally:
        c.adapter.close()


def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- round trips and check-and-set ---------------------------------------------------------


def test_write_then_read_round_trips(vault_store: VaultStore) -> None:
    """A first write (cas=0) creates version 1 and reads back with its data and a UTC time."""
    before = datetime.now(UTC) - timedelta(seconds=5)
    assert vault_store.write("acct/key", {"private_key": SECRET_VALUE, "n": 1}, cas=0) == 1
    got = vault_store.read("acct/key")
    assert got is not None
    assert got.data == {"private_key": SECRET_VALUE, "n": 1}
    assert got.version == 1
    assert got.created_time.tzinfo is UTC
    assert before <= got.created_time <= datetime.now(UTC) + timedelta(seconds=5)


def test_versions_increase_with_each_cas_write(vault_store: VaultStore) -> None:
    """Each write naming the current version makes the next version, and current_version follows."""
    for expected in (1, 2, 3):
        cas = vault_store.current_version("k")
        assert vault_store.write("k", {"v": expected}, cas=cas) == expected
    assert vault_store.current_version("k") == 3
    latest = vault_store.read("k")
    assert latest is not None and latest.data == {"v": 3} and latest.version == 3


def test_cas_zero_on_existing_path_conflicts(vault_store: VaultStore) -> None:
    """cas=0 means "must not exist": on an existing path it raises StoreConflict, data kept."""
    vault_store.write("k", {"v": "first"}, cas=0)
    with pytest.raises(StoreConflict, match="version moved on") as info:
        vault_store.write("k", {"private_key": SECRET_VALUE}, cas=0)
    assert_clean(info.value, SECRET_VALUE)
    assert "k" in str(info.value)
    got = vault_store.read("k")
    assert got is not None and got.data == {"v": "first"}


def test_stale_cas_conflicts_and_does_not_overwrite(vault_store: VaultStore) -> None:
    """A write naming an older version than the current one loses with StoreConflict."""
    vault_store.write("k", {"v": 1}, cas=0)
    vault_store.write("k", {"v": 2}, cas=1)
    with pytest.raises(StoreConflict):
        vault_store.write("k", {"v": "stale"}, cas=1)
    with pytest.raises(StoreConflict):
        vault_store.write("k", {"v": "future"}, cas=7)
    assert vault_store.current_version("k") == 2
    got = vault_store.read("k")
    assert got is not None and got.data == {"v": 2}


def test_absent_path_reads_as_nothing(vault_store: VaultStore) -> None:
    """A path never written reads as None, has current_version 0 and no children."""
    assert vault_store.read("nope") is None
    assert vault_store.read_version("nope", 1) is None
    assert vault_store.current_version("nope") == 0
    assert vault_store.list("nope") == []


def test_read_version_returns_an_older_version(vault_store: VaultStore) -> None:
    """read_version gives back an older version's own data; a version never written is None."""
    vault_store.write("k", {"v": "old"}, cas=0)
    vault_store.write("k", {"v": "new"}, cas=1)
    old = vault_store.read_version("k", 1)
    assert old is not None and old.data == {"v": "old"} and old.version == 1
    assert vault_store.read_version("k", 3) is None
    with pytest.raises(ValueError):
        vault_store.read_version("k", 0)


def test_soft_deleted_latest_version_reads_as_data_none(
    vault_store: VaultStore, vault_client: Any, vault_prefix: str
) -> None:
    """A soft-deleted latest version reads as Versioned(data=None); CAS still counts it."""
    vault_store.write("k", {"v": 1}, cas=0)
    vault_store.write("k", {"v": 2}, cas=1)
    vault_client.secrets.kv.v2.delete_latest_version_of_secret(
        f"{vault_prefix}/k", mount_point="secret"
    )
    latest = vault_store.read("k")
    assert latest is not None
    assert latest.data is None and latest.deleted and latest.version == 2
    older = vault_store.read_version("k", 1)
    assert older is not None and older.data == {"v": 1}
    assert vault_store.current_version("k") == 2
    assert vault_store.write("k", {"v": 3}, cas=2) == 3


def test_destroyed_version_reads_as_data_none(
    vault_store: VaultStore, vault_client: Any, vault_prefix: str
) -> None:
    """A destroyed version reads as Versioned(data=None) with its version number."""
    vault_store.write("k", {"v": 1}, cas=0)
    vault_client.secrets.kv.v2.destroy_secret_versions(
        f"{vault_prefix}/k", versions=[1], mount_point="secret"
    )
    got = vault_store.read_version("k", 1)
    assert got is not None and got.data is None and got.version == 1


def test_list_names_children_without_folder_slashes(vault_store: VaultStore) -> None:
    """list() gives sorted child names of a folder, folders without their trailing slash."""
    vault_store.write("accounts/beta/key", {"v": 1}, cas=0)
    vault_store.write("accounts/alpha", {"v": 1}, cas=0)
    vault_store.write("accounts/alpha/lease", {"v": 1}, cas=0)
    assert vault_store.list("accounts") == ["alpha", "beta"]
    assert vault_store.list("accounts/beta") == ["key"]
    assert vault_store.list() == ["accounts"]


def test_destroy_removes_every_version(vault_store: VaultStore) -> None:
    """destroy() removes metadata and versions: the path is absent again, and may be re-created."""
    vault_store.write("lease", {"v": 1}, cas=0)
    vault_store.write("lease", {"v": 2}, cas=1)
    vault_store.destroy("lease")
    assert vault_store.read("lease") is None
    assert vault_store.read_version("lease", 1) is None
    assert vault_store.current_version("lease") == 0
    assert vault_store.write("lease", {"v": "again"}, cas=0) == 1
    vault_store.destroy("never-written")  # no error


def test_set_max_versions_prunes_old_versions(vault_store: VaultStore) -> None:
    """With max_versions=2, the oldest of three versions is pruned and reads as None."""
    vault_store.set_max_versions("k", 2)
    for cas in range(3):
        vault_store.write("k", {"v": cas + 1}, cas=cas)
    assert vault_store.read_version("k", 1) is None
    kept = vault_store.read_version("k", 2)
    assert kept is not None and kept.data == {"v": 2}
    assert vault_store.current_version("k") == 3


def test_bad_paths_are_rejected(vault_store: VaultStore, vault_client: Any) -> None:
    """Paths with '..', '.', empty segments or edge slashes raise ValueError before any I/O."""
    for bad in ("", "..", "a/../b", "a//b", "/a", "a/", "./a", "a\nb"):
        with pytest.raises(ValueError):
            vault_store.read(bad)
        with pytest.raises(ValueError):
            vault_store.write(bad, {}, cas=0)
    with pytest.raises(ValueError):
        vault_store.list("../x")
    with pytest.raises(ValueError):
        vault_store.write("k", {}, cas=-1)
    with pytest.raises(ValueError):
        VaultStore(vault_client, prefix="a/../b")
    with pytest.raises(ValueError):
        VaultStore(vault_client, mount="")


def test_versioned_repr_hides_data() -> None:
    """A Versioned's repr shows version and time but never the secret data."""
    v = Versioned(
        data={"private_key": SECRET_VALUE},
        version=4,
        created_time=datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert SECRET_VALUE not in repr(v) and "private_key" not in repr(v)
    assert "version=4" in repr(v)
    with pytest.raises(ValueError):
        Versioned(data=None, version=1, created_time=datetime(2026, 1, 1))


# -- check() and error translation ---------------------------------------------------------


def test_check_passes_on_the_dev_server(vault_store: VaultStore) -> None:
    """check() accepts a reachable Vault, a valid token and the KV v2 mount `secret`."""
    vault_store.check()


def test_check_with_a_wrong_token_is_access_denied(openbao: OpenBaoDev) -> None:
    """A wrong token gives AccessDenied naming VAULT_TOKEN, with neither token in its text."""
    bad = "hvs.not-a-real-token-" + uuid.uuid4().hex
    with client(openbao.addr, bad) as c, pytest.raises(AccessDenied) as info:
        VaultStore(c).check()
    assert "VAULT_TOKEN" in str(info.value)
    assert info.value.status == 403
    assert_clean(info.value, bad, openbao.root_token)


def test_check_against_a_closed_port_is_unavailable_quickly() -> None:
    """Nothing listening gives StoreUnavailable naming VAULT_ADDR (no userinfo) within seconds."""
    token = "hvs.real-looking-token-" + uuid.uuid4().hex
    started = time.monotonic()
    with (
        client(f"http://ops:pw-{token}@127.0.0.1:{closed_port()}", token, timeout=2.0) as c,
        pytest.raises(StoreUnavailable, match="VAULT_ADDR") as info,
    ):
        VaultStore(c).check()
    assert time.monotonic() - started < 3.0
    assert_clean(info.value, token)


def test_a_vault_that_never_answers_times_out_as_unavailable() -> None:
    """A server that accepts but never answers gives StoreUnavailable after the timeout."""
    token = "hvs.real-looking-token-" + uuid.uuid4().hex
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        started = time.monotonic()
        with (
            client(f"http://127.0.0.1:{port}", token, timeout=0.3) as c,
            pytest.raises(StoreUnavailable, match="Timeout") as info,
        ):
            VaultStore(c).read("k")
    assert time.monotonic() - started < 2.0
    assert_clean(info.value, token)


def test_check_against_a_kv_v1_mount_is_a_config_error(vault_client: Any) -> None:
    """A KV version 1 mount fails check() with ConfigError naming ROTATOR_VAULT_MOUNT."""
    path = f"kv1-{uuid.uuid4().hex[:8]}"
    vault_client.sys.enable_secrets_engine("kv", path=path, options={"version": "1"})
    try:
        with pytest.raises(ConfigError, match="ROTATOR_VAULT_MOUNT") as info:
            VaultStore(vault_client, mount=path).check()
        assert "version 1" in str(info.value)
        assert_clean(info.value)
    finally:
        vault_client.sys.disable_secrets_engine(path)


@pytest.mark.parametrize("mount", ["no-such-mount", "cubbyhole"])
def test_check_against_a_missing_or_non_kv_mount_is_a_config_error(
    vault_client: Any, mount: str
) -> None:
    """A mount that does not exist, or is not KV, fails check() with ConfigError."""
    with pytest.raises(ConfigError, match=f"ROTATOR_VAULT_MOUNT: '{mount}'") as info:
        VaultStore(vault_client, mount=mount).check()
    assert_clean(info.value)


def test_missing_mount_on_read_and_write_is_a_config_error(vault_client: Any) -> None:
    """Without check(), using a mount that does not exist is a ConfigError, not 'absent'."""
    store = VaultStore(vault_client, mount="no-such-mount")
    with pytest.raises(ConfigError, match="ROTATOR_VAULT_MOUNT"):
        store.read("k")
    with pytest.raises(ConfigError, match="ROTATOR_VAULT_MOUNT"):
        store.write("k", {"v": 1}, cas=0)


def test_kv_v1_mount_without_check_fails_closed(vault_client: Any) -> None:
    """On a KV v1 mount, write and read give CorruptState instead of pretending to work."""
    path = f"kv1-{uuid.uuid4().hex[:8]}"
    vault_client.sys.enable_secrets_engine("kv", path=path, options={"version": "1"})
    try:
        store = VaultStore(vault_client, mount=path)
        with pytest.raises(CorruptState) as info:
            store.write("k", {"private_key": SECRET_VALUE}, cas=0)
        assert_clean(info.value, SECRET_VALUE)
        with pytest.raises(CorruptState) as info:
            store.read("k")
        assert_clean(info.value, SECRET_VALUE)
    finally:
        vault_client.sys.disable_secrets_engine(path)


def test_least_privilege_token_reads_but_cannot_write(
    openbao: OpenBaoDev, vault_store: VaultStore, vault_prefix: str, make_token: MakeToken
) -> None:
    """A token with read-only policy passes check() and reads, but gets AccessDenied on write."""
    vault_store.write("k", {"v": 1}, cas=0)
    token = make_token(
        f'path "secret/data/{vault_prefix}/*" {{ capabilities = ["read"] }}\n'
        f'path "secret/metadata/{vault_prefix}/*" {{ capabilities = ["read", "list"] }}\n'
    )
    with client(openbao.addr, token) as c:
        store = VaultStore(c, prefix=vault_prefix)
        store.check()
        got = store.read("k")
        assert got is not None and got.data == {"v": 1}
        assert store.current_version("k") == 1
        with pytest.raises(AccessDenied, match="VAULT_TOKEN") as info:
            store.write("k", {"private_key": SECRET_VALUE}, cas=1)
    assert info.value.status == 403
    assert f"secret/{vault_prefix}/k" in str(info.value)
    assert_clean(info.value, token, SECRET_VALUE, openbao.root_token)


def test_token_without_access_to_the_mount_fails_check_as_config_error(
    openbao: OpenBaoDev, make_token: MakeToken
) -> None:
    """A valid token that may not use the mount fails check() naming the mount, not the token."""
    token = make_token('path "other/*" { capabilities = ["read"] }\n')
    with client(openbao.addr, token) as c, pytest.raises(ConfigError) as info:
        VaultStore(c).check()
    assert "ROTATOR_VAULT_MOUNT" in str(info.value) and "no access" in str(info.value)
    assert_clean(info.value, token)


def test_connect_rejects_bad_settings_without_echoing_the_token() -> None:
    """connect() reports a bad address and a bad token in one ConfigError, token not shown."""
    token = " hvs.secret-with-spaces "
    with pytest.raises(ConfigError) as info:
        connect("vault:8200", token)
    assert len(info.value.problems) == 2
    assert "VAULT_ADDR" in str(info.value) and "VAULT_TOKEN" in str(info.value)
    assert token.strip() not in str(info.value)
    with pytest.raises(ConfigError, match="VAULT_ADDR"):
        connect("http://user:pw@vault:notaport", "t")


# -- the dev server helper -----------------------------------------------------------------


def test_find_bao_finds_an_executable() -> None:
    """find_bao() returns the path of an executable `bao`."""
    path = find_bao()
    assert os.path.isfile(path) and os.access(path, os.X_OK)


def test_outage_then_restart_on_the_same_port(tmp_path: Any) -> None:
    """Stopped or sealed Vault gives StoreUnavailable; restart_same_port serves again, emptied."""
    log = tmp_path / "bao.log"
    with OpenBaoDev(log_path=str(log)) as bao:
        assert bao.root_token not in repr(bao)
        addr, token, first_pid = bao.addr, bao.root_token, bao.pid
        with client(addr, token, timeout=2.0) as c:
            store = VaultStore(c, prefix="outage")
            store.check()
            store.write("k", {"v": 1}, cas=0)

            bao.stop()
            assert bao.pid is None
            with pytest.raises(StoreUnavailable, match="VAULT_ADDR") as info:
                store.read("k")
            assert_clean(info.value, token)

            bao.restart_same_port()
            assert (bao.addr, bao.root_token) == (addr, token)
            assert bao.pid != first_pid
            store.check()
            assert store.read("k") is None  # dev mode keeps data in memory only

            c.sys.seal()
            with pytest.raises(StoreUnavailable, match="VaultDown") as info:
                store.check()
            assert_clean(info.value, token)
    assert bao.pid is None
    assert log.read_text()  # the server wrote its log where it was told


def test_start_failure_reports_the_log_without_the_token() -> None:
    """A port already taken makes start() fail with OpenBaoError quoting the masked log."""
    root = "dev-root-" + uuid.uuid4().hex
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        bao = OpenBaoDev(port=taken.getsockname()[1], root_token=root)
        with pytest.raises(OpenBaoError) as info:
            bao.start()
    assert "address already in use" in str(info.value).lower()
    assert root not in str(info.value) and root not in repr(bao)
    assert bao.pid is None

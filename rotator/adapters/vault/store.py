"""The KV version 2 store: check-and-set reads and writes under ``{mount}/{prefix}/...``.

Every write is a check-and-set: ``write(rel, data, cas=n)`` succeeds only if the path's current
version is ``n`` (``0``: the path must not exist yet), so two writers can never silently
overwrite each other. Failures are translated by :mod:`rotator.adapters.vault.errors`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import hvac
import hvac.utils

from rotator.adapters.vault.answers import get as _get
from rotator.adapters.vault.errors import (
    LIBRARY_ERRORS,
    Failure,
    classify,
    destroyed_version,
    raise_outside,
    store_failure,
)
from rotator.adapters.vault.kv import KvSettings, parse_kv_settings
from rotator.core.errors import AccessDenied, ConfigError, CorruptState
from rotator.core.vocab import parse_rfc3339, utc

if TYPE_CHECKING:
    from rotator.adapters.vault.session import VaultSession

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Versioned:
    """One version of a KV v2 secret; ``data`` is None when it was deleted or destroyed."""

    data: dict[str, Any] | None = field(repr=False)
    version: int
    created_time: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "created_time", utc(self.created_time))

    @property
    def deleted(self) -> bool:
        """True when this version's data is gone (soft-deleted or destroyed)."""
        return self.data is None


class VaultStore:
    """Check-and-set access to ``{mount}/{prefix}/...`` on a KV version 2 mount.

    With a ``session`` (see :meth:`VaultSession.store`) every call first makes sure the
    session has logged in, and a call refused (401/403) because the token died is retried
    once after the session logged in again.
    """

    def __init__(
        self,
        client: hvac.Client,
        *,
        mount: str = "secret",
        prefix: str = "encord",
        session: VaultSession | None = None,
    ) -> None:
        self._client = client
        self._session = session
        self._who = session.credential if session is not None else "VAULT_TOKEN"
        self.mount = clean_path(mount.strip("/"), what="mount", allow_empty=False)
        self.prefix = clean_path(prefix.strip("/"), what="prefix", allow_empty=True)

    @property
    def session(self) -> VaultSession | None:
        """The session that keeps this store's token alive (None: a fixed token)."""
        return self._session

    def __repr__(self) -> str:
        return f"VaultStore(mount={self.mount!r}, prefix={self.prefix!r})"

    # -- health -----------------------------------------------------------------------------

    def check(self) -> None:
        """Prove that Vault answers, the token is valid and the mount is KV version 2.

        Raises StoreUnavailable (VAULT_ADDR), AccessDenied (VAULT_TOKEN, or the variables of
        the login method) or ConfigError (ROTATOR_VAULT_MOUNT). Uses
        ``auth/token/lookup-self`` (granted by the default policy) and
        ``sys/internal/ui/mounts/{mount}``, which any token with access to the mount may read.
        """
        self._call(
            "look up", "auth/token/lookup-self", lambda: self._client.auth.token.lookup_self()
        )
        bad_mount = f"ROTATOR_VAULT_MOUNT: {self.mount!r} is not a KV version 2 mount"
        url = hvac.utils.format_url("/v1/sys/internal/ui/mounts/{mount}", mount=self.mount)
        try:
            answer = self._call(
                "read mount",
                f"sys/internal/ui/mounts/{self.mount}",
                lambda: self._client.adapter.get(url),
            )
        except AccessDenied:
            # The token is valid (lookup-self passed), so a 403 here is Vault's "preflight
            # capability check": the mount does not exist, or this token may not use it.
            answer = None
        if answer is None:
            raise ConfigError(
                f"{bad_mount} (it does not exist, or the token ({self._who}) has no access to it)"
            )
        info = _get(answer, "data", dict, where="mount description")
        options = info.get("options") or {}
        if info.get("type") != "kv" or not isinstance(options, dict):
            raise ConfigError(f"{bad_mount} (its type is {str(info.get('type'))[:40]!r})")
        if str(options.get("version")) != "2":
            version = str(options.get("version") or "1")[:10]
            raise ConfigError(f"{bad_mount} (it is KV version {version})")

    # -- reads ------------------------------------------------------------------------------

    def read(self, rel: str) -> Versioned | None:
        """The latest version of ``{prefix}/{rel}``; None if it never existed or was destroyed
        with all its metadata. A soft-deleted latest version gives ``Versioned(data=None)``."""
        return self._read(rel, None)

    def read_version(self, rel: str, version: int) -> Versioned | None:
        """Version ``version`` of ``{prefix}/{rel}``; None if that version does not exist
        (never written, or pruned by max_versions)."""
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValueError(f"version must be an integer >= 1, got {version!r}")
        return self._read(rel, version)

    def current_version(self, rel: str) -> int:
        """The path's current version (metadata ``current_version``); 0 if absent.

        This is the number to pass as ``cas`` to replace the latest version, even when that
        version is deleted.
        """
        path = self._path(rel)
        answer = self._call(
            "read metadata of",
            path,
            lambda: self._client.secrets.kv.v2.read_secret_metadata(path, mount_point=self.mount),
            not_found=lambda _: None,
        )
        if answer is None:
            return 0
        meta = _get(answer, "data", dict, where=f"metadata of {self.mount}/{path}")
        return _get(meta, "current_version", int, where=f"metadata of {self.mount}/{path}")

    def list(self, rel: str = "") -> list[str]:
        """Child names under ``{prefix}/{rel}/``, sorted, without the trailing ``/`` Vault puts
        on folders (a name that is both a secret and a folder appears once); [] if none."""
        path = self._path(rel, allow_root=True)
        answer = self._call(
            "list",
            path,
            lambda: self._client.secrets.kv.v2.list_secrets(path, mount_point=self.mount),
            not_found=lambda _: None,
        )
        if answer is None:
            return []
        keys = _get(
            _get(answer, "data", dict, where=f"list of {self.mount}/{path}"),
            "keys",
            list,
            where=f"list of {self.mount}/{path}",
        )
        if not all(isinstance(k, str) and k.strip("/") for k in keys):
            raise CorruptState(f"Vault listed odd names under {self.mount}/{path}")
        return sorted({k.rstrip("/") for k in keys})

    # -- writes -----------------------------------------------------------------------------

    def write(self, rel: str, data: Mapping[str, Any], *, cas: int) -> int:
        """Write a new version if the current one is ``cas`` (0: must not exist yet).

        Returns the new version number; raises StoreConflict if another writer moved first.
        """
        if isinstance(cas, bool) or not isinstance(cas, int) or cas < 0:
            raise ValueError(f"cas must be an integer >= 0, got {cas!r}")
        path = self._path(rel)
        secret = dict(data)
        answer = self._call(
            "write",
            path,
            lambda: self._client.secrets.kv.v2.create_or_update_secret(
                path, secret, cas=cas, mount_point=self.mount
            ),
        )
        where = f"write answer for {self.mount}/{path}"
        return _get(_get(answer, "data", dict, where=where), "version", int, where=where)

    def destroy(self, rel: str) -> None:
        """Delete the metadata and every version of ``{prefix}/{rel}`` (no-op if absent)."""
        path = self._path(rel)
        self._call(
            "destroy",
            path,
            lambda: self._client.secrets.kv.v2.delete_metadata_and_all_versions(
                path, mount_point=self.mount
            ),
        )

    def destroy_versions(self, rel: str, versions: Iterable[int]) -> None:
        """Destroy these versions of ``{prefix}/{rel}`` for good (their data, not the path):
        how a revoked key's private half leaves every older version that held it."""
        chosen: tuple[int, ...] = tuple(sorted(set(versions)))
        if not chosen:
            return
        path = self._path(rel)
        self._call(
            "destroy versions of",
            path,
            lambda: self._client.secrets.kv.v2.destroy_secret_versions(
                path, list(chosen), mount_point=self.mount
            ),
        )

    def kv_settings(self, rel: str | None = None) -> KvSettings | None:
        """The mount's KV settings (``{mount}/config``), or with ``rel`` that path's own
        (its metadata); None when the token may not read them, or the path does not exist."""
        if rel is None:
            url = hvac.utils.format_url("/v1/{mount}/config", mount=self.mount)
            where, shown = f"{self.mount}/config", "config"
        else:
            path = self._path(rel)
            url = hvac.utils.format_url("/v1/{mount}/metadata/{path}", mount=self.mount, path=path)
            where, shown = f"metadata of {self.mount}/{path}", path
        try:
            answer = self._call(
                "read settings of", shown, lambda: self._client.adapter.get(url),
                not_found=lambda _: None,
            )
        except AccessDenied:
            return None  # least privilege: the caller says it could not check
        if answer is None:
            return None
        return parse_kv_settings(_get(answer, "data", dict, where=where), where=where)

    def set_max_versions(self, rel: str, n: int) -> None:
        """Keep at most ``n`` versions of ``{prefix}/{rel}`` (0: the mount's default).

        Only ``max_versions`` is sent, so other metadata (``delete_version_after``...) is left
        as it is; hvac's ``update_metadata`` would reset it.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"max_versions must be an integer >= 0, got {n!r}")
        path = self._path(rel)
        url = hvac.utils.format_url("/v1/{mount}/metadata/{path}", mount=self.mount, path=path)
        self._call(
            "update metadata of",
            path,
            lambda: self._client.adapter.post(url, json={"max_versions": n}),
        )

    def introspect(self, op: str, path: str, fn: Callable[[hvac.Client], T]) -> T:
        """``fn(client)``: a read-only call about the token itself (``rotator doctor``, see
        :mod:`rotator.adapters.vault.introspect`), logged in and translated like any other."""
        return self._call(op, path, lambda: fn(self._client))

    # -- internals --------------------------------------------------------------------------

    def _path(self, rel: str, *, allow_root: bool = False) -> str:
        rel = clean_path(rel, what="path", allow_empty=allow_root)
        return "/".join(p for p in (self.prefix, rel) if p)

    def _read(self, rel: str, version: int | None) -> Versioned | None:
        path = self._path(rel)
        answer = self._call(
            "read",
            path,
            lambda: self._client.secrets.kv.v2.read_secret_version(
                path, version=version, mount_point=self.mount, raise_on_deleted_version=False
            ),
            not_found=destroyed_version,
        )
        if answer is None:
            return None
        where = f"{self.mount}/{path}"
        body = _get(answer, "data", dict, where=where)
        meta = _get(body, "metadata", dict, where=where)
        data = body.get("data")
        if data is not None and not isinstance(data, dict):
            raise CorruptState(f"Vault answered a non-object secret at {where}")
        number = _get(meta, "version", int, where=where)
        created_text = _get(meta, "created_time", str, where=where)
        try:
            created = parse_rfc3339(created_text)
        except ValueError:
            raise CorruptState(f"Vault answered an unreadable created_time at {where}") from None
        gone = meta.get("destroyed") is True or data is None or _deleted_by_now(meta)
        return Versioned(data=None if gone else data, version=number, created_time=created)

    def _call(
        self,
        op: str,
        path: str,
        fn: Callable[[], T],
        *,
        not_found: Callable[[Any], T] | None = None,
    ) -> T:
        """Run one hvac call, translating its failures into rotator's errors (no chain).

        With a session: log in first if needed, and when the token is refused, let the
        session find out whether it died; if it was replaced, run ``fn`` once more.
        """
        session = self._session
        if session is None:
            return self._call_once(op, path, fn, not_found)
        session.ensure()
        used = self._client.token
        try:
            return self._call_once(op, path, fn, not_found)
        except AccessDenied as denied:
            first = denied
        # Outside the except block, so a retry's error does not chain to the first one.
        if not session.recover(used):
            raise_outside(first)
        return self._call_once(op, path, fn, not_found)

    def _call_once(
        self, op: str, path: str, fn: Callable[[], T], not_found: Callable[[Any], T] | None
    ) -> T:
        try:
            return fn()
        except LIBRARY_ERRORS as exc:
            if not_found is not None and classify(exc) is Failure.NOT_FOUND:
                return not_found(exc)
            failure = store_failure(
                exc, op=op, mount=self.mount, path=path, addr=self._client.url, who=self._who
            )
        raise_outside(failure)




def clean_path(text: str, *, what: str, allow_empty: bool) -> str:
    """Validate a ``/``-separated path: no empty, ``.`` or ``..`` segments."""
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a str")
    if text == "":
        if allow_empty:
            return ""
        raise ValueError(f"{what} must not be empty")
    for segment in text.split("/"):
        if segment in ("", ".", ".."):
            raise ValueError(f"{what} {text!r}: empty, '.' or '..' segments are not allowed")
        if not segment.isprintable():
            raise ValueError(f"{what} {text!r}: control characters are not allowed")
    return text


def _deleted_by_now(meta: dict[str, Any]) -> bool:
    """A version is deleted once its ``deletion_time`` has passed. Under KV v2's
    ``delete_version_after`` every new version carries a *future* deletion time: until then
    it is as alive as any other (Vault answers its data; rotator must read it)."""
    text = meta.get("deletion_time")
    if not isinstance(text, str) or not text:
        return False
    try:
        when = parse_rfc3339(text)
    except ValueError:
        return True  # unreadable: do not trust the data
    return when <= datetime.now(UTC)

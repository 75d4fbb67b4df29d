"""The Vault (KV version 2) adapter: the one module of rotator that imports ``hvac``.

Everything rotator keeps in Vault lives under ``{mount}/{prefix}/...`` and every write is a
check-and-set: ``write(rel, data, cas=n)`` succeeds only if the path's current version is
``n`` (``0``: the path must not exist yet), so two writers can never silently overwrite
each other.

hvac's errors are translated here, at the boundary, into rotator's own tree::

    cannot connect, timeout, 429, 5xx, sealed   -> StoreUnavailable  (names VAULT_ADDR)
    401 / 403                                   -> AccessDenied      (names VAULT_TOKEN)
    400 "check-and-set parameter did not match" -> StoreConflict
    no such mount, or a mount that is not KV v2 -> ConfigError       (names ROTATOR_VAULT_MOUNT)
    an answer of an unexpected shape            -> CorruptState

The rotator errors are raised *outside* the ``except`` block, so they carry no
``__cause__`` or ``__context__``: hvac's exceptions keep the response body, and the
``requests`` exceptions keep the request, headers (``X-Vault-Token``) included. Messages are
one line and never hold a token, secret data or a response body.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit

import hvac
import hvac.exceptions
import hvac.utils
import requests

from rotator.errors import (
    AccessDenied,
    ConfigError,
    CorruptState,
    RotatorError,
    StoreConflict,
    StoreUnavailable,
)
from rotator.model import parse_rfc3339, utc

__all__ = ["Versioned", "VaultStore", "connect"]

T = TypeVar("T")

_UNAVAILABLE: tuple[type[BaseException], ...] = (
    hvac.exceptions.VaultDown,
    hvac.exceptions.InternalServerError,
    hvac.exceptions.BadGateway,
    hvac.exceptions.VaultNotInitialized,
    hvac.exceptions.RateLimitExceeded,
    hvac.exceptions.UnexpectedError,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
)


def connect(
    addr: str,
    token: str,
    *,
    cacert: str | None = None,
    namespace: str | None = None,
    timeout: float = 5.0,
) -> hvac.Client:
    """An hvac client for ``addr`` with ``token``; opens no connection (``check()`` does).

    ``cacert`` is a CA bundle path for TLS verification (system roots when None); ``timeout``
    is seconds per HTTP request, short so a dead Vault is noticed quickly. The caller owns
    the client and closes it with ``client.adapter.close()``.
    """
    problems = []
    try:
        parts = urlsplit(addr)
        usable = parts.scheme in ("http", "https") and bool(parts.hostname)
        _ = parts.port  # raises ValueError on a port that is not a number in range
    except ValueError:
        usable = False
    if not usable:
        problems.append(
            f"VAULT_ADDR: expected a URL like https://vault:8200, got {_safe_addr(addr)!r}"
        )
    if not token or token != token.strip():
        problems.append("VAULT_TOKEN: empty, or has surrounding whitespace")
    if timeout <= 0:
        problems.append(f"Vault timeout: expected seconds > 0, got {timeout!r}")
    if problems:
        raise ConfigError(problems)
    # Pass every setting explicitly: hvac would otherwise fall back to VAULT_* variables and
    # ~/.vault-token, and rotator reads its environment in one place only.
    return hvac.Client(
        url=addr,
        token=token,
        verify=cacert if cacert else True,
        timeout=timeout,
        namespace=namespace or None,
    )


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
    """Check-and-set access to ``{mount}/{prefix}/...`` on a KV version 2 mount."""

    def __init__(
        self, client: hvac.Client, *, mount: str = "secret", prefix: str = "encord"
    ) -> None:
        self._client = client
        self.mount = _clean_path(mount.strip("/"), what="mount", allow_empty=False)
        self.prefix = _clean_path(prefix.strip("/"), what="prefix", allow_empty=True)

    def __repr__(self) -> str:
        return f"VaultStore(mount={self.mount!r}, prefix={self.prefix!r})"

    # -- health -----------------------------------------------------------------------------

    def check(self) -> None:
        """Prove that Vault answers, the token is valid and the mount is KV version 2.

        Raises StoreUnavailable (VAULT_ADDR), AccessDenied (VAULT_TOKEN) or ConfigError
        (ROTATOR_VAULT_MOUNT). Uses ``auth/token/lookup-self`` (granted by the default policy)
        and ``sys/internal/ui/mounts/{mount}``, which any token with access to the mount may
        read.
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
                f"{bad_mount} (it does not exist, or VAULT_TOKEN has no access to it)"
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

    # -- internals --------------------------------------------------------------------------

    def _path(self, rel: str, *, allow_root: bool = False) -> str:
        rel = _clean_path(rel, what="path", allow_empty=allow_root)
        return "/".join(p for p in (self.prefix, rel) if p)

    def _read(self, rel: str, version: int | None) -> Versioned | None:
        path = self._path(rel)
        answer = self._call(
            "read",
            path,
            lambda: self._client.secrets.kv.v2.read_secret_version(
                path, version=version, mount_point=self.mount, raise_on_deleted_version=False
            ),
            not_found=_destroyed_version,
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
        gone = bool(meta.get("deletion_time")) or meta.get("destroyed") is True
        return Versioned(data=None if gone else data, version=number, created_time=created)

    def _call(
        self,
        op: str,
        path: str,
        fn: Callable[[], T],
        *,
        not_found: Callable[[Any], T] | None = None,
    ) -> T:
        """Run one hvac call, translating its failures into rotator's errors (no chain)."""
        try:
            return fn()
        except hvac.exceptions.InvalidPath as exc:
            if _no_route(exc):
                failure: RotatorError = ConfigError(
                    f"ROTATOR_VAULT_MOUNT: {self.mount!r} is not a KV version 2 mount "
                    f"(Vault has no route for {op} {self.mount}/{path})"
                )
            elif not_found is not None:
                return not_found(exc)
            else:
                failure = CorruptState(f"Vault answered 404 to {op} {self.mount}/{path}")
        except (hvac.exceptions.VaultError, requests.exceptions.RequestException) as exc:
            failure = self._translate(exc, op, path)
        _raise(failure)

    def _translate(self, exc: Exception, op: str, path: str) -> RotatorError:
        where = f"{self.mount}/{path}"
        if isinstance(exc, _UNAVAILABLE):
            return StoreUnavailable(
                f"Vault at VAULT_ADDR did not answer: {type(exc).__name__} "
                f"(on {op} {where}; VAULT_ADDR={_safe_addr(self._client.url)})"
            )
        if isinstance(exc, hvac.exceptions.Forbidden | hvac.exceptions.Unauthorized):
            status = 403 if isinstance(exc, hvac.exceptions.Forbidden) else 401
            return AccessDenied(
                f"Vault refused the token (VAULT_TOKEN) for {op} {where}", status=status
            )
        if isinstance(exc, hvac.exceptions.InvalidRequest) and any(
            "check-and-set" in e for e in _errors(exc)
        ):
            return StoreConflict(f"Vault check-and-set failed for {op} {where}: version moved on")
        if isinstance(exc, hvac.exceptions.InvalidRequest):
            return CorruptState(f"Vault rejected {op} {where} as a bad request (400)")
        if isinstance(exc, requests.exceptions.RequestException):
            return StoreUnavailable(
                f"Vault at VAULT_ADDR did not answer: {type(exc).__name__} "
                f"(on {op} {where}; VAULT_ADDR={_safe_addr(self._client.url)})"
            )
        return CorruptState(f"Vault answered {type(exc).__name__} to {op} {where}")


def _raise(failure: RotatorError) -> NoReturn:
    # Raised outside any ``except`` block: no __context__ pointing at hvac/requests objects.
    raise failure


def _errors(exc: hvac.exceptions.VaultError) -> list[str]:
    errors = getattr(exc, "errors", None)
    return [e for e in errors if isinstance(e, str)] if isinstance(errors, list) else []


def _no_route(exc: hvac.exceptions.VaultError) -> bool:
    return any("no handler for route" in e for e in _errors(exc))


def _destroyed_version(exc: hvac.exceptions.InvalidPath) -> Any:
    """The 404 body of a destroyed version (it still names the version), else None.

    hvac hands back soft-deleted versions itself but raises for destroyed ones.
    """
    body = exc.json
    if isinstance(body, dict) and isinstance(body.get("data"), dict):
        meta = body["data"].get("metadata")
        if isinstance(meta, dict) and meta.get("destroyed") is True:
            return {"data": {"data": None, "metadata": meta}}
    return None


def _get(container: Any, key: str, kind: type[T], *, where: str) -> T:
    """``container[key]`` checked to be a ``kind``; CorruptState otherwise."""
    if not isinstance(container, dict):
        raise CorruptState(f"Vault answered an unexpected shape for {where}")
    value = container.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise CorruptState(f"Vault answered no valid {key!r} for {where}")
    return value


def _clean_path(text: str, *, what: str, allow_empty: bool) -> str:
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


def _safe_addr(addr: str) -> str:
    """``scheme://host:port`` of ``addr``, without any user:password@, path or query."""
    try:
        parts = urlsplit(addr)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparseable>"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}" if parts.scheme else "<no scheme>"

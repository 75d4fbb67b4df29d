"""The ways rotator logs in to Vault (``ROTATOR_VAULT_AUTH``), one small class each.

Each method is a frozen value that knows the variables it reads (:attr:`VARIABLES`,
``from_env``), how it obtains a token (``login``), what to name in messages
(``variables``, ``credential``, ``refused``) and what may be logged (``summary``):

- :class:`TokenLogin` (``token``, the default): the given token, or the one in
  ``VAULT_TOKEN_FILE`` (re-read when the token must be replaced); "login" looks it up
  (``auth/token/lookup-self``) to learn its TTL;
- :class:`AppRoleLogin` (``approle``): ``auth/{mount}/login`` with ``VAULT_ROLE_ID`` and
  ``VAULT_SECRET_ID`` (re-read from ``VAULT_SECRET_ID_FILE`` at every login);
- :class:`KubernetesLogin` (``kubernetes``): ``auth/{mount}/login`` with ``VAULT_K8S_ROLE``
  and the service-account JWT read from ``VAULT_K8S_JWT_FILE`` at every login.

:data:`LOGINS` maps each ``ROTATOR_VAULT_AUTH`` value to its class. Role and secret IDs are
never shown (``repr=False``); every secret ID and JWT read is registered with the log
redactor before it is sent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, TypeAlias

from rotator.adapters.vault.answers import TokenInfo, auth_answer, lookup_answer
from rotator.adapters.vault.env import EnvReader, EnvVar, parse_kv_path, parse_role_name, show
from rotator.core import redaction as logs
from rotator.core.errors import AccessDenied, ConfigError

AuthMethod = Literal["token", "approle", "kubernetes"]
K8S_JWT_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/token"  # noqa: S105 - a path
"""Where Kubernetes mounts a pod's service-account token (the default VAULT_K8S_JWT_FILE)."""

LoginResult: TypeAlias = "tuple[str, TokenInfo, float]"
"""What a login gives: the token, its description, and the TTL it was issued with."""


class Door(Protocol):
    """What a login method needs from the session: one call on a fresh side client."""

    @property
    def given_token(self) -> str:
        """The token from the settings (token auth with VAULT_TOKEN); '' otherwise."""

    def call(self, path: str, fn: Callable[[Any], Any], *, token: str = "") -> Any:
        """``fn(client)`` on a client holding ``token`` (none: ''), its failure translated
        into a rotator error naming ``path``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenLogin:
    """``token`` auth: a token given in ``VAULT_TOKEN`` or ``VAULT_TOKEN_FILE``."""

    method: ClassVar[AuthMethod] = "token"
    quiet_first_login: ClassVar[bool] = True
    """Its first "login" only looks up the token it was given: not news."""
    mount_hint: ClassVar[str] = ""
    VARIABLES: ClassVar[tuple[EnvVar, ...]] = (
        EnvVar("VAULT_TOKEN", "— (one required with `token`)", "Vault token", secret=True),
        EnvVar("VAULT_TOKEN_FILE", "— (one required with `token`)",
               "or a file holding it, re-read when the token must be replaced"),
    )

    token_file: str | None = None
    """``VAULT_TOKEN_FILE``: re-read when the token must be replaced."""

    @property
    def mount_point(self) -> str:
        return "token"

    @property
    def variables(self) -> str:
        """The variables that hold the credential, for messages and hints."""
        return "VAULT_TOKEN_FILE" if self.token_file else "VAULT_TOKEN"

    @property
    def credential(self) -> str:
        """Where the token comes from (for "Vault refused the token (...)")."""
        return self.variables

    @property
    def static(self) -> bool:
        """The token is fixed for the process's life (VAULT_TOKEN, no file)."""
        return self.token_file is None

    @property
    def secret_values(self) -> tuple[str, ...]:
        return ()

    def summary(self) -> dict[str, object]:
        return {"method": self.method, "from_file": self.token_file is not None}

    def refused(self, path: str, status: int) -> AccessDenied:
        return AccessDenied(
            f"Vault refused the token ({self.variables}) for look up {path}", status=status
        )

    def current_token(self, given: str) -> str:
        """The token from VAULT_TOKEN_FILE (read now), else ``given``."""
        if self.token_file is None:
            return given
        return read_credential(self.token_file, "VAULT_TOKEN_FILE", "the token")

    def stuck(self, before: str) -> str | None:
        """Why logging in again cannot replace ``before`` (a hint), None if it may."""
        if self.token_file is None:
            return (
                "the token from VAULT_TOKEN cannot be renewed or replaced: restart "
                "with a new token, or use VAULT_TOKEN_FILE or AppRole"
            )
        if self.current_token("") == before:
            return "VAULT_TOKEN_FILE still holds the same token"
        return None

    def login(self, door: Door, started: float) -> LoginResult:
        token = self.current_token(door.given_token)
        answer = door.call(
            "auth/token/lookup-self", lambda c: c.auth.token.lookup_self(), token=token
        )
        info, issued = lookup_answer(answer, started)
        return token, info, issued

    @classmethod
    def from_env(cls, env: EnvReader) -> tuple[str, TokenLogin] | None:
        """The token and the login, or None after recording problems."""
        required = "required (or VAULT_TOKEN_FILE naming a file holding it)"
        if env.raw("VAULT_ROLE_ID") is not None:
            required += "; VAULT_ROLE_ID is set: for AppRole set ROTATOR_VAULT_AUTH=approle"
        elif env.raw("VAULT_K8S_ROLE") is not None:
            required += (
                "; VAULT_K8S_ROLE is set: for Kubernetes set ROTATOR_VAULT_AUTH=kubernetes"
            )
        token, token_file = env.secret("VAULT_TOKEN", what="the token", required=required)
        if token is None:
            return None
        return token, cls(token_file=token_file)


class _MountedLogin:
    """What AppRole and Kubernetes share: a login posted to ``auth/{mount}/login``."""

    __slots__ = ()
    method: ClassVar[AuthMethod]
    label: ClassVar[str]
    mount_variable: ClassVar[str]
    quiet_first_login: ClassVar[bool] = False
    static: ClassVar[bool] = False
    mount: str | None

    @property
    def mount_point(self) -> str:
        """Where the method is mounted: ``mount`` or its usual path."""
        return self.mount or self.method

    @property
    def login_path(self) -> str:
        return f"auth/{self.mount_point}/login"

    @property
    def variables(self) -> str:
        raise NotImplementedError

    @property
    def credential(self) -> str:
        return f"from the {self.label} login with {self.variables}"

    @property
    def mount_hint(self) -> str:
        return f", and {self.mount_variable} names its mount"

    def refused(self, path: str, status: int) -> AccessDenied:
        return AccessDenied(
            f"Vault refused the {self.label} login at {path}{self._role_text()} ({status}): "
            f"check {self.variables} (and {self.mount_variable}, if the method is mounted "
            "elsewhere)",
            status=status,
        )

    def _role_text(self) -> str:
        return ""

    def stuck(self, before: str) -> str | None:
        return None  # a new login always gives a new token


def _no_token(env: EnvReader, method: str) -> None:
    """Methods that log in for their token refuse VAULT_TOKEN and VAULT_TOKEN_FILE."""
    for name in ("VAULT_TOKEN", "VAULT_TOKEN_FILE"):
        if env.raw(name) is not None:
            env.problem(
                name,
                f"not used with ROTATOR_VAULT_AUTH={method} (it logs in for its own token); "
                "unset it",
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class AppRoleLogin(_MountedLogin):
    """``approle`` auth: a role ID and a secret ID (or a file holding it)."""

    method: ClassVar[AuthMethod] = "approle"
    label: ClassVar[str] = "AppRole"
    mount_variable: ClassVar[str] = "VAULT_APPROLE_MOUNT"
    VARIABLES: ClassVar[tuple[EnvVar, ...]] = (
        EnvVar("VAULT_ROLE_ID", "— (required with `approle`)", "AppRole role ID", secret=True),
        EnvVar("VAULT_SECRET_ID", "— (one required with `approle`)", "AppRole secret ID",
               secret=True),
        EnvVar("VAULT_SECRET_ID_FILE", "— (one required with `approle`)",
               "or a file holding it, re-read at every login"),
        EnvVar("VAULT_APPROLE_MOUNT", "`approle`", "where the AppRole auth method is mounted"),
    )

    role_id: str | None = field(default=None, repr=False)
    """``VAULT_ROLE_ID``. Not a password, but not shown either."""
    secret_id: str | None = field(default=None, repr=False)
    """``VAULT_SECRET_ID``, or the stripped contents of ``VAULT_SECRET_ID_FILE``."""
    secret_id_file: str | None = None
    """``VAULT_SECRET_ID_FILE``: re-read at every login."""
    mount: str | None = None
    """``VAULT_APPROLE_MOUNT``; None means ``approle``."""

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not self.role_id:
            problems.append("VAULT_ROLE_ID: required with ROTATOR_VAULT_AUTH=approle")
        if not self.secret_id and not self.secret_id_file:
            problems.append(
                "VAULT_SECRET_ID: required with ROTATOR_VAULT_AUTH=approle "
                "(or VAULT_SECRET_ID_FILE)"
            )
        if problems:
            raise ConfigError(problems)

    @property
    def variables(self) -> str:
        secret = "VAULT_SECRET_ID_FILE" if self.secret_id_file else "VAULT_SECRET_ID"
        return f"VAULT_ROLE_ID and {secret}"

    @property
    def secret_values(self) -> tuple[str, ...]:
        return tuple(v for v in (self.secret_id, self.role_id) if v)

    def summary(self) -> dict[str, object]:
        return {
            "method": self.method,
            "mount": self.mount_point,
            "secret_id_from_file": self.secret_id_file is not None,
        }

    def login(self, door: Door, started: float) -> LoginResult:
        secret_id = self.secret_id or ""
        if self.secret_id_file is not None:
            secret_id = read_credential(
                self.secret_id_file, "VAULT_SECRET_ID_FILE", "the secret ID"
            )
        logs.register_secret(secret_id)
        return _logged_in(
            door, self.login_path, started,
            lambda c: c.auth.approle.login(
                self.role_id, secret_id, use_token=False, mount_point=self.mount_point
            ),
        )

    @classmethod
    def from_env(cls, env: EnvReader) -> tuple[str, AppRoleLogin] | None:
        before = len(env.problems)
        _no_token(env, cls.method)
        role_id = env.raw("VAULT_ROLE_ID")
        if role_id is None:
            env.problem("VAULT_ROLE_ID", "required with ROTATOR_VAULT_AUTH=approle")
        elif any(ch.isspace() or not ch.isprintable() for ch in role_id.strip()):
            env.problem("VAULT_ROLE_ID", "the role ID contains whitespace or control characters")
        secret_id, secret_file = env.secret(
            "VAULT_SECRET_ID", what="the secret ID",
            required="required with ROTATOR_VAULT_AUTH=approle (or VAULT_SECRET_ID_FILE)",
        )
        mount = env.parsed("VAULT_APPROLE_MOUNT", "approle", parse_kv_path)
        if len(env.problems) > before:
            return None
        assert role_id is not None and mount is not None  # noqa: S101 - no problem recorded
        return "", cls(
            role_id=role_id.strip(), secret_id=secret_id, secret_id_file=secret_file, mount=mount
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class KubernetesLogin(_MountedLogin):
    """``kubernetes`` auth: a Vault role and the pod's service-account JWT."""

    method: ClassVar[AuthMethod] = "kubernetes"
    label: ClassVar[str] = "Kubernetes"
    mount_variable: ClassVar[str] = "VAULT_K8S_MOUNT"
    VARIABLES: ClassVar[tuple[EnvVar, ...]] = (
        EnvVar("VAULT_K8S_ROLE", "— (required with `kubernetes`)",
               "the Vault role bound to the pod's service account"),
        EnvVar("VAULT_K8S_JWT_FILE", f"`{K8S_JWT_FILE}`",
               "the service-account JWT, read at every login"),
        EnvVar("VAULT_K8S_MOUNT", "`kubernetes`", "where the Kubernetes auth method is mounted"),
    )

    k8s_role: str | None = None
    """``VAULT_K8S_ROLE``: the Vault role bound to this service account."""
    jwt_file: str = K8S_JWT_FILE
    """``VAULT_K8S_JWT_FILE``: the service-account token, read at every login (Kubernetes
    rotates projected tokens). Default: where Kubernetes mounts it."""
    mount: str | None = None
    """``VAULT_K8S_MOUNT``; None means ``kubernetes``."""

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not self.k8s_role:
            problems.append("VAULT_K8S_ROLE: required with ROTATOR_VAULT_AUTH=kubernetes")
        if not self.jwt_file.strip():
            problems.append("VAULT_K8S_JWT_FILE: must name the service-account token file")
        if problems:
            raise ConfigError(problems)

    @property
    def variables(self) -> str:
        return "VAULT_K8S_ROLE and VAULT_K8S_JWT_FILE"

    @property
    def secret_values(self) -> tuple[str, ...]:
        return ()

    def summary(self) -> dict[str, object]:
        return {
            "method": self.method,
            "mount": self.mount_point,
            "role": self.k8s_role,
            "jwt_file": self.jwt_file,
        }

    def _role_text(self) -> str:
        return f" for role {self.k8s_role!r}"

    def login(self, door: Door, started: float) -> LoginResult:
        jwt = read_credential(self.jwt_file, "VAULT_K8S_JWT_FILE", "the JWT")
        logs.register_secret(jwt)
        return _logged_in(
            door, self.login_path, started,
            lambda c: c.auth.kubernetes.login(
                self.k8s_role, jwt, use_token=False, mount_point=self.mount_point
            ),
        )

    @classmethod
    def from_env(cls, env: EnvReader) -> tuple[str, KubernetesLogin] | None:
        before = len(env.problems)
        _no_token(env, cls.method)
        role = env.parsed("VAULT_K8S_ROLE", None, parse_role_name)
        if env.raw("VAULT_K8S_ROLE") is None:
            env.problem("VAULT_K8S_ROLE", "required with ROTATOR_VAULT_AUTH=kubernetes")
        jwt_raw = env.raw("VAULT_K8S_JWT_FILE")
        jwt_file = jwt_raw.strip() if jwt_raw is not None else K8S_JWT_FILE
        if not jwt_file.isprintable():
            env.problem("VAULT_K8S_JWT_FILE", f"expected a file path, got {show(jwt_file)}")
        mount = env.parsed("VAULT_K8S_MOUNT", "kubernetes", parse_kv_path)
        if len(env.problems) > before:
            return None
        assert role is not None and mount is not None  # noqa: S101 - no problem recorded
        return "", cls(k8s_role=role, jwt_file=jwt_file, mount=mount)


VaultAuth: TypeAlias = TokenLogin | AppRoleLogin | KubernetesLogin
"""How rotator logs in to Vault: one of the login methods."""

LOGINS: Mapping[str, type[VaultAuth]] = {
    TokenLogin.method: TokenLogin,
    AppRoleLogin.method: AppRoleLogin,
    KubernetesLogin.method: KubernetesLogin,
}
"""``ROTATOR_VAULT_AUTH`` value -> its login class."""

AUTH_METHODS: tuple[AuthMethod, ...] = tuple(login.method for login in LOGINS.values())


def read_credential(path: str, variable: str, what: str) -> str:
    """A credential file's stripped text; ConfigError naming ``variable`` (never the text)."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read().strip()
    except (OSError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(
            f"{variable}: cannot read file {path[:200]!r}: {reason or 'unreadable'}"
        ) from None
    if not text:
        raise ConfigError(f"{variable}: {what} in {path[:200]!r} is empty")
    if any(ch.isspace() or not ch.isprintable() for ch in text):
        raise ConfigError(
            f"{variable}: {what} in {path[:200]!r} contains whitespace or control characters"
        )
    return text


def _logged_in(door: Door, path: str, started: float, call: Callable[[Any], Any]) -> LoginResult:
    """POST a login through ``door`` (a token-less side client) and read its ``auth`` block:
    the token, its description, and the TTL it was issued with."""
    token, info = auth_answer(door.call(path, call), started, where=path)
    return token, info, info.ttl

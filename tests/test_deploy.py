"""The container and ``deploy/``: Dockerfile lint and replay, manifests, Vault policy, agent.

Docker is not available here, so the Dockerfile is checked in two ways: hadolint lints it,
and its builder steps (ARG, ENV, WORKDIR, COPY, RUN) are replayed into a fresh folder standing
in for the image's root (``/opt/venv`` becomes ``<root>/opt/venv``...), with the build
arguments ``make image`` passes and a real ``pip install`` of the hashed requirements.lock.
The runtime stage's ENV, ENTRYPOINT, CMD and HEALTHCHECK are then run exactly as written.
The replay's ``pip install`` is the one slow step here (about 10 s), done once for the whole
module by the ``image`` fixture.

The Vault policy is loaded into the real OpenBao of the test session, rendered for the
test's own prefix (the file is written for the default mount ``secret`` and prefix
``encord``), and the Vault Agent configuration is run with the real ``bao agent``.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import hvac.exceptions
import pytest
import yaml
from encord import EncordUserClient
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import rotator
from rotator.adapters.vault import VaultStore, connect
from rotator.adapters.vault.introspect import capabilities
from rotator.cli import ENV_HELP
from rotator.core.errors import AccessDenied
from rotator.core.keys import load_private
from rotator.dev.openbao import OpenBaoDev, find_bao
from rotator.dev.sandbox.seed import SeedConfig
from rotator.runtime.config import from_env
from tests.e2e import FAST_SDK, base_env, rotator_cli, sdk_authenticates
from tests.fixtures_openbao import MakeToken
from tests.fixtures_sandbox import SandboxHandle
from tests.release import LOCK, make_image_command, read_lock
from tests.secret_scan import assert_no_secrets

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
DOCKERFILE = REPO / "Dockerfile"
KUBERNETES = DEPLOY / "kubernetes"
COMPOSE = DEPLOY / "compose" / "compose.yaml"
POLICY = DEPLOY / "vault" / "rotator-policy.hcl"
CONSUMER_POLICY = DEPLOY / "vault" / "consumer-policy.hcl"
INTAKE_POLICY = DEPLOY / "vault" / "key-intake-policy.hcl"
AGENT_HCL = DEPLOY / "vault" / "agent" / "agent.hcl"
AGENT_TEMPLATE = DEPLOY / "vault" / "agent" / "ssh-key.ctmpl"

#: Every variable rotator reads, as ``rotator --help`` lists them.
ROTATOR_VARIABLES = frozenset(re.findall(r"\b(?:VAULT|ROTATOR|ENCORD)_[A-Z0-9_]+\b", ENV_HELP))

#: The base of both stages: a slim Debian Python 3.11, pinned to a patch release.
_BASE_IMAGE = re.compile(r"python:3\.11\.\d+-slim-bookworm")


# --- the Dockerfile, parsed --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Instruction:
    keyword: str
    args: str


@dataclass(frozen=True, slots=True)
class Stage:
    base: str
    name: str | None
    steps: tuple[Instruction, ...]

    def all(self, keyword: str) -> list[str]:
        return [i.args for i in self.steps if i.keyword == keyword]

    def last(self, keyword: str) -> str:
        found = self.all(keyword)
        assert found, f"no {keyword} in the stage FROM {self.base}"
        return found[-1]


def parse_dockerfile(text: str) -> list[Stage]:
    """Stages of a Dockerfile: continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    stages: list[tuple[str, str | None, list[Instruction]]] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append((words[0], name, []))
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1][2].append(Instruction(keyword, args))
    return [Stage(base, name, tuple(steps)) for base, name, steps in stages]


def exec_form(args: str) -> list[str]:
    """The JSON array of an exec-form instruction; fails on the shell form."""
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return [str(v) for v in value]


def healthcheck(args: str) -> tuple[dict[str, str], list[str]]:
    """``HEALTHCHECK --opt=v ... CMD [...]`` as (options, exec-form command)."""
    options_text, sep, command = args.partition("CMD ")
    assert sep, "HEALTHCHECK has no CMD"
    options = dict(
        opt.removeprefix("--").split("=", 1) for opt in shlex.split(options_text)
    )
    return options, exec_form(command)


def seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m)", text)
    assert match, text
    return int(match[1]) * {"ms": 0.001, "s": 1.0, "m": 60.0}[match[2]]


def stages() -> tuple[Stage, Stage]:
    found = parse_dockerfile(DOCKERFILE.read_text())
    assert len(found) == 2, "one builder stage and one runtime stage"
    return found[0], found[1]


# --- the image, replayed in a folder -----------------------------------------------------


class Rootfs:
    """A folder standing in for the image's root: container paths map below it."""

    def __init__(self, root: Path, container_paths: set[str]) -> None:
        self.root = root
        # Longest first, so /opt/venv/bin is never cut at /opt/venv's end by a shorter one.
        names = sorted(container_paths, key=len, reverse=True)
        self._pattern = re.compile(
            r"(?<![\w./-])(" + "|".join(re.escape(n) for n in names) + r")(?=[/\s:\"']|$)"
        )

    def host(self, container_path: str) -> Path:
        assert container_path.startswith("/"), container_path
        return self.root / container_path.lstrip("/")

    def rewrite(self, text: str) -> str:
        """``text`` with every known container path replaced by its folder here."""
        return self._pattern.sub(lambda m: str(self.host(m[1])), text)


def expand(value: str, env: Mapping[str, str]) -> str:
    """Docker's ``$VAR``/``${VAR}`` substitution in ENV values."""
    return re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m[1], ""), value)


def apply_env(args: str, env: dict[str, str], fs: Rootfs) -> None:
    before = dict(env)  # Docker substitutes with the values from before this ENV line
    for pair in shlex.split(args):
        key, sep, value = pair.partition("=")
        assert sep, f"ENV {pair!r}: use the KEY=value form"
        env[key] = fs.rewrite(expand(value, before))


def base_image_env(fs: Rootfs) -> dict[str, str]:
    """What ``python:3.11-slim`` starts with: a ``python`` on PATH, and nothing of ours."""
    usr_local = fs.host("/usr/local/bin")
    if not usr_local.exists():
        usr_local.mkdir(parents=True)
        real_python = Path(sys.executable).resolve()  # the interpreter, not this venv's link
        for name in ("python", "python3"):
            (usr_local / name).symlink_to(real_python)
    return {"PATH": f"{usr_local}:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


@dataclass(frozen=True, slots=True)
class Image:
    fs: Rootfs
    env: dict[str, str]
    workdir: Path
    argv: list[str]
    health_options: dict[str, str]
    health_argv: list[str]

    def run(
        self,
        argv: list[str],
        extra: Mapping[str, str] | None = None,
        timeout: float = 30,
        stdin: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            env={**self.env, **(extra or {})},
            cwd=self.workdir,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def snapshot(root: Path, skip: Path) -> dict[str, tuple[int, int]]:
    """Size and mtime of every file below ``root`` except below ``skip``."""
    out: dict[str, tuple[int, int]] = {}
    for path in root.rglob("*"):
        if path.is_relative_to(skip) or path.is_symlink() or not path.is_file():
            continue
        st = path.stat()
        out[str(path.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    """The Dockerfile's builder steps replayed once; the runtime stage's settings applied."""
    builder, runtime = stages()
    root = tmp_path_factory.mktemp("image")
    paths = {"/tmp"}
    for stage in (builder, runtime):
        paths.update(stage.all("WORKDIR"))
        for args in stage.all("COPY"):
            words = args.split()
            paths.update(w for w in words if w.startswith("/"))
    fs = Rootfs(root, paths)
    fs.host("/tmp").mkdir(parents=True)

    # Builder: ARG (as `make image` sets them), ENV, WORKDIR, COPY from the build context
    # (minus .dockerignore), RUN.
    build_args = make_image_command().build_args
    env = base_image_env(fs)
    # The machine's pip settings (index, wheel folder, certificates) still apply.
    env.update({k: v for k, v in os.environ.items() if k.startswith("PIP_")})
    env["HOME"] = str(fs.host("/root"))
    workdir = fs.host("/")
    for step in builder.steps:
        if step.keyword == "ARG":
            # RUN sees a build argument as a variable: the value passed, else the default.
            name, _, default = step.args.partition("=")
            env[name] = build_args.get(name, shlex.split(default)[0] if default else "")
        elif step.keyword == "ENV":
            apply_env(step.args, env, fs)
        elif step.keyword == "WORKDIR":
            workdir = fs.host(step.args)
            workdir.mkdir(parents=True, exist_ok=True)
        elif step.keyword == "COPY":
            *sources, dest = step.args.split()
            assert not any(s.startswith("--") for s in sources), "builder COPY takes no flags"
            target = workdir / dest
            for source in sources:
                origin = REPO / source
                assert origin.exists(), f"COPY {source}: not in the build context"
                if origin.is_dir():
                    shutil.copytree(
                        origin,
                        target if dest.endswith("/") and len(sources) == 1 else target / source,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
                        dirs_exist_ok=True,
                    )
                else:
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(origin, target / origin.name)
        elif step.keyword == "RUN":
            done = subprocess.run(
                ["/bin/sh", "-c", fs.rewrite(step.args)],
                env=env,
                cwd=workdir,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            assert done.returncode == 0, f"RUN failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}"
        else:
            raise AssertionError(f"the replay does not know the builder's {step.keyword}")

    # Runtime: the venv is copied to the same path (a venv cannot move); ENV and WORKDIR.
    env = base_image_env(fs)
    workdir = fs.host("/")
    for step in runtime.steps:
        if step.keyword == "COPY":
            words = step.args.split()
            assert words[0] == "--from=builder" and words[1] == words[2], step.args
        elif step.keyword == "ENV":
            apply_env(step.args, env, fs)
        elif step.keyword == "WORKDIR":
            workdir = fs.host(step.args)
    options, health_argv = healthcheck(runtime.last("HEALTHCHECK"))
    return Image(
        fs=fs,
        env=env,
        workdir=workdir,
        argv=exec_form(runtime.last("ENTRYPOINT")) + exec_form(runtime.last("CMD")),
        health_options=options,
        health_argv=health_argv,
    )


# --- Dockerfile: lint and shape ------------------------------------------------------------


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    """hadolint (from the dev group, beside this Python) reports no finding at all."""
    hadolint = Path(sys.executable).parent / "hadolint"
    done = subprocess.run(
        [str(hadolint), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and done.stdout.strip() == "", done.stdout + done.stderr


def test_dockerfile_is_multi_stage_pinned_non_root_with_exec_entrypoint_and_healthcheck() -> None:
    """Both stages use one pinned slim Python; USER is numeric non-root; exec forms only."""
    builder, runtime = stages()
    assert builder.name == "builder" and runtime.name is None
    assert _BASE_IMAGE.fullmatch(builder.base), builder.base
    assert runtime.base == builder.base, "the venv's interpreter link needs the same base"
    user = runtime.last("USER").split(":")
    assert user[0].isdigit() and int(user[0]) >= 1000, "a numeric, non-root UID"
    assert all(part.isdigit() and int(part) != 0 for part in user)
    assert exec_form(runtime.last("ENTRYPOINT")) == ["rotator"]
    assert exec_form(runtime.last("CMD")) == ["run"]
    options, argv = healthcheck(runtime.last("HEALTHCHECK"))
    assert argv[0] == "python" and "/healthz" in argv[-1]
    assert seconds(options["timeout"]) <= 10
    assert runtime.all("EXPOSE") == ["8080"]
    # Nothing is installed in the runtime stage: its only RUN adds the user.
    assert all("useradd" in r and "pip" not in r and "apt" not in r for r in runtime.all("RUN"))
    # One RUN installs: the hashed lock first, then rotator alone, non-editable, no dev group.
    pip_runs = [r for r in builder.all("RUN") if "pip install" in r]
    assert len(pip_runs) == 1 and " -e " not in pip_runs[0] and "--group" not in pip_runs[0]
    installs = [c.split() for c in pip_runs[0].split("&&") if "pip install" in c]
    assert len(installs) == 2, pip_runs[0]
    assert {"--require-hashes", "-r", "requirements.lock"} <= set(installs[0]), installs[0]
    assert installs[0][installs[0].index("-r") + 1] == "requirements.lock"
    assert "--no-deps" in installs[1] and installs[1][-1] == ".", installs[1]


def test_dockerignore_keeps_the_context_to_what_the_build_copies() -> None:
    """.dockerignore excludes everything but the files the builder's COPY steps name."""
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    builder, _ = stages()
    copied = {
        source.rstrip("/") for args in builder.all("COPY") for source in args.split()[:-1]
    }
    assert copied == allowed


# --- the image, replayed -----------------------------------------------------------------


def test_image_entrypoint_helps_and_refuses_to_run_without_configuration(image: Image) -> None:
    """The installed entrypoint prints help (exit 0; ``run --help`` lists the variables);
    `run` unconfigured exits 2 in JSON."""
    exe = shutil.which(image.argv[0], path=image.env["PATH"])
    assert exe is not None and Path(exe).is_relative_to(image.fs.host("/opt/venv"))
    before = snapshot(image.fs.root, skip=image.fs.host("/tmp"))

    done = image.run([image.argv[0], "--help"])
    assert done.returncode == 0, done.stderr
    assert "rotator run --help" in done.stdout
    done = image.run([image.argv[0], "run", "--help"])
    assert done.returncode == 0, done.stderr
    assert "ROTATOR_ACCOUNTS" in done.stdout and "VAULT_ADDR" in done.stdout

    done = image.run(image.argv)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    events = [json.loads(line) for line in lines]  # every line is one JSON object
    problems = " ".join(str(e.get("problem")) for e in events if e["event"] == "config.invalid")
    assert "ROTATOR_ACCOUNTS" in problems and "VAULT_ADDR" in problems

    # Read-only-root friendly: running wrote nothing outside /tmp (no bytecode, no home).
    assert snapshot(image.fs.root, skip=image.fs.host("/tmp")) == before


_DISTRIBUTIONS = """
import json, importlib.metadata as m
print(json.dumps({d.metadata["Name"]: [d.version, d.requires or []] for d in m.distributions()}))
"""


def test_image_venv_holds_exactly_the_locked_dependency_closure(image: Image) -> None:
    """The replayed venv has rotator at its version and, besides, exactly the lock's pins."""
    done = image.run(["python", "-c", _DISTRIBUTIONS])
    assert done.returncode == 0, done.stderr
    installed: dict[str, tuple[str, list[str]]] = {
        canonicalize_name(name): (str(version), [str(r) for r in requires])
        for name, (version, requires) in json.loads(done.stdout).items()
    }
    assert installed.pop("rotator")[0] == rotator.__version__
    done = image.run(["rotator", "--version"])
    assert done.stdout.strip() == f"rotator {rotator.__version__}", done.stdout + done.stderr

    # rotator's dependencies, and theirs, as this Python on this platform needs them.
    needed: set[str] = set()
    todo = [Requirement(r) for r in json.loads(_requires(image, "rotator"))]
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(req.name)
        assert name in installed, f"{name} is needed but not installed"
        if name not in needed:
            needed.add(name)
            todo.extend(Requirement(r) for r in installed[name][1])
    pins = read_lock(LOCK.read_text())
    assert set(pins) == needed, "the lock pins exactly the runtime dependency closure"
    assert {n: v for n, (v, _) in installed.items() if n in pins} == {
        n: p.version for n, p in pins.items()
    }
    # Nothing else was installed but the venv's own tools.
    assert set(installed) - needed <= {"pip", "setuptools"}, set(installed) - needed


def _requires(image: Image, name: str) -> str:
    """The ``Requires-Dist`` list of ``name`` in the replayed venv, as JSON."""
    done = image.run(
        ["python", "-c", f"import json, importlib.metadata as m; "
         f"print(json.dumps(m.requires({name!r}) or []))"]
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_image_build_stops_when_rotator_reports_another_version(image: Image) -> None:
    """The builder's version check passes for rotator's version or none, and fails otherwise."""
    builder, _ = stages()
    (run,) = [r for r in builder.all("RUN") if "pip install" in r]
    check = run.split("&&")[-1].strip()
    assert "$VERSION" in check and "rotator --version" in check, check
    results = {}
    for version in (rotator.__version__, "", "9.9.9", f"{rotator.__version__}.1"):
        done = image.run(["/bin/sh", "-c", image.fs.rewrite(check)], {"VERSION": version})
        results[version] = done.returncode
    assert results == {
        rotator.__version__: 0, "": 0, "9.9.9": 1, f"{rotator.__version__}.1": 1
    }, results


class _HealthServer:
    """A local HTTP server answering ``status`` on /healthz and 404 elsewhere."""

    def __init__(self, status: int) -> None:
        seen: list[str] = []
        self.seen = seen

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append(self.path)
                self.send_response(status if self.path == "/healthz" else 404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _HealthServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False), (None, False)])
def test_image_healthcheck_passes_only_on_200_from_healthz(
    image: Image, status: int | None, healthy: bool
) -> None:
    """The HEALTHCHECK command, as written, exits 0 on 200 and non-zero on 503 or refused."""
    timeout = seconds(image.health_options["timeout"])
    with contextlib.ExitStack() as stack:
        if status is None:
            port = _closed_port()
            server = None
        else:
            server = stack.enter_context(_HealthServer(status))
            port = server.port
        done = image.run(
            image.health_argv, {"ROTATOR_HTTP_ADDR": f"0.0.0.0:{port}"}, timeout=timeout
        )
    assert (done.returncode == 0) is healthy, done.stderr[-500:]
    if server is not None:
        assert server.seen == ["/healthz"]


# --- Kubernetes manifests ----------------------------------------------------------------


def _load_all(path: Path) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert all(isinstance(d, dict) for d in docs), path
    return docs


def _kubernetes() -> dict[str, dict[str, Any]]:
    """The manifests kustomization.yaml lists, by kind."""
    kustomization = _load_all(KUBERNETES / "kustomization.yaml")[0]
    files = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files, "kustomization lists every manifest"
    by_kind: dict[str, dict[str, Any]] = {}
    for name in sorted(files):
        for doc in _load_all(KUBERNETES / name):
            assert doc["kind"] not in by_kind, f"two {doc['kind']} manifests"
            by_kind[doc["kind"]] = doc
    return by_kind


def _check_settings(environ: dict[str, str], tmp_path: Path) -> None:
    """``environ`` names only real variables and rotator accepts it as a whole."""
    unknown = set(environ) - ROTATOR_VARIABLES
    assert not unknown, f"not rotator variables: {sorted(unknown)}"
    token_file = tmp_path / "vault-token"
    token_file.write_text("not-a-real-token\n")
    if "VAULT_TOKEN_FILE" in environ:
        environ = {**environ, "VAULT_TOKEN_FILE": str(token_file)}
    settings = from_env(environ)  # raises ConfigError listing any problem
    assert settings.accounts


def test_kubernetes_deployment_is_hardened_and_probed(tmp_path: Path) -> None:
    """2 replicas, /healthz and /readyz probes, read-only non-root, requests, /tmp emptyDir,
    and Vault reached with a read-only projected token, no Vault credential in a Secret."""
    k8s = _kubernetes()
    assert set(k8s) == {
        "ConfigMap", "Deployment", "ServiceAccount", "Service", "PodDisruptionBudget",
        "NetworkPolicy",
    }
    deployment, config, account = k8s["Deployment"], k8s["ConfigMap"], k8s["ServiceAccount"]
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert account["automountServiceAccountToken"] is False
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    _, runtime = stages()
    assert pod["securityContext"]["runAsUser"] == int(runtime.last("USER").split(":")[0])
    (container,) = pod["containers"]
    assert container["image"].split(":")[0] == "rotator"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    listen_port = int(config["data"]["ROTATOR_HTTP_ADDR"].rpartition(":")[2])
    assert ports == {"http": listen_port}

    def probe(name: str) -> str:
        get = container[name]["httpGet"]
        assert ports[get["port"]] == listen_port
        return str(get["path"])

    assert probe("livenessProbe") == "/healthz"
    assert probe("readinessProbe") == "/readyz"
    assert probe("startupProbe") == "/healthz"

    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["runAsNonRoot"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    requests = container["resources"]["requests"]
    assert requests["cpu"] and requests["memory"]
    assert container["resources"]["limits"]["memory"]

    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]], "/tmp is the one writable place"
    # SIGTERM stops rotator within 10 s: leave it that long before the SIGKILL.
    assert pod["terminationGracePeriodSeconds"] >= 15

    assert container["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}]
    env = {e["name"]: e["value"] for e in container.get("env", [])}
    settings = {**config["data"], **env}
    # Vault: the kubernetes auth method with a projected service-account token, meant for
    # Vault only, mounted read-only; no token or secret ID anywhere, no Secret volume.
    assert settings["ROTATOR_VAULT_AUTH"] == "kubernetes" and settings["VAULT_K8S_ROLE"]
    assert not {"VAULT_TOKEN", "VAULT_TOKEN_FILE", "VAULT_SECRET_ID"} & set(settings)
    assert not any("secret" in v for v in pod["volumes"])
    jwt_file = env["VAULT_K8S_JWT_FILE"]
    (jwt_mount,) = [
        m for m in container["volumeMounts"] if jwt_file.startswith(m["mountPath"] + "/")
    ]
    assert jwt_mount["mountPath"] != "/tmp" and jwt_mount["readOnly"] is True
    (source,) = volumes[jwt_mount["name"]]["projected"]["sources"]
    projected = source["serviceAccountToken"]
    assert f"{jwt_mount['mountPath']}/{projected['path']}" == jwt_file
    assert projected["audience"] and projected["expirationSeconds"] <= 3600
    _check_settings(settings, tmp_path)


# --- compose -----------------------------------------------------------------------------


def test_compose_file_wires_openbao_sandbox_and_a_read_only_rotator(tmp_path: Path) -> None:
    """Compose builds this repo's image, runs it read-only, and gives rotator valid settings."""
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert set(services) == {"openbao", "vault-init", "sandbox", "rotator"}
    rotator, sandbox = services["rotator"], services["sandbox"]
    for service in (rotator, sandbox):
        assert (COMPOSE.parent / service["build"]["context"]).resolve() == REPO
        assert service["read_only"] is True and "/tmp" in service["tmpfs"]
        assert service["cap_drop"] == ["ALL"]
    assert rotator["command"] == ["run"]
    assert rotator["depends_on"]["vault-init"]["condition"] == "service_completed_successfully"

    env = {k: str(v) for k, v in rotator["environment"].items()}
    _check_settings(env, tmp_path)
    assert env["VAULT_ADDR"].startswith("http://openbao:")

    # The sandbox: its flags exist, its seed is valid, and rotator is pointed at its port.
    command = sandbox["command"]
    assert command[0] == "sandbox"
    flags = dict(arg.removeprefix("--").split("=", 1) for arg in command[1:])
    assert env["ENCORD_DOMAIN"] == f"http://sandbox:{flags['port']}"
    done = subprocess.run(
        [sys.executable, "-m", "rotator", "sandbox", "--help"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert done.returncode == 0
    assert all(f"--{flag}" in done.stdout for flag in flags)
    seed_mount = {
        target: COMPOSE.parent / source
        for source, target, *_ in (v.split(":") for v in sandbox["volumes"])
        if source.startswith(".")
    }
    seed = SeedConfig.load(seed_mount[flags["seed"]])
    key_file = str(seed.accounts[0].bootstrap_key_file)
    assert key_file.startswith("/tmp/shared/")
    assert f"bootstrap {seed.accounts[0].name} --private-key-file {key_file}" in (
        COMPOSE.read_text()
    ), "the documented bootstrap step names the sandbox's key file"
    assert env["ROTATOR_ACCOUNTS"] == f"{seed.accounts[0].name}={seed.accounts[0].account_hash}"

    # vault-init loads the least-privilege policy from deploy/vault.
    init = services["vault-init"]
    policy_dir = next(
        COMPOSE.parent / v.split(":")[0] for v in init["volumes"] if v.split(":")[1] == "/policy"
    )
    assert (policy_dir / POLICY.name).resolve() == POLICY
    assert "/policy/rotator-policy.hcl" in " ".join(init["command"])


# --- the Vault policy, against a real OpenBao --------------------------------------------

_POLICY_PATHS = {
    "secret/data/encord/*",
    "secret/destroy/encord/*",
    "secret/config",
    "auth/token/lookup-self",
    "auth/token/renew-self",
    "sys/capabilities-self",
}


def render_policy(text: str, prefix: str) -> str:
    """The policy file with its default prefix ``encord`` replaced by ``prefix``."""
    paths = set(re.findall(r'(?m)^path "([^"]+)"', text))
    assert paths == _POLICY_PATHS, f"unexpected policy paths: {sorted(paths ^ _POLICY_PATHS)}"
    return re.sub(
        r'(?m)^path "secret/(data|destroy)/encord/',
        lambda m: f'path "secret/{m[1]}/{prefix}/',
        text,
    )


@pytest.fixture
def rotator_token(vault_client: Any, vault_prefix: str) -> Iterator[str]:
    """A token holding only deploy/vault/rotator-policy.hcl (not even ``default``)."""
    name = f"rotator-{uuid.uuid4().hex[:8]}"
    vault_client.sys.create_or_update_policy(
        name=name, policy=render_policy(POLICY.read_text(), vault_prefix)
    )
    answer = vault_client.auth.token.create(
        policies=[name], no_default_policy=True, ttl="10m", renewable=True
    )
    token = answer["auth"]["client_token"]
    assert isinstance(token, str) and answer["auth"]["policies"] == [name]
    yield token
    with contextlib.suppress(Exception):
        vault_client.auth.token.revoke(token)
    with contextlib.suppress(Exception):
        vault_client.sys.delete_policy(name=name)


@pytest.fixture
def restricted(openbao: OpenBaoDev, rotator_token: str) -> Iterator[Any]:
    """An hvac client holding the rotator token."""
    client = connect(openbao.addr, rotator_token)
    try:
        yield client
    finally:
        client.adapter.close()


def test_policy_allows_every_vault_call_rotator_makes(restricted: Any, vault_prefix: str) -> None:
    """Under the policy alone, each Vault call the daemon and the CLI make succeeds: the
    start-up check, the mount's KV settings, reads of any version, check-and-set writes,
    destroying the versions of a revoked key, token self-renewal, and (rotator doctor) the
    token's own capabilities."""
    store = VaultStore(restricted, mount="secret", prefix=vault_prefix)
    store.check()  # lookup-self and sys/internal/ui/mounts/secret
    assert store.kv_settings() is not None  # secret/config
    assert store.write("alpha/state", {"v": 1}, cas=0) == 1
    assert store.write("alpha/state", {"v": 2}, cas=1) == 2
    latest = store.read("alpha/state")
    assert latest is not None and latest.data == {"v": 2}
    first = store.read_version("alpha/state", 1)
    assert first is not None and first.data == {"v": 1}
    store.destroy_versions("alpha/state", [1])
    gone = store.read_version("alpha/state", 1)
    assert gone is not None and gone.data is None
    assert store.read("alpha/absent") is None
    store.write("alpha/lease", {"holder": "replica-1"}, cas=0)
    renewed = restricted.auth.token.renew_self()
    assert renewed["auth"]["client_token"]
    caps = capabilities(store, [f"secret/data/{vault_prefix}/alpha/state", "secret/config"])
    assert caps == {  # rotator doctor's question about the token itself
        f"secret/data/{vault_prefix}/alpha/state": frozenset({"create", "read", "update"}),
        "secret/config": frozenset({"read"}),
    }


def test_policy_denies_everything_outside_the_prefix(
    restricted: Any, vault_client: Any, vault_prefix: str
) -> None:
    """The token cannot read or write other paths, list the mount, read policies or mint tokens."""
    other = f"other-{uuid.uuid4().hex[:8]}"
    sibling = f"{vault_prefix}-evil"  # a glob like encord* would match this
    for prefix in (other, sibling):
        VaultStore(vault_client, mount="secret", prefix=prefix).write("x", {"a": 1}, cas=0)
        denied = VaultStore(restricted, mount="secret", prefix=prefix)
        for attempt in (
            partial(denied.read, "x"),
            partial(denied.current_version, "x"),
            partial(denied.write, "x", {"a": 2}, cas=1),
            partial(denied.write, "y", {"a": 1}, cas=0),
            denied.list,
            partial(denied.destroy, "x"),
        ):
            with pytest.raises(AccessDenied):
                attempt()
    root_list = VaultStore(restricted, mount="secret", prefix="")
    with pytest.raises(AccessDenied):
        root_list.list()
    # Inside the prefix too, only what rotator uses: no soft-delete of a version, and no
    # metadata: neither `kv metadata delete` of a consumer path (every version gone for
    # good) nor `kv metadata put -delete-version-after=1s`, nor listing, nor reading it.
    own = VaultStore(restricted, mount="secret", prefix=vault_prefix)
    own.write("a/b", {"a": 1}, cas=0)
    for attempt in (own.list, partial(own.current_version, "a/b"), partial(own.destroy, "a/b")):
        with pytest.raises(AccessDenied):
            attempt()
    assert own.kv_settings("a/b") is None  # metadata unreadable: preflight skips it
    forbidden: list[Callable[[], object]] = [
        lambda: restricted.secrets.kv.v2.delete_latest_version_of_secret(
            f"{vault_prefix}/a/b", mount_point="secret"
        ),
        lambda: restricted.secrets.kv.v2.delete_metadata_and_all_versions(
            f"{vault_prefix}/a/b", mount_point="secret"
        ),
        lambda: restricted.secrets.kv.v2.update_metadata(
            f"{vault_prefix}/a/b", delete_version_after="1s", mount_point="secret"
        ),
        lambda: restricted.secrets.kv.v2.configure(max_versions=1, mount_point="secret"),
        lambda: restricted.secrets.kv.v2.destroy_secret_versions(
            f"{other}/x", [1], mount_point="secret"
        ),
        lambda: restricted.sys.read_acl_policy("default"),
        lambda: restricted.sys.list_acl_policies(),
        lambda: restricted.auth.token.create(ttl="1m"),
        lambda: restricted.sys.list_mounted_secrets_engines(),
        lambda: restricted.sys.enable_secrets_engine("kv", path=f"m-{uuid.uuid4().hex[:6]}"),
    ]
    for call in forbidden:
        with pytest.raises(hvac.exceptions.Forbidden):
            call()


@pytest.fixture
def intake_token(vault_client: Any, vault_prefix: str) -> Iterator[str]:
    """A token holding only deploy/vault/key-intake-policy.hcl (not even ``default``): what
    an admin who hands over keys made in the Encord UI gets."""
    text = INTAKE_POLICY.read_text()
    assert re.findall(r'(?m)^path "([^"]+)"', text) == ["secret/data/encord/+/incoming"]
    name = f"intake-{uuid.uuid4().hex[:8]}"
    policy = text.replace('path "secret/data/encord/', f'path "secret/data/{vault_prefix}/')
    vault_client.sys.create_or_update_policy(name=name, policy=policy)
    answer = vault_client.auth.token.create(policies=[name], no_default_policy=True, ttl="10m")
    token = answer["auth"]["client_token"]
    assert isinstance(token, str) and answer["auth"]["policies"] == [name]
    yield token
    with contextlib.suppress(Exception):
        vault_client.auth.token.revoke(token)
    with contextlib.suppress(Exception):
        vault_client.sys.delete_policy(name=name)


def test_intake_policy_writes_incoming_paths_and_reads_nothing(
    openbao: OpenBaoDev, intake_token: str, vault_client: Any, vault_prefix: str, tmp_path: Path
) -> None:
    """With only the key-intake policy, a person writes any account's incoming path, with
    the `bao kv put` the README gives and with the API, again and again; and can read
    nothing (not even that path), write no other path, list, delete, destroy or touch
    metadata."""
    root = VaultStore(vault_client, mount="secret", prefix=vault_prefix)
    root.write("alpha/ssh-key", {"private_key": "k"}, cas=0)
    downloaded = tmp_path / "downloaded-key-file"
    downloaded.write_text("the file's text\n")
    home = tmp_path / "home"
    home.mkdir()
    for account in ("alpha", "beta"):
        done = subprocess.run(
            [find_bao(), "kv", "put", "-mount=secret", f"{vault_prefix}/{account}/incoming",
             f"private_key=@{downloaded}"],
            env={"PATH": "/usr/bin:/bin", "HOME": str(home), "BAO_ADDR": openbao.addr,
                 "BAO_TOKEN": intake_token},
            capture_output=True, text=True, timeout=30, check=False,
        )
        assert done.returncode == 0, done.stderr[-1000:]
    person = connect(openbao.addr, intake_token)
    try:
        kv = person.secrets.kv.v2
        kv.create_or_update_secret(
            path=f"{vault_prefix}/alpha/incoming", secret={"private_key": "again"},
            mount_point="secret",
        )
        incoming = root.read("alpha/incoming")
        assert incoming is not None and incoming.version == 2
        assert incoming.data == {"private_key": "again"}
        assert root.read_version("alpha/incoming", 1) is not None
        denied: list[Callable[[], object]] = [
            partial(kv.read_secret_version, path=f"{vault_prefix}/alpha/incoming",
                    mount_point="secret", raise_on_deleted_version=True),
            partial(kv.read_secret_version, path=f"{vault_prefix}/alpha/ssh-key",
                    mount_point="secret", raise_on_deleted_version=True),
            partial(kv.create_or_update_secret, path=f"{vault_prefix}/alpha/ssh-key",
                    secret={"private_key": "x"}, mount_point="secret"),
            partial(kv.create_or_update_secret, path=f"{vault_prefix}/alpha/state",
                    secret={"x": "y"}, mount_point="secret"),
            partial(kv.create_or_update_secret, path=f"{vault_prefix}/alpha/incoming/deeper",
                    secret={"x": "y"}, mount_point="secret"),
            partial(kv.create_or_update_secret, path=f"{vault_prefix}-evil/alpha/incoming",
                    secret={"x": "y"}, mount_point="secret"),
            partial(kv.list_secrets, path=f"{vault_prefix}/alpha", mount_point="secret"),
            partial(kv.read_secret_metadata, path=f"{vault_prefix}/alpha/incoming",
                    mount_point="secret"),
            partial(kv.delete_latest_version_of_secret, path=f"{vault_prefix}/alpha/incoming",
                    mount_point="secret"),
            partial(kv.destroy_secret_versions, path=f"{vault_prefix}/alpha/incoming",
                    versions=[1], mount_point="secret"),
            partial(kv.delete_metadata_and_all_versions, path=f"{vault_prefix}/alpha/incoming",
                    mount_point="secret"),
            lambda: person.sys.read_acl_policy("default"),
            lambda: person.auth.token.create(ttl="1m"),
        ]
        for call in denied:
            with pytest.raises(hvac.exceptions.Forbidden):
                call()
    finally:
        person.adapter.close()


def test_rotator_policy_alone_takes_an_incoming_key_and_destroys_its_versions(
    openbao: OpenBaoDev,
    restricted: Any,
    intake_token: str,
    vault_client: Any,
    vault_prefix: str,
    sandbox: SandboxHandle,
) -> None:
    """Under rotator's shipped policy alone (no new grant), the daemon's check reads what a
    person wrote to the incoming path, adopts it, and destroys every version of that path
    (``destroy/``, not a soft delete): none is readable afterwards."""
    from rotator.adapters.encord.registry import registry_factory
    from rotator.core.admin import bootstrap
    from rotator.core.engine import Engine
    from rotator.core.policy import Policy
    from rotator.core.vocab import Account

    store = VaultStore(restricted, mount="secret", prefix=vault_prefix)
    engine = Engine(
        account=Account("alpha", "sa-alpha"),
        store=store,
        registry_factory=registry_factory(sandbox.url, manual=True),
        policy=Policy(key_ttl=timedelta(days=90), rotate_before=timedelta(days=14),
                      grace=timedelta(hours=1), key_cap=5),
    )
    bootstrap(engine.context, sandbox.bootstrap_key_file.read_text())
    ui_file = sandbox.sandbox.create_key_in_ui("alpha", "made in the UI")
    person = connect(openbao.addr, intake_token)
    try:
        for data in ({"private_key": "a first paste, wrong"}, {"private_key": ui_file}):
            person.secrets.kv.v2.create_or_update_secret(
                path=f"{vault_prefix}/alpha/incoming", secret=data, mount_point="secret"
            )
    finally:
        person.adapter.close()
    result = engine.check()
    assert "adopted" in result.outcomes, result.outcomes
    consumer = store.read("alpha/ssh-key")
    assert consumer is not None and consumer.data is not None
    assert consumer.data["key_id"] == load_private(ui_file).key_id
    versions = vault_client.secrets.kv.v2.read_secret_metadata(
        path=f"{vault_prefix}/alpha/incoming", mount_point="secret"
    )["data"]["versions"]
    assert sorted(versions) == ["1", "2"]
    assert all(v["destroyed"] for v in versions.values()), versions
    assert engine.check().outcomes.count("adopted") == 0  # nothing left to take


class _Daemon:
    """The image's ENTRYPOINT + CMD as a child process; its output collected in a file."""

    def __init__(self, image: Image, env: Mapping[str, str], folder: Path) -> None:
        self.output = folder / "daemon.out"
        with self.output.open("wb") as out:
            self.popen = subprocess.Popen(
                image.argv,
                env={**image.env, **env},
                cwd=image.workdir,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def lines(self) -> list[str]:
        text = self.output.read_text()
        return text.splitlines()[: text.count("\n")]  # complete lines only

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines()]

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float
    ) -> dict[str, Any]:
        end = time.monotonic() + timeout
        while time.monotonic() < end and self.popen.poll() is None:
            found = [e for e in self.events() if predicate(e)]
            if found:
                return found[0]
            time.sleep(0.05)
        raise AssertionError(f"no such event; output ends:\n{self.output.read_text()[-2000:]}")

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=10)


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - loopback URL
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code


def test_image_under_the_policy_bootstraps_rotates_and_runs_healthy_until_sigterm(
    image: Image,
    openbao: OpenBaoDev,
    rotator_token: str,
    vault_store: VaultStore,
    vault_prefix: str,
    sandbox: SandboxHandle,
    tmp_path: Path,
) -> None:
    """With only the policy's token, the image's rotator bootstraps, rotates, reports status,
    and `run` rotates, passes its HEALTHCHECK and /readyz, and exits 0 on SIGTERM."""
    env = base_env(openbao, vault_prefix, sandbox.url, VAULT_TOKEN=rotator_token)
    rotator = image.argv[0]
    before = snapshot(image.fs.root, skip=image.fs.host("/tmp"))
    # As deploy/README.md does it in a pod: the key on standard input, never on disk.
    done = image.run(
        [rotator, "bootstrap", "alpha", "--private-key-file", "/dev/stdin"],
        env,
        stdin=sandbox.bootstrap_key_file.read_text(),
    )
    assert done.returncode == 0, done.stderr
    done = image.run([rotator, "rotate", "alpha", "--json"], env)
    assert done.returncode == 0, done.stderr
    assert "rotated" in json.loads(done.stdout)["outcomes"]
    done = image.run([rotator, "status", "--json"], env)
    assert done.returncode == 0, done.stderr
    key_id = json.loads(done.stdout)["accounts"][0]["ssh-key"]["key_id"]
    current = vault_store.read("alpha/ssh-key")
    assert current is not None and current.data is not None
    assert current.data["key_id"] == key_id
    assert_no_secrets(done.stdout + done.stderr, "CLI output")

    daemon = _Daemon(image, env, tmp_path)
    try:
        listening = daemon.wait_for(lambda e: e["event"] == "ops.listening", 15)
        port = int(listening["port"])
        daemon.wait_for(
            lambda e: e["event"] == "rotation.finished" and e.get("outcome") == "rotated", 20
        )
        daemon.wait_for(lambda e: e["event"] == "key.revoked", 20)
        health = image.run(
            image.health_argv,
            {"ROTATOR_HTTP_ADDR": f"127.0.0.1:{port}"},
            timeout=seconds(image.health_options["timeout"]),
        )
        assert health.returncode == 0, health.stderr[-500:]
        assert _http_status(f"http://127.0.0.1:{port}/readyz") == 200
        started = time.monotonic()
        daemon.popen.send_signal(signal.SIGTERM)  # exec form: the signal reaches rotator
        assert daemon.popen.wait(timeout=10) == 0
        assert time.monotonic() - started < 10
    finally:
        daemon.kill()
    events = daemon.events()  # every line of output is one JSON object
    assert all("event" in e for e in events) and len(events) == len(
        daemon.output.read_text().splitlines()
    )
    assert events[-1]["event"] == "daemon.stopped"
    denied = [e for e in events if "denied" in json.dumps(e).lower()]
    assert not denied, denied[:3]
    assert_no_secrets(daemon.output.read_text(), "daemon output")
    newest = vault_store.read("alpha/ssh-key")
    assert newest is not None and newest.data is not None
    assert sdk_authenticates(sandbox.url, str(newest.data["private_key"]))
    # Nothing was written outside /tmp, as a read-only root filesystem requires.
    assert snapshot(image.fs.root, skip=image.fs.host("/tmp")) == before


# --- the Vault Agent template, with the real `bao agent` ---------------------------------


def _set_hcl(text: str, key: str, value: str) -> str:
    """``key = "..."`` set to ``value``; the key must appear exactly once."""
    new, count = re.subn(
        rf'(?m)^(\s*{re.escape(key)}\s*=\s*)"[^"]*"', lambda m: f'{m[1]}"{value}"', text
    )
    assert count == 1, f"{key} appears {count} times in {AGENT_HCL.name}"
    return new


def _wait_for_file(path: Path, content: str, agent: subprocess.Popen[bytes]) -> bool:
    end = time.monotonic() + 15
    while time.monotonic() < end:
        with contextlib.suppress(FileNotFoundError):
            if path.read_text() == content:
                return True
        if agent.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def _vault_key(store: VaultStore) -> str:
    current = store.read("alpha/ssh-key")
    assert current is not None and current.data is not None
    return str(current.data["private_key"])


def test_vault_agent_keeps_the_file_encord_ssh_key_file_names_current(
    openbao: OpenBaoDev,
    vault_store: VaultStore,
    vault_prefix: str,
    sandbox: SandboxHandle,
    make_token: MakeToken,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """bao agent renders the newest key (0600) to the SDK's key file, and again after a rotation."""
    env = base_env(
        openbao, vault_prefix, sandbox.url,
        ROTATOR_KEY_TTL="90d", ROTATOR_ROTATE_BEFORE="14d", ROTATOR_GRACE="1h",
        ROTATOR_BEARER_TTL="1h",
    )
    rc, _, err = rotator_cli(
        ["bootstrap", "alpha", "--private-key-file", str(sandbox.bootstrap_key_file)], env
    )
    assert rc == 0, err

    # The consumer's token may read one path only.
    consumer_policy = CONSUMER_POLICY.read_text()
    assert consumer_policy.count('path "') == 1
    token_file = tmp_path / "token"
    token_file.write_text(
        make_token(consumer_policy.replace("secret/data/encord/", f"secret/data/{vault_prefix}/"))
    )
    token_file.chmod(0o600)
    template_text = AGENT_TEMPLATE.read_text()
    assert template_text.count("secret/data/encord/alpha/ssh-key") == 1
    template = tmp_path / "ssh-key.ctmpl"
    template.write_text(
        template_text.replace("secret/data/encord/", f"secret/data/{vault_prefix}/")
    )

    config = AGENT_HCL.read_text()
    documented = re.search(r"ENCORD_SSH_KEY_FILE=(\S+)", config)
    destination = re.search(r'(?m)^\s*destination\s*=\s*"([^"]+)"', config)
    assert documented and destination and documented[1] == destination[1]
    assert re.search(r'(?m)^\s*perms\s*=\s*"0600"', config)
    key_file = tmp_path / "secrets" / "encord-ssh-key"
    for key, value in {
        "address": openbao.addr,
        "token_file_path": str(token_file),
        "source": str(template),
        "destination": str(key_file),
        "static_secret_render_interval": "1s",  # 5m in the file; seconds here
    }.items():
        config = _set_hcl(config, key, value)
    (tmp_path / "agent.hcl").write_text(config)

    log = tmp_path / "agent.log"
    agent_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    with log.open("wb") as out:
        agent = subprocess.Popen(
            [find_bao(), "agent", f"-config={tmp_path / 'agent.hcl'}"],
            env=agent_env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        first = _vault_key(vault_store)
        assert _wait_for_file(key_file, first, agent), log.read_text()[-2000:]
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

        # The encord SDK finds the key through ENCORD_SSH_KEY_FILE alone.
        monkeypatch.delenv("ENCORD_SSH_KEY", raising=False)
        monkeypatch.setenv("ENCORD_SSH_KEY_FILE", str(key_file))
        EncordUserClient.create_with_ssh_private_key(
            domain=sandbox.url, requests_settings=FAST_SDK
        ).list_organisation_tags()

        rc, _, err = rotator_cli(["rotate", "alpha"], env)
        assert rc == 0, err
        second = _vault_key(vault_store)
        assert second != first
        assert _wait_for_file(key_file, second, agent), log.read_text()[-2000:]
        EncordUserClient.create_with_ssh_private_key(
            domain=sandbox.url, requests_settings=FAST_SDK
        ).list_organisation_tags()
    finally:
        agent.terminate()
        try:
            agent.wait(timeout=10)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait(timeout=5)
    assert_no_secrets(log.read_text(), "bao agent log")


def test_plan_and_two_replicas_work_under_the_policy_alone(
    openbao: OpenBaoDev, rotator_token: str, vault_prefix: str, sandbox: SandboxHandle
) -> None:
    """Least privilege, really: with only the shipped policy, `plan` reads, and two replicas
    share the account through their leases and rotate it (one works, one stands by)."""
    from tests.e2e import Proc

    env = base_env(openbao, vault_prefix, sandbox.url, VAULT_TOKEN=rotator_token)
    code, _, err = rotator_cli(
        ["bootstrap", "alpha", "--private-key-file", str(sandbox.bootstrap_key_file)], env
    )
    assert code == 0, err[-2000:]
    code, out, err = rotator_cli(["plan", "--json"], env)
    assert code == 0, err[-2000:]
    assert json.loads(out)["accounts"][0]["account"] == "alpha"
    replicas = [Proc(["run"], env), Proc(["run"], env)]
    try:
        for proc in replicas:
            assert proc.wait_for(lambda e: e.get("event") == "daemon.started", 15), proc.text()

        def rotated(e: dict[str, Any]) -> bool:
            return e.get("event") == "rotation.finished" and e.get("outcome") == "rotated"

        end = time.monotonic() + 25
        while time.monotonic() < end and not any(
            any(rotated(e) for e in p.events()) for p in replicas
        ):
            time.sleep(0.1)
        assert any(any(rotated(e) for e in p.events()) for p in replicas)
        for proc in replicas:
            proc.popen.send_signal(signal.SIGTERM)
            assert proc.finish(timeout=15) == 0
    finally:
        for proc in replicas:
            proc.kill()
    events = [e for p in replicas for e in p.events()]
    assert not [e for e in events if e.get("event") in ("check.failed", "check.crashed")]
    assert not [e for e in events if "denied" in str(e.get("event"))]


def _private_keys(data: Any) -> set[str]:
    """Every ``private_key`` text anywhere in a stored version."""
    if isinstance(data, dict):
        found = {data["private_key"]} if isinstance(data.get("private_key"), str) else set()
        return found.union(*(_private_keys(v) for v in data.values()))
    if isinstance(data, list):
        return set().union(*(_private_keys(v) for v in data))
    return set()


def test_no_readable_version_keeps_a_revoked_key_under_the_policy_alone(
    openbao: OpenBaoDev,
    rotator_token: str,
    vault_store: VaultStore,
    vault_prefix: str,
    sandbox: SandboxHandle,
) -> None:
    """With only the shipped policy, the daemon rotates and revokes several times, destroying
    as it goes the older versions that hold a revoked key; a restarted daemon's first check
    finishes what a stop left. Then no readable version of any of the account's paths holds
    the private key of a key the sandbox no longer has, and the newest versions are intact."""
    from tests.e2e import CALM_TIMINGS, Proc

    env = base_env(openbao, vault_prefix, sandbox.url, VAULT_TOKEN=rotator_token)
    code, _, err = rotator_cli(
        ["bootstrap", "alpha", "--private-key-file", str(sandbox.bootstrap_key_file)], env
    )
    assert code == 0, err[-2000:]
    fast = Proc(["run"], env)
    try:
        end = time.monotonic() + 40
        while time.monotonic() < end and (
            sum(e.get("event") == "key.revoked" for e in fast.events()) < 3
        ):
            time.sleep(0.1)
        fast.popen.send_signal(signal.SIGTERM)
        assert fast.finish(timeout=15) == 0
    finally:
        fast.kill()
    calm = Proc(["run"], {**env, **CALM_TIMINGS, "ROTATOR_LOG_LEVEL": "debug"})
    try:
        assert calm.wait_for(lambda e: e.get("event") == "check.finished", 20), calm.text()
        calm.popen.send_signal(signal.SIGTERM)
        assert calm.finish(timeout=15) == 0
    finally:
        calm.kill()
    events = fast.events() + calm.events()
    revoked = {e["key_id"] for e in events if e.get("event") == "key.revoked"}
    assert len(revoked) >= 3, fast.text()[-3000:]
    assert revoked <= {e["key_id"] for e in events if e.get("event") == "vault.purged"}
    bad = [
        e
        for e in events
        if e.get("event") in ("check.failed", "check.crashed", "vault.purge_failed")
        or "denied" in json.dumps(e).lower()
    ]
    assert not bad, bad[:3]
    fast.assert_all_json()
    calm.assert_all_json()

    at_sandbox = {k.key_id for k in sandbox.sandbox.keys("alpha")}
    destroyed: dict[str, int] = {}
    for name in ("ssh-key", "state", "bearer-token", "lease"):
        newest = vault_store.read(f"alpha/{name}")
        assert newest is not None and newest.data is not None, f"newest {name} unreadable"
        destroyed[name] = 0
        for version in range(1, newest.version + 1):
            got = vault_store.read_version(f"alpha/{name}", version)
            if got is None or got.data is None:
                destroyed[name] += got is not None
                continue
            held = {load_private(text).key_id for text in _private_keys(got.data)}
            assert held <= at_sandbox, f"alpha/{name} version {version} holds a revoked key"
    assert destroyed["ssh-key"] >= 2 and destroyed["state"] >= 2, destroyed
    assert destroyed["bearer-token"] == destroyed["lease"] == 0, destroyed

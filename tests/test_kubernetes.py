"""Kubernetes, done without a cluster: the rendered manifests, deploy/vault/setup.sh, and the
kubernetes auth login through OpenBao's real plugin.

- ``kubectl kustomize`` renders ``deploy/kubernetes`` (and an overlay adding the optional
  ServiceMonitor component, as a site would write it); ``kubernetes-validate`` checks every
  rendered object against Kubernetes' own OpenAPI schemas, strictly (unknown fields are
  errors), for :data:`K8S_VERSION`. No schema ships for the Prometheus Operator's
  ServiceMonitor (a CRD): it is checked field by field here instead.
- ``setup.sh`` runs twice against a fresh OpenBao dev server of this module (its ``secret/``
  mount removed first, as on a production Vault).
- OpenBao's kubernetes auth method, configured by ``setup.sh``, reviews service-account JWTs
  with :class:`TokenReviewAPI`: a stand-in for the Kubernetes API's TokenReview endpoint over
  HTTPS on loopback, its certificate signed by a CA made here. It vouches for the JWTs it was
  told about (the "cluster" signed them), as a real API server does. ``rotator`` then runs as
  a real process with ``ROTATOR_VAULT_AUTH=kubernetes`` and the values the manifests give.

What stays unproven: no real cluster (the kubelet's projected token, the NetworkPolicy's
effect, the probes) and no real image build.
"""

from __future__ import annotations

import base64
import copy
import datetime
import http.server
import ipaddress
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from rotator.adapters.vault import connect
from rotator.dev.openbao import OpenBaoDev, find_bao
from tests.e2e import Proc, base_env, rotator_cli
from tests.fixtures_sandbox import SandboxHandle
from tests.secret_scan import assert_no_secrets, remember, scan_later

REPO = Path(__file__).resolve().parent.parent
KUBERNETES = REPO / "deploy" / "kubernetes"
SERVICEMONITOR = KUBERNETES / "servicemonitor"
VAULT_DIR = REPO / "deploy" / "vault"
SETUP = VAULT_DIR / "setup.sh"

#: The Kubernetes version whose schemas the manifests must satisfy.
K8S_VERSION = "1.32"

#: The namespace the tests deploy "into" (setup.sh binds the role to it).
NAMESPACE = "rotator-ns"

#: Kinds the base renders; ServiceMonitor comes only with the component.
BASE_KINDS = {
    "ServiceAccount", "ConfigMap", "Deployment", "Service", "PodDisruptionBudget",
    "NetworkPolicy",
}


# --- tools: missing ones fail, never skip -------------------------------------------------


def tool(name: str) -> str:
    """The path of ``name``: beside this Python (the venv) or on PATH; the test fails without."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"`{name}` is needed and missing (make test-tools / make install)")
    return found


# --- rendering ----------------------------------------------------------------------------


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize directory``, parsed: one dict per rendered object."""
    done = subprocess.run(
        [tool("kubectl"), "kustomize", str(directory)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    docs = [d for d in yaml.safe_load_all(done.stdout) if d is not None]
    assert docs and all(isinstance(d, dict) for d in docs)
    return docs


def by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The objects by kind; each kind appears once."""
    kinds = [d["kind"] for d in docs]
    assert len(kinds) == len(set(kinds)), f"a kind appears twice: {sorted(kinds)}"
    return {d["kind"]: d for d in docs}


@pytest.fixture(scope="module")
def base() -> dict[str, dict[str, Any]]:
    """``deploy/kubernetes`` rendered, by kind."""
    return by_kind(kustomize(KUBERNETES))


@pytest.fixture(scope="module")
def with_monitor(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """A site's overlay: the base plus the servicemonitor component, rendered, by kind."""
    overlay = tmp_path_factory.mktemp("overlay")
    # kustomize takes relative paths only; the overlay lives outside the repository.
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(KUBERNETES, overlay)],
                "components": [os.path.relpath(SERVICEMONITOR, overlay)],
            }
        )
    )
    return by_kind(kustomize(overlay))


def pod_labels(rendered: Mapping[str, dict[str, Any]]) -> dict[str, str]:
    labels = rendered["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert isinstance(labels, dict)
    return labels


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """A matchLabels selector matches these labels (and is not empty)."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def container(rendered: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    (only,) = rendered["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert isinstance(only, dict)
    return only


def listen_port(rendered: Mapping[str, dict[str, Any]]) -> int:
    """The port rotator listens on (ROTATOR_HTTP_ADDR), which must be the container's `http`."""
    port = int(rendered["ConfigMap"]["data"]["ROTATOR_HTTP_ADDR"].rpartition(":")[2])
    ports = {p["name"]: p["containerPort"] for p in container(rendered)["ports"]}
    assert ports == {"http": port}
    return port


def validate_schema(obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_rendered_manifests_validate_against_the_kubernetes_schemas(
    base: dict[str, dict[str, Any]], with_monitor: dict[str, dict[str, Any]]
) -> None:
    """Every object both renderings make passes Kubernetes' strict schema, except the CRD."""
    assert set(base) == BASE_KINDS, "the base needs no CRD"
    assert set(with_monitor) == BASE_KINDS | {"ServiceMonitor"}
    for kind in BASE_KINDS:
        assert with_monitor[kind] == base[kind], f"the component changed the {kind}"
        validate_schema(base[kind])
    # The ServiceMonitor has no schema here: it is checked structurally (test below).
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        validate_schema(with_monitor["ServiceMonitor"])
    # The validator is not vacuous: a misspelt field or a wrong type is refused.
    typo = copy.deepcopy(base["Deployment"])
    typo["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFileSystem"] = True
    wrong_type = copy.deepcopy(base["PodDisruptionBudget"])
    wrong_type["spec"]["maxUnavailable"] = ["1"]
    for bad in (typo, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            validate_schema(bad)


def _duration(text: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m|h)", text)
    assert match, f"not a Prometheus duration: {text!r}"
    return int(match[1]) * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[match[2]]


def test_servicemonitor_scrapes_metrics_through_the_service(
    with_monitor: dict[str, dict[str, Any]],
) -> None:
    """The ServiceMonitor's known fields select the Service, whose port reaches /metrics."""
    monitor, service = with_monitor["ServiceMonitor"], with_monitor["Service"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
    assert monitor["metadata"]["name"] and "namespace" not in monitor["metadata"]
    spec = monitor["spec"]
    assert set(spec) <= {
        "selector", "endpoints", "namespaceSelector", "jobLabel", "podTargetLabels"
    }
    assert set(spec["selector"]) == {"matchLabels"}
    assert selects(spec["selector"]["matchLabels"], service["metadata"]["labels"])
    # RotatorReplicaDown's up{app_kubernetes_io_name="rotator"} needs the pod label on every
    # series, as podmonitor.yaml gives it (a target that never answered has no rotator_up).
    assert "app.kubernetes.io/name" in spec.get("podTargetLabels", [])
    assert "app.kubernetes.io/name" in pod_labels(with_monitor)
    (endpoint,) = spec["endpoints"]
    assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "scheme"}
    assert endpoint["path"] == "/metrics" and endpoint.get("scheme", "http") == "http"
    assert _duration(endpoint["scrapeTimeout"]) < _duration(endpoint["interval"])
    # The endpoint names a Service port that leads to the container port rotator listens on.
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    target = ports[endpoint["port"]]["targetPort"]
    named = {p["name"]: p["containerPort"] for p in container(with_monitor)["ports"]}
    assert named.get(target, target) == listen_port(with_monitor)


def test_service_and_budget_select_the_pods_and_let_one_of_two_go(
    base: dict[str, dict[str, Any]],
) -> None:
    """The Service reaches the metrics port; the budget allows one of the 2 replicas down."""
    labels = pod_labels(base)
    service = base["Service"]["spec"]
    assert service.get("type", "ClusterIP") == "ClusterIP"
    assert selects(service["selector"], labels)
    (port,) = service["ports"]
    named = {p["name"]: p["containerPort"] for p in container(base)["ports"]}
    assert named[port["targetPort"]] == listen_port(base) == port["port"]

    budget = base["PodDisruptionBudget"]["spec"]
    assert selects(budget["selector"]["matchLabels"], labels)
    replicas = base["Deployment"]["spec"]["replicas"]
    allowed = (
        budget["maxUnavailable"] if "maxUnavailable" in budget
        else replicas - budget["minAvailable"]
    )
    assert (replicas, allowed) == (2, 1)


def test_network_policy_admits_the_metrics_port_and_reaches_dns_vault_and_encord_only(
    base: dict[str, dict[str, Any]],
) -> None:
    """Ingress: port 8080 only. Egress: DNS to kube-dns, VAULT_ADDR's port, public 443 only."""
    policy = base["NetworkPolicy"]["spec"]
    assert selects(policy["podSelector"]["matchLabels"], pod_labels(base))
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]

    (ingress,) = policy["ingress"]
    assert ingress["ports"] == [{"port": listen_port(base), "protocol": "TCP"}]

    egress = policy["egress"]
    assert len(egress) == 3 and all(rule.get("to") and rule.get("ports") for rule in egress)
    dns, vault, encord = egress
    assert sorted((p["port"], p["protocol"]) for p in dns["ports"]) == [(53, "TCP"), (53, "UDP")]
    (resolver,) = dns["to"]
    assert resolver["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "kube-system"
    }
    assert resolver["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}

    vault_addr = urlsplit(base["ConfigMap"]["data"]["VAULT_ADDR"])
    vault_port = vault_addr.port or (443 if vault_addr.scheme == "https" else 80)
    assert vault["ports"] == [{"port": vault_port, "protocol": "TCP"}]
    (vault_peer,) = vault["to"]
    assert "ipBlock" not in vault_peer, "Vault is named by selector or a /32, never a range"

    assert encord["ports"] == [{"port": 443, "protocol": "TCP"}]
    (public,) = encord["to"]
    block = public["ipBlock"]
    assert block["cidr"] == "0.0.0.0/0"
    excluded = [ipaddress.IPv4Network(c) for c in block["except"]]
    for private in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"):
        assert any(ipaddress.IPv4Network(private).subnet_of(e) for e in excluded), private


def test_deployment_logs_in_with_a_projected_token_for_vault_only(
    base: dict[str, dict[str, Any]],
) -> None:
    """kubernetes auth with a read-only projected token (audience vault, 1 h), and no Secret."""
    pod = base["Deployment"]["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in container(base).get("env", [])}
    settings = {**base["ConfigMap"]["data"], **env}
    assert settings["ROTATOR_VAULT_AUTH"] == "kubernetes"
    assert settings["VAULT_K8S_ROLE"] == _setup_default("VAULT_K8S_ROLE", "role")
    assert not {"VAULT_TOKEN", "VAULT_TOKEN_FILE", "VAULT_SECRET_ID"} & set(settings)
    assert base["ServiceAccount"]["metadata"]["name"] == _setup_default(
        "K8S_SERVICE_ACCOUNT", "sa"
    )
    token = projected_token(base)
    assert token["audience"] == _setup_default("K8S_AUDIENCE", "audience")
    assert 600 <= token["expirationSeconds"] <= 3600
    assert not any("secret" in v for v in pod["volumes"]), "no Secret volume"
    assert all("secretRef" not in e for e in container(base)["envFrom"])


def projected_token(rendered: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """The serviceAccountToken source whose file is VAULT_K8S_JWT_FILE, mounted read-only."""
    pod = rendered["Deployment"]["spec"]["template"]["spec"]
    jwt_file = {e["name"]: e["value"] for e in container(rendered)["env"]}["VAULT_K8S_JWT_FILE"]
    (mount,) = [
        m for m in container(rendered)["volumeMounts"]
        if jwt_file.startswith(m["mountPath"].rstrip("/") + "/")
    ]
    assert mount["readOnly"] is True
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    (source,) = volume["projected"]["sources"]
    token = source["serviceAccountToken"]
    assert isinstance(token, dict)
    assert mount["mountPath"].rstrip("/") + "/" + token["path"] == jwt_file
    return token


def _setup_default(variable: str, local: str) -> str:
    """The default setup.sh gives ``local`` when ``variable`` is unset."""
    match = re.search(
        rf'(?m)^{re.escape(local)}="\$\{{{re.escape(variable)}:-([^}}]+)\}}"$', SETUP.read_text()
    )
    assert match, f"setup.sh sets no default {local} from {variable}"
    return match[1]


# --- the stand-in TokenReview API ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServiceAccountToken:
    """A JWT shaped like a projected service-account token, and who it names."""

    jwt: str
    namespace: str
    name: str
    uid: str
    audiences: tuple[str, ...]


class Cluster:
    """The JWT signer of a pretend cluster: RS256 tokens with Kubernetes' projected claims."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def token(
        self, namespace: str, name: str, audiences: tuple[str, ...],
        key: rsa.RSAPrivateKey | None = None,
    ) -> ServiceAccountToken:
        now = int(time.time())
        uid = str(uuid.uuid4())
        claims = {
            "aud": list(audiences),
            "exp": now + 3600,
            "iat": now,
            "nbf": now,
            "iss": "https://kubernetes.default.svc.cluster.local",
            "sub": f"system:serviceaccount:{namespace}:{name}",
            "kubernetes.io": {
                "namespace": namespace,
                "pod": {"name": f"{name}-0", "uid": str(uuid.uuid4())},
                "serviceaccount": {"name": name, "uid": uid},
            },
        }
        header = {"alg": "RS256", "kid": "test-cluster"}
        signing_input = f"{_b64(json.dumps(header))}.{_b64(json.dumps(claims))}"
        signature = (key or self.key).sign(
            signing_input.encode(), padding.PKCS1v15(), hashes.SHA256()
        )
        jwt = f"{signing_input}.{_b64(signature)}"
        remember(jwt)
        return ServiceAccountToken(jwt, namespace, name, uid, audiences)


def _b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class Review:
    """One TokenReview the stand-in answered (who the token was, never the token)."""

    reviewer_ok: bool
    subject: str | None  # system:serviceaccount:ns:name of a known token, else None
    audiences: tuple[str, ...]
    authenticated: bool


@dataclass
class TokenReviewAPI:
    """``POST /apis/authentication.k8s.io/v1/tokenreviews`` over HTTPS on 127.0.0.1.

    Only a caller bearing ``reviewer_jwt`` may ask (else 401, as the API server answers).
    A token is authenticated when it is known (:meth:`vouch`) and, if audiences are asked,
    one of them is the token's, as the API server decides.
    """

    folder: Path
    reviewer_jwt: str = field(default_factory=lambda: "reviewer-" + uuid.uuid4().hex * 2)
    reviews: list[Review] = field(default_factory=list)
    _known: dict[str, ServiceAccountToken] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        remember(self.reviewer_jwt)
        self.ca_file = self.folder / "ca.crt"
        self.reviewer_file = self.folder / "reviewer.jwt"
        self.reviewer_file.write_text(self.reviewer_jwt)
        context = self._tls()
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if self.path != "/apis/authentication.k8s.io/v1/tokenreviews":
                    self._send(404, {"kind": "Status", "status": "Failure", "code": 404})
                    return
                status, answer = api._review(self.headers.get("Authorization", ""), body)
                self._send(status, answer)

            def _send(self, status: int, answer: dict[str, Any]) -> None:
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.host = f"https://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def _tls(self) -> ssl.SSLContext:
        """A CA (its certificate in ``ca.crt``) and a server certificate for 127.0.0.1."""
        now = datetime.datetime.now(datetime.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test kubernetes CA")])
        ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name).issuer_name(ca_name)
            .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
            .issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        self.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        chain = self.folder / "server.pem"
        chain.touch(mode=0o600)
        chain.write_bytes(
            cert.public_bytes(serialization.Encoding.PEM)
            + key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(chain)
        chain.unlink()
        return context

    def vouch(self, token: ServiceAccountToken) -> ServiceAccountToken:
        """From now on this token is one the cluster issued."""
        with self._lock:
            self._known[token.jwt] = token
        return token

    def seen(self) -> list[Review]:
        with self._lock:
            return list(self.reviews)

    def _review(self, authorization: str, body: bytes) -> tuple[int, dict[str, Any]]:
        reviewer_ok = authorization == f"Bearer {self.reviewer_jwt}"
        request = json.loads(body)
        spec = request.get("spec") or {}
        asked = tuple(spec.get("audiences") or ())
        with self._lock:
            token = self._known.get(str(spec.get("token")))
        if not reviewer_ok:
            with self._lock:
                self.reviews.append(Review(False, None, asked, False))
            return 401, {
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "Unauthorized", "reason": "Unauthorized", "code": 401,
            }
        granted = (
            tuple(a for a in asked if a in token.audiences) if asked and token
            else token.audiences if token else ()
        )
        authenticated = token is not None and bool(granted)
        subject = f"system:serviceaccount:{token.namespace}:{token.name}" if token else None
        with self._lock:
            self.reviews.append(Review(True, subject, asked, authenticated))
        status: dict[str, Any] = {"authenticated": authenticated}
        if authenticated and token is not None:
            status["user"] = {
                "username": subject,
                "uid": token.uid,
                "groups": [
                    "system:serviceaccounts",
                    f"system:serviceaccounts:{token.namespace}",
                    "system:authenticated",
                ],
            }
            status["audiences"] = list(granted)
        else:
            status["error"] = "[invalid bearer token, token lookup failed]"
        answer = {
            "kind": "TokenReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": None},
            "spec": {"token": "", "audiences": list(asked)},
            "status": status,
        }
        return 201, answer

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


def test_the_stand_in_answers_only_over_tls_from_its_ca_and_only_the_reviewer(
    tmp_path: Path,
) -> None:
    """The stand-in speaks TLS under its CA, refuses a caller without the reviewer JWT, and
    authenticates a known token for its audience only."""
    api = TokenReviewAPI(tmp_path)
    cluster = Cluster()
    token = api.vouch(cluster.token(NAMESPACE, "rotator", ("vault",)))
    trusted = ssl.create_default_context(cafile=str(api.ca_file))
    url = f"{api.host}/apis/authentication.k8s.io/v1/tokenreviews"

    def review(bearer: str, audiences: list[str]) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(  # noqa: S310 - loopback https URL
            url,
            data=json.dumps({"spec": {"token": token.jwt, "audiences": audiences}}).encode(),
            headers={"Authorization": f"Bearer {bearer}", "Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, context=trusted, timeout=5) as answer:  # noqa: S310
                return int(answer.status), json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, json.loads(exc.read())

    try:
        status, answer = review(api.reviewer_jwt, ["vault"])
        assert status == 201 and answer["status"]["authenticated"] is True
        assert answer["status"]["user"]["username"] == f"system:serviceaccount:{NAMESPACE}:rotator"
        assert answer["status"]["user"]["uid"] == token.uid
        status, answer = review(api.reviewer_jwt, ["https://kubernetes.default.svc"])
        assert status == 201 and answer["status"]["authenticated"] is False
        status, answer = review("not-the-reviewer", ["vault"])
        assert status == 401 and answer["reason"] == "Unauthorized"
        untrusted = ssl.create_default_context()  # the system CAs do not know this CA
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            urllib.request.urlopen(url, data=b"{}", context=untrusted, timeout=5)  # noqa: S310
        assert [(r.reviewer_ok, r.authenticated) for r in api.seen()] == [
            (True, True), (True, False), (False, False),
        ]
    finally:
        api.stop()


# --- setup.sh against a real OpenBao ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Setup:
    """The module's OpenBao, configured by setup.sh against the stand-in."""

    bao: OpenBaoDev
    api: TokenReviewAPI
    cluster: Cluster
    env: dict[str, str]
    first_output: str


def run_setup(env: Mapping[str, str], home: Path) -> subprocess.CompletedProcess[str]:
    """``bash setup.sh`` with only ``env``, the bao CLI on PATH and a private HOME."""
    bao_dir = str(Path(find_bao()).parent)
    done = subprocess.run(
        ["bash", str(SETUP)],
        env={"PATH": f"{bao_dir}:/usr/bin:/bin", "HOME": str(home), **env},
        capture_output=True, text=True, timeout=60, check=False,
    )
    scan_later(done.stdout + done.stderr, "output of setup.sh")
    return done


@pytest.fixture(scope="module")
def k8s_vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """A fresh OpenBao without ``secret/``, the stand-in, and setup.sh run once (defaults)."""
    folder = tmp_path_factory.mktemp("k8s")
    api = TokenReviewAPI(folder)
    bao = OpenBaoDev().start()
    try:
        root = connect(bao.addr, bao.root_token)
        root.sys.disable_secrets_engine("secret")  # a production Vault starts without it
        root.adapter.close()
        env = {
            "VAULT_ADDR": bao.addr,
            "VAULT_TOKEN": bao.root_token,
            "K8S_HOST": api.host,
            "K8S_CA_CERT_FILE": str(api.ca_file),
            "K8S_TOKEN_REVIEWER_JWT_FILE": str(api.reviewer_file),
            "K8S_NAMESPACE": NAMESPACE,
        }
        done = run_setup(env, folder)
        assert done.returncode == 0, done.stderr[-2000:]
        yield Setup(bao, api, Cluster(), env, done.stdout)
    finally:
        bao.stop()
        api.stop()


@pytest.fixture
def root_client(k8s_vault: Setup) -> Iterator[Any]:
    client = connect(k8s_vault.bao.addr, k8s_vault.bao.root_token)
    try:
        yield client
    finally:
        client.adapter.close()


def vault_state(client: Any) -> dict[str, Any]:
    """What setup.sh manages, as Vault reports it (the mounts' ids included)."""
    mount = client.read("sys/mounts/secret")["data"]
    auth = client.read("sys/auth/kubernetes")["data"]
    return {
        "kv": (mount["type"], mount["options"], mount["uuid"], mount["accessor"]),
        "auth": (auth["type"], auth["uuid"], auth["accessor"]),
        "policies": {
            name: client.read(f"sys/policy/{name}")["data"]["rules"]
            for name in ("rotator", "encord-consumer-alpha", "encord-key-intake")
        },
        "config": client.read("auth/kubernetes/config")["data"],
        "role": client.read("auth/kubernetes/role/rotator")["data"],
    }


def test_setup_sh_makes_kv_v2_policies_and_the_bound_role_and_is_idempotent(
    k8s_vault: Setup, root_client: Any, tmp_path: Path
) -> None:
    """setup.sh enables KV v2, loads the three policy files unchanged, configures the kubernetes
    method and binds the role to rotator's account; a second run changes nothing."""
    assert "enabled KV v2 at secret/" in k8s_vault.first_output
    assert "enabled kubernetes at kubernetes/" in k8s_vault.first_output
    state = vault_state(root_client)
    kv_type, kv_options, _, _ = state["kv"]
    assert (kv_type, kv_options) == ("kv", {"version": "2"})
    assert state["auth"][0] == "kubernetes"
    # The default layout (secret/, encord/) is the files' own: loaded as written.
    assert state["policies"] == {
        "rotator": (VAULT_DIR / "rotator-policy.hcl").read_text(),
        "encord-consumer-alpha": (VAULT_DIR / "consumer-policy.hcl").read_text(),
        "encord-key-intake": (VAULT_DIR / "key-intake-policy.hcl").read_text(),
    }
    config = state["config"]
    assert config["kubernetes_host"] == k8s_vault.api.host
    assert config["kubernetes_ca_cert"].strip() == k8s_vault.api.ca_file.read_text().strip()
    assert config["disable_local_ca_jwt"] is True
    assert config["token_reviewer_jwt_set"] is True
    assert "token_reviewer_jwt" not in config  # Vault never reads it back
    role = state["role"]
    assert role["bound_service_account_names"] == ["rotator"]
    assert role["bound_service_account_namespaces"] == [NAMESPACE]
    assert role["audience"] == "vault"
    assert role["token_policies"] == ["rotator"]
    assert role["token_no_default_policy"] is True
    assert 0 < role["token_ttl"] <= role["token_max_ttl"]

    again = run_setup(k8s_vault.env, tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "secret/ is already KV v2" in again.stdout
    assert "kubernetes/ is already the kubernetes method" in again.stdout
    assert vault_state(root_client) == state
    for text in (k8s_vault.first_output, again.stdout, again.stderr):
        assert k8s_vault.api.reviewer_jwt not in text and k8s_vault.bao.root_token not in text


def test_setup_sh_moves_the_policy_paths_to_another_mount_and_prefix(
    k8s_vault: Setup, root_client: Any, tmp_path: Path
) -> None:
    """With ROTATOR_VAULT_MOUNT/PREFIX set, the new mount is KV v2 and the policy grants
    exactly the file's capabilities on that mount and prefix."""
    mount, prefix = f"kv-{uuid.uuid4().hex[:6]}", "team/encord"
    policy, role = f"rotator-{mount}", f"rotator-{mount}"
    done = run_setup(
        {**k8s_vault.env, "ROTATOR_VAULT_MOUNT": mount, "ROTATOR_VAULT_PREFIX": prefix,
         "VAULT_POLICY": policy, "VAULT_K8S_ROLE": role},
        tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    try:
        assert root_client.read(f"sys/mounts/{mount}")["data"]["options"] == {"version": "2"}
        rules = root_client.read(f"sys/policy/{policy}")["data"]["rules"]
        original = (VAULT_DIR / "rotator-policy.hcl").read_text()
        assert rules == original.replace('"secret/data/encord/', f'"{mount}/data/{prefix}/') \
            .replace('"secret/destroy/encord/', f'"{mount}/destroy/{prefix}/') \
            .replace('"secret/config"', f'"{mount}/config"')
        assert rules != original
        consumer = root_client.read("sys/policy/encord-consumer-alpha")["data"]["rules"]
        assert f'path "{mount}/data/{prefix}/alpha/ssh-key"' in consumer
        intake = root_client.read("sys/policy/encord-key-intake")["data"]["rules"]
        assert intake == (VAULT_DIR / "key-intake-policy.hcl").read_text().replace(
            '"secret/data/encord/+/incoming"', f'"{mount}/data/{prefix}/+/incoming"'
        )
        assert root_client.read(f"auth/kubernetes/role/{role}")["data"]["token_policies"] == [
            policy
        ]
    finally:
        root_client.delete(f"auth/kubernetes/role/{role}")
        root_client.sys.delete_policy(name=policy)
        root_client.sys.disable_secrets_engine(mount)
        # The consumer policy (one name) was rewritten for this mount: put the file back.
        root_client.sys.create_or_update_policy(
            name="encord-consumer-alpha", policy=(VAULT_DIR / "consumer-policy.hcl").read_text()
        )
        root_client.sys.create_or_update_policy(
            name="encord-key-intake", policy=(VAULT_DIR / "key-intake-policy.hcl").read_text()
        )


def test_setup_sh_refuses_missing_inputs_and_a_mount_that_is_not_kv_v2(
    k8s_vault: Setup, root_client: Any, tmp_path: Path
) -> None:
    """Missing inputs are named and nothing is written; a KV v1 mount stops it before any
    policy is written."""
    before = vault_state(root_client)
    bare = {"VAULT_ADDR": k8s_vault.env["VAULT_ADDR"], "VAULT_TOKEN": k8s_vault.env["VAULT_TOKEN"]}
    done = run_setup(bare, tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "setup.sh: required variables not set: K8S_HOST K8S_CA_CERT_FILE "
        "K8S_TOKEN_REVIEWER_JWT_FILE K8S_NAMESPACE"
    )
    not_pem = tmp_path / "ca.txt"
    not_pem.write_text("no certificate here\n")
    done = run_setup({**k8s_vault.env, "K8S_CA_CERT_FILE": str(not_pem)}, tmp_path)
    assert done.returncode == 1 and "K8S_CA_CERT_FILE" in done.stderr

    mount = f"kv1-{uuid.uuid4().hex[:6]}"
    root_client.sys.enable_secrets_engine("kv", path=mount, options={"version": "1"})
    try:
        done = run_setup(
            {**k8s_vault.env, "ROTATOR_VAULT_MOUNT": mount, "VAULT_POLICY": "never-written"},
            tmp_path,
        )
        assert done.returncode == 1
        assert f"{mount}/ is mounted but is not KV version 2" in done.stderr
        assert "policy:" not in done.stdout
        assert "never-written" not in root_client.sys.list_policies()["data"]["policies"]
        assert root_client.read(f"sys/mounts/{mount}")["data"]["options"] == {"version": "1"}
    finally:
        root_client.sys.disable_secrets_engine(mount)
    assert vault_state(root_client) == before


def test_setup_sh_passes_shellcheck() -> None:
    """shellcheck finds nothing in setup.sh."""
    done = subprocess.run(
        [tool("shellcheck"), "--severity=style", str(SETUP)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:]


# --- rotator logs in through the real kubernetes auth method ------------------------------


def k8s_env(
    k8s_vault: Setup, sandbox_url: str, rendered: Mapping[str, dict[str, Any]], jwt_file: Path
) -> dict[str, str]:
    """rotator's environment as the manifests set it, pointed at the module's OpenBao."""
    config = rendered["ConfigMap"]["data"]
    env = base_env(
        k8s_vault.bao, config["ROTATOR_VAULT_PREFIX"], sandbox_url,
        ROTATOR_VAULT_MOUNT=config["ROTATOR_VAULT_MOUNT"],
        ROTATOR_VAULT_AUTH=config["ROTATOR_VAULT_AUTH"],
        VAULT_K8S_ROLE=config["VAULT_K8S_ROLE"],
        VAULT_K8S_JWT_FILE=str(jwt_file),
        ROTATOR_LOG_FORMAT="json",
    )
    del env["VAULT_TOKEN"]
    return env


def pod_token(k8s_vault: Setup, rendered: Mapping[str, dict[str, Any]]) -> ServiceAccountToken:
    """The token the kubelet would project into a rotator pod in NAMESPACE."""
    return k8s_vault.cluster.token(
        NAMESPACE,
        rendered["ServiceAccount"]["metadata"]["name"],
        (projected_token(rendered)["audience"],),
    )


def readyz(port: int) -> int:
    try:
        url = f"http://127.0.0.1:{port}/readyz"
        with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - loopback
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code


def test_rotator_logs_in_with_the_pod_token_through_the_kubernetes_method_and_works(
    k8s_vault: Setup, base: dict[str, dict[str, Any]], sandbox: SandboxHandle, tmp_path: Path
) -> None:
    """With the manifests' settings and a projected-style JWT, bootstrap, status and `run`
    log in through OpenBao's kubernetes method (reviewed by the stand-in) and work."""
    token = k8s_vault.api.vouch(pod_token(k8s_vault, base))
    jwt_file = tmp_path / "token"
    jwt_file.write_text(token.jwt)
    env = k8s_env(k8s_vault, sandbox.url, base, jwt_file)
    reviews_before = len(k8s_vault.api.seen())

    rc, _, err = rotator_cli(
        ["bootstrap", "alpha", "--private-key-file", str(sandbox.bootstrap_key_file)], env
    )
    assert rc == 0, err[-2000:]
    rc, out, err = rotator_cli(["status", "--json"], env)
    assert rc == 0, err[-2000:]
    (account,) = json.loads(out)["accounts"]
    assert account["account"] == "alpha" and account["ssh-key"]["key_id"]

    proc = Proc(["run"], env)
    try:
        assert proc.wait_for(lambda e: e["event"] == "ops.listening", timeout=15), proc.text()
        port = next(int(e["port"]) for e in proc.events() if e["event"] == "ops.listening")
        end = time.monotonic() + 20
        while readyz(port) != 200:
            assert time.monotonic() < end, f"never ready:\n{proc.text()[-2000:]}"
            assert proc.popen.poll() is None, proc.text()[-2000:]
            time.sleep(0.1)
        proc.popen.send_signal(signal.SIGTERM)
        assert proc.finish(timeout=15) == 0
    finally:
        proc.kill()
    proc.assert_all_json()
    (logged_in,) = [e for e in proc.events() if e["event"] == "vault.logged_in"]
    assert logged_in["method"] == "kubernetes"
    assert logged_in["policies"] == ["rotator"]  # the role's policy only, not `default`
    assert logged_in["renewable"] is True and logged_in["ttl"] > 0
    assert token.jwt not in proc.text() and token.jwt not in out + err

    # Three logins (bootstrap, status, run), each reviewed by the "cluster" for audience vault.
    reviews = k8s_vault.api.seen()[reviews_before:]
    assert reviews == [
        Review(True, f"system:serviceaccount:{NAMESPACE}:rotator", ("vault",), True)
    ] * 3


@pytest.mark.parametrize(
    ("case", "reviewed"),
    [
        ("forged", True),  # right claims, wrong signer: only the cluster can tell
        ("other-account", False),  # the cluster would vouch for it, the role is not bound to it
        ("other-namespace", False),
        ("api-audience", False),  # a token for the Kubernetes API, not for Vault
    ],
)
def test_rotator_run_is_refused_a_token_that_is_not_rotators_own(
    k8s_vault: Setup,
    base: dict[str, dict[str, Any]],
    sandbox: SandboxHandle,
    tmp_path: Path,
    case: str,
    reviewed: bool,
) -> None:
    """`rotator run` with a JWT the cluster does not vouch for, or one for another account,
    namespace or audience, exits 1 naming VAULT_K8S_ROLE and VAULT_K8S_JWT_FILE."""
    sa = base["ServiceAccount"]["metadata"]["name"]
    audience = projected_token(base)["audience"]
    cluster = k8s_vault.cluster
    if case == "forged":
        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        token = cluster.token(NAMESPACE, sa, (audience,), key=stranger)  # not vouched for
    elif case == "other-account":
        token = k8s_vault.api.vouch(cluster.token(NAMESPACE, "default", (audience,)))
    elif case == "other-namespace":
        token = k8s_vault.api.vouch(cluster.token("default", sa, (audience,)))
    else:
        token = k8s_vault.api.vouch(cluster.token(NAMESPACE, sa, ("https://kubernetes.default.svc",)))
    jwt_file = tmp_path / "token"
    jwt_file.write_text(token.jwt)
    before = len(k8s_vault.api.seen())

    proc = Proc(["run"], k8s_env(k8s_vault, sandbox.url, base, jwt_file))
    try:
        rc = proc.finish(timeout=20)
    finally:
        proc.kill()
    assert rc == 1
    proc.assert_all_json()
    errors = [e for e in proc.events() if e.get("level") == "error"]
    assert len(errors) == 1 and errors[0]["event"] == "daemon.vault_denied", errors
    assert "VAULT_K8S_ROLE and VAULT_K8S_JWT_FILE" in errors[0]["error"]
    assert not [e for e in proc.events() if e["event"] == "vault.logged_in"]
    assert token.jwt not in proc.text()
    assert_no_secrets(proc.text(), "refused daemon output")

    seen = k8s_vault.api.seen()[before:]
    if reviewed:
        assert seen == [Review(True, None, (audience,), False)]
    else:
        assert seen == [], "refused by the role before any review"

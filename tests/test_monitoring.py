"""deploy/monitoring/: the alert rules, their PrometheusRule twin, runbooks and the dashboard.

The rules are checked and unit-tested with the real ``promtool`` (Debian's ``prometheus``
package, installed by ``make test-tools``): a test that needs it fails, never skips, when it
is missing. The unit tests in ``deploy/monitoring/tests/`` feed synthetic series to every
alert, with a case where it fires and one where it must not.

Names cannot drift: every metric the rules and the dashboard query must be in the README's
metric table, and that table must list exactly the metrics the code exports.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from rotator.core.errors import ERROR_KINDS
from rotator.core.vocab import ROTATION_RESULTS
from rotator.runtime.metrics import Metrics

REPO = Path(__file__).resolve().parent.parent
MONITORING = REPO / "deploy" / "monitoring"
RULES = MONITORING / "rotator-rules.yaml"
MANIFEST = MONITORING / "prometheusrule.yaml"
GENERATE = MONITORING / "generate.py"
PODMONITOR = MONITORING / "podmonitor.yaml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
UNIT_TESTS = sorted((MONITORING / "tests").glob("*.yaml"))
RUNBOOKS = REPO / "docs" / "runbooks.md"
README = REPO / "docs" / "operations.md"  # its "Metrics" table
DEPLOYMENT = REPO / "deploy" / "kubernetes" / "deployment.yaml"
MAKEFILE = REPO / "Makefile"

#: Series Prometheus itself makes for every target, which rules may use besides rotator's.
SCRAPE_METRICS = frozenset({"up"})

#: Grafana's own variables and the dashboard's, with a value that makes a valid query.
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
    "$account": ".*",
}

_METRIC = re.compile(r"\brotator_[a-z_]+\b|\bup\b")


def find_promtool(path: str | None = None) -> str:
    """The promtool executable on ``path`` (default: $PATH); fails the test when missing."""
    exe = shutil.which("promtool", path=path)
    if exe is None:
        pytest.fail(
            "promtool not found: run `make test-tools` (it installs Debian's prometheus "
            "package, which provides promtool)"
        )
    return exe


@pytest.fixture(scope="module")
def promtool() -> str:
    return find_promtool()


def run(*argv: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def alerts(rules: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for group in rules["groups"]:
        yield from (r for r in group["rules"] if "alert" in r)


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (``rotator_*`` and ``up``), label values excluded."""
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_labels = re.sub(r"\{[^}]*\}", "{}", without_strings)
    without_grouping = re.sub(r"\b(by|on|ignoring|without)\s*\([^)]*\)", "", without_labels)
    return set(_METRIC.findall(without_grouping))


def github_anchor(heading: str, seen: dict[str, int]) -> str:
    """The id GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to
    dashes, ``-1``, ``-2``... for repeats (``seen`` counts them)."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
    n = seen.get(slug, 0)
    seen[slug] = n + 1
    return slug if n == 0 else f"{slug}-{n}"


def runbook_anchors() -> dict[str, str]:
    """Anchor -> heading text of every heading in docs/runbooks.md (outside code blocks)."""
    anchors: dict[str, str] = {}
    seen: dict[str, int] = {}
    in_code = False
    for line in RUNBOOKS.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and (m := re.match(r"#{1,6} (.+)$", line)):
            anchors[github_anchor(m[1], seen)] = m[1].strip()
    return anchors


def readme_metric_table() -> set[str]:
    """The metric names in docs/operations.md's "Metrics" table."""
    text = README.read_text(encoding="utf-8")
    section = text.split("### Metrics", 1)[1].split("\n#", 1)[0]
    return set(re.findall(r"^\| `(rotator_[a-z_]+)` \|", section, flags=re.M))


def dashboard_targets() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(panel, target) for every query of the dashboard."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [(p, t) for p in dashboard["panels"] for t in p.get("targets", [])]


def grafana_to_promql(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
    return expr


# --- promtool -------------------------------------------------------------------------------


def test_promtool_missing_fails_and_names_make_test_tools(tmp_path: Path) -> None:
    """Without promtool on PATH the tests fail (not skip) with a message naming make test-tools,
    and the Makefile's test-tools target installs it from Debian's prometheus package."""
    with pytest.raises(pytest.fail.Exception, match=r"make test-tools"):
        find_promtool(path=str(tmp_path))
    tools = re.search(r"^SYSTEM_TOOLS :=(.*)$", MAKEFILE.read_text(), flags=re.M)
    assert tools is not None
    assert "promtool:prometheus" in tools[1].split()


def test_rules_file_passes_promtool_check(promtool: str) -> None:
    """`promtool check rules` accepts the rules file and finds every alert in it."""
    result = run(promtool, "check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    count = len(list(alerts(load_yaml(RULES))))
    assert count >= 9
    assert f"SUCCESS: {count} rules found" in result.stdout


def test_prometheusrule_manifest_passes_promtool_check(promtool: str, tmp_path: Path) -> None:
    """The PrometheusRule's spec, written out as a rules file, passes `promtool check rules`."""
    manifest = load_yaml(MANIFEST)
    assert manifest["apiVersion"] == "monitoring.coreos.com/v1"
    assert manifest["kind"] == "PrometheusRule"
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(manifest["spec"]), encoding="utf-8")
    result = run(promtool, "check", "rules", spec)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(list(alerts(manifest['spec'])))} rules found" in result.stdout


def test_prometheusrule_is_generated_from_the_rules_file(tmp_path: Path) -> None:
    """The committed PrometheusRule is exactly what `make monitoring` generates from the rules
    file, so both hold identical groups."""
    shutil.copy(RULES, tmp_path / RULES.name)
    result = run(sys.executable, GENERATE, "--dir", tmp_path)
    assert result.returncode == 0, result.stderr
    generated = (tmp_path / MANIFEST.name).read_text(encoding="utf-8")
    assert generated == MANIFEST.read_text(encoding="utf-8"), "run `make monitoring`"
    assert load_yaml(MANIFEST)["spec"] == load_yaml(RULES)


def test_runbook_base_url_can_be_overridden(promtool: str, tmp_path: Path) -> None:
    """`generate.py --runbook-base-url` repoints every runbook_url in both files, keeps each
    anchor, leaves valid rules, and refuses a base that is not an http(s) URL."""
    shutil.copy(RULES, tmp_path / RULES.name)
    base = "https://git.example.org/ops/rotator/blob/v1/docs/runbooks.md"
    result = run(sys.executable, GENERATE, "--dir", tmp_path, "--runbook-base-url", base)
    assert result.returncode == 0, result.stderr
    before = [a["annotations"]["runbook_url"] for a in alerts(load_yaml(RULES))]
    rules = load_yaml(tmp_path / RULES.name)
    after = [a["annotations"]["runbook_url"] for a in alerts(rules)]
    assert after == [base + "#" + url.split("#", 1)[1] for url in before]
    assert load_yaml(tmp_path / MANIFEST.name)["spec"] == rules
    checked = run(promtool, "check", "rules", tmp_path / RULES.name)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    refused = run(sys.executable, GENERATE, "--dir", tmp_path, "--runbook-base-url", "x#y")
    assert refused.returncode == 2
    assert "runbook base URL" in refused.stderr
    assert load_yaml(tmp_path / RULES.name) == rules


def test_alert_unit_tests_pass(promtool: str) -> None:
    """`promtool test rules` passes every unit test in deploy/monitoring/tests/."""
    assert UNIT_TESTS, "no promtool unit tests found"
    result = run(promtool, "test", "rules", *UNIT_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAILED" not in result.stdout


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    """Every alert is unit-tested both where it must fire and where it must stay quiet."""
    fires: set[str] = set()
    quiet: set[str] = set()
    for path in UNIT_TESTS:
        suite = load_yaml(path)
        for case in suite["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {a["alert"] for a in alerts(load_yaml(RULES))}
    assert names - fires == set(), "alerts never shown to fire"
    assert names - quiet == set(), "alerts never shown to stay quiet"


def test_unit_tests_catch_the_former_readme_rules(promtool: str, tmp_path: Path) -> None:
    """The unit tests fail for the rules the README used to give: a standby raising
    RotatorNotReady, a former lease holder's stale series raising the expiry, headroom and
    stalled alerts, and a down replica missed unless its job is named rotator."""
    former = {
        "RotatorNotReady": "max_over_time(rotator_ready[30m]) == 0",
        "RotatorKeyExpiringSoon": "rotator_key_expiry_seconds < 3 * 86400",
        "RotatorBearerTokenExpired": "rotator_bearer_token_expiry_seconds < 0",
        "RotatorNoCapHeadroom": "rotator_keys_at_encord >= rotator_key_cap - 1",
        "RotatorChecksStalled": "time() - rotator_check_last_timestamp_seconds > 3 * 300",
        "RotatorReplicaDown": 'up{job="rotator"} == 0',
    }
    rules = load_yaml(RULES)
    for alert in alerts(rules):
        if alert["alert"] in former:
            alert["expr"] = former[alert["alert"]]
    (tmp_path / RULES.name).write_text(yaml.safe_dump(rules), encoding="utf-8")
    (tmp_path / "tests").mkdir()
    for path in UNIT_TESTS:
        shutil.copy(path, tmp_path / "tests" / path.name)

    result = run(promtool, "test", "rules", *sorted((tmp_path / "tests").glob("*.yaml")))
    assert result.returncode != 0
    failed = set(re.findall(r"^\s+name: (.+),$", result.stdout + result.stderr, flags=re.M))
    # The former rules also keep instance and job on their alerts, which fails some firing
    # cases too; these cases, each expecting silence or an alert the old rule cannot raise,
    # fail only through the flaw they were written for.
    assert failed >= {
        "a healthy two-replica deployment does not fire, whatever the standby reports",
        "a former lease holder's stale key does not fire while the holder has a fresh key",
        "a former lease holder's expired token does not fire while the holder's is fresh",
        "a former lease holder's stale count does not fire while the holder has room",
        "a stale former holder does not fire while the holder checks",
        "a replica down fires whatever its job is called; other down targets do not",
    }


# --- annotations and runbooks ---------------------------------------------------------------


def test_github_anchor_follows_githubs_rules() -> None:
    """The anchor helper lowercases, drops punctuation, dashes spaces and numbers repeats."""
    seen: dict[str, int] = {}
    assert github_anchor("RotatorDown", seen) == "rotatordown"
    assert github_anchor("Before you start", seen) == "before-you-start"
    assert github_anchor("What's `up`?", seen) == "whats-up"
    assert github_anchor("RotatorDown", seen) == "rotatordown-1"


def test_every_alert_has_summary_description_and_a_runbook_section() -> None:
    """Each alert carries a summary, a description and a runbook_url whose anchor is the
    heading of that alert's own section in docs/runbooks.md."""
    anchors = runbook_anchors()
    for alert in alerts(load_yaml(RULES)):
        name, annotations = alert["alert"], alert["annotations"]
        assert annotations.get("summary", "").strip(), name
        assert annotations.get("description", "").strip(), name
        url = annotations["runbook_url"]
        assert re.fullmatch(r"https?://[^#\s]+/docs/runbooks\.md#[\w-]+", url), (name, url)
        anchor = url.split("#", 1)[1]
        assert anchors.get(anchor) == name, f"{name}: no section '## {name}' for #{anchor}"


def test_runbooks_have_no_orphan_sections_or_broken_links() -> None:
    """Every alert-like section of docs/runbooks.md belongs to a shipped alert, and every
    in-page link points at a heading that exists."""
    anchors = runbook_anchors()
    names = {a["alert"] for a in alerts(load_yaml(RULES))}
    sections = {h for h in anchors.values() if h.startswith("Rotator")}
    assert sections == names
    links = re.findall(r"\]\(#([^)]+)\)", RUNBOOKS.read_text(encoding="utf-8"))
    assert links
    assert set(links) <= set(anchors)


# --- names: rules, dashboard, README, code --------------------------------------------------


def test_readme_metric_table_lists_what_the_code_exports() -> None:
    """The README's metric table names exactly the rotator_* metrics rotator's registry
    exports, and the registry also carries the standard process and Python families the
    README's table mentions (a private registry has none unless they are added)."""
    metrics = Metrics(["alpha"], key_cap=5, kinds=("ssh-key", "api-key"))
    registry: CollectorRegistry = metrics.registry
    exported = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in registry.collect()
    }
    assert readme_metric_table() == {name for name in exported if name.startswith("rotator_")}
    standard = {"process_start_time_seconds", "process_resident_memory_bytes", "python_info"}
    assert standard <= exported
    section = README.read_text(encoding="utf-8").split("### Metrics", 1)[1].split("\n#", 1)[0]
    assert "`process_*`" in section and "`python_*`" in section


def test_rules_and_dashboard_query_only_documented_metrics() -> None:
    """Every metric an alert or a dashboard panel queries is in the README's metric table
    (or is Prometheus's own `up`)."""
    known = readme_metric_table() | SCRAPE_METRICS
    used: dict[str, set[str]] = {}
    for alert in alerts(load_yaml(RULES)):
        used[alert["alert"]] = metric_names(alert["expr"])
    for panel, target in dashboard_targets():
        used[f"panel {panel['title']!r} {target['refId']}"] = metric_names(target["expr"])
    for where, names in used.items():
        assert names, f"{where}: queries no metric"
        assert names <= known, f"{where}: unknown {sorted(names - known)}"


def test_rules_match_only_label_values_the_code_uses() -> None:
    """The outcome and kind values the alerts match on are ones the code counts under."""
    known = {"outcome": {str(o) for o in ROTATION_RESULTS}, "kind": {str(k) for k in ERROR_KINDS}}
    matched: dict[str, set[str]] = {"outcome": set(), "kind": set()}
    for alert in alerts(load_yaml(RULES)):
        for label, values in re.findall(r'\b(outcome|kind)=~?"([^"]*)"', alert["expr"]):
            matched[label] |= set(values.split("|"))
    assert matched["outcome"] == {"failed", "blocked_by_cap"}
    assert matched["kind"] == {"access_denied", "permanent", "internal"}
    for label, values in matched.items():
        assert values <= known[label], label


def test_metric_names_reads_selectors_not_labels() -> None:
    """The name extractor keeps metric names and ignores label names and values."""
    expr = 'max by (account, up) (rotator_ready{kind="rotator_x"}) or up == 0'
    assert metric_names(expr) == {"rotator_ready", "up"}


# --- the dashboard --------------------------------------------------------------------------


def test_every_dashboard_query_parses(promtool: str, tmp_path: Path) -> None:
    """Every panel query, with Grafana's variables filled in, is valid PromQL: all of them,
    as recording rules, pass `promtool check rules`."""
    targets = dashboard_targets()
    assert targets
    rules = [
        {
            "record": f"dashboard:panel_{panel['id']}_{target['refId']}",
            "expr": grafana_to_promql(target["expr"]),
        }
        for panel, target in targets
    ]
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run(promtool, "check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_a_broken_dashboard_query_would_be_caught(promtool: str, tmp_path: Path) -> None:
    """The parse check above rejects a malformed query, so its passing means something."""
    path = tmp_path / "bad.yaml"
    rule = {"record": "dashboard:bad", "expr": "sum by (account (rotator_ready)"}
    path.write_text(yaml.safe_dump({"groups": [{"name": "bad", "rules": [rule]}]}))
    assert run(promtool, "check", "rules", path).returncode != 0


def test_dashboard_shows_what_operators_need() -> None:
    """The dashboard has key age against expiry, rotations by outcome, errors by kind,
    readiness, bearer token expiry and leases held, each on a Prometheus data source."""
    exprs = [t["expr"] for _, t in dashboard_targets()]
    joined = "\n".join(exprs)
    for needed in (
        "rotator_key_age_seconds",
        "rotator_key_expiry_seconds",
        "rotator_ready",
        "rotator_bearer_token_expiry_seconds",
        "rotator_lease_held",
    ):
        assert needed in joined, needed
    assert any("rotator_rotations_total" in e and "outcome" in e for e in exprs)
    assert any("rotator_errors_total" in e and "kind" in e for e in exprs)
    panels = [p for p, _ in dashboard_targets()]
    assert any(
        "rotator_key_age_seconds" in " ".join(t["expr"] for t in p["targets"])
        and "rotator_key_expiry_seconds" in " ".join(t["expr"] for t in p["targets"])
        for p in panels
    ), "key age and expiry belong on one panel"
    assert all(p["datasource"]["uid"] == "${datasource}" for p in panels)
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


# --- scraping -------------------------------------------------------------------------------


def test_podmonitor_scrapes_the_deployment_and_labels_it_for_the_rules() -> None:
    """The PodMonitor selects the Deployment's pods on a port they expose, and copies the pod
    label that RotatorReplicaDown matches on."""
    monitor = load_yaml(PODMONITOR)
    deployment = load_yaml(DEPLOYMENT)
    assert monitor["kind"] == "PodMonitor"
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    ports = {
        p["name"] for c in deployment["spec"]["template"]["spec"]["containers"] for p in c["ports"]
    }
    endpoints = monitor["spec"]["podMetricsEndpoints"]
    assert {e["port"] for e in endpoints} <= ports
    assert {e["path"] for e in endpoints} == {"/metrics"}
    label = "app.kubernetes.io/name"
    assert label in monitor["spec"]["podTargetLabels"]
    sanitized = re.sub(r"[^a-zA-Z0-9_]", "_", label)
    down = next(a for a in alerts(load_yaml(RULES)) if a["alert"] == "RotatorReplicaDown")
    assert f'{sanitized}="{pod_labels[label]}"' in down["expr"]

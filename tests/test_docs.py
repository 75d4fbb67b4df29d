"""The documentation against the code and the repository.

- docs/events.md names every event rotator emits, and no event it no longer emits (found by
  the AST walk in tests/log_events.py); the development tools' events in their own section.
- Every relative link in README.md, docs/*.md and deploy/README.md leads to a file that
  exists, and every ``#anchor`` to a heading of its target (GitHub's slugs).
- docs/operations.md's walk-through names real things: ``deploy/`` paths, ``make`` targets,
  ``rotator`` subcommands, and the image version.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import rotator
from rotator.cli import COMMANDS
from tests.log_events import EVENT, STDOUT, collect, unexpanded

REPO = Path(__file__).resolve().parent.parent
EVENTS_MD = REPO / "docs" / "events.md"
OPERATIONS_MD = REPO / "docs" / "operations.md"
DEV_SECTION = "Development tools"


# --- events ---------------------------------------------------------------------------------


def catalogue() -> dict[str, str]:
    """Event -> the ``## `` section of docs/events.md whose table names it (first column)."""
    found: dict[str, str] = {}
    section = ""
    for line in EVENTS_MD.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
        match = re.match(r"\|\s*`([^`]+)`", line)
        if match and EVENT.fullmatch(match.group(1)):
            assert match.group(1) not in found, f"{match.group(1)} is listed twice"
            found[match.group(1)] = section
    return found


def emitted() -> dict[str, bool]:
    """Event -> whether it is emitted only by the development tools (rotator/dev/)."""
    events = collect(REPO / "rotator")
    return {
        name: all(site.path.startswith("rotator/dev/") for site in sites)
        for name, sites in events.items()
        if not name.startswith("f:")
    }


def test_the_walk_sees_every_form_of_log_call() -> None:
    """The walk finds an event whatever form its call takes, so the checks below can fail."""
    events = collect(REPO / "rotator")
    assert not unexpanded(events), (
        "f-string events tests/log_events.py cannot expand (add them to EXPANSIONS): "
        + ", ".join(unexpanded(events))
    )
    levels = {name: {site.level for site in sites} for name, sites in events.items()}
    assert levels["check.crashed"] == {"error"}  # log.error("...")
    assert levels["check.failed"] == {"debug/error"}  # emit = log.error ... emit = log.debug
    assert "info/warning" in levels["rotation.finished"]  # getattr(log, level)("...")
    assert levels["vault.logged_in"] == {"debug/info"}  # emit = log.debug if ... else log.info
    assert levels["daemon.signal"] == {"info"}  # stop_on_signals("daemon.signal")
    assert levels["rotation.not_bootstrapped"] == {"warning"}  # f"rotation.{action.reason}"
    assert levels["sandbox.started"] == {STDOUT}  # print(json.dumps({"event": "..."}))
    assert all(EVENT.fullmatch(name) for name in emitted())
    assert len(emitted()) >= 70


def test_every_event_emitted_is_in_the_catalogue() -> None:
    missing = sorted(set(emitted()) - set(catalogue()))
    assert not missing, f"events emitted but not in docs/events.md: {', '.join(missing)}"


def test_every_event_in_the_catalogue_is_emitted() -> None:
    stale = sorted(set(catalogue()) - set(emitted()))
    assert not stale, f"events in docs/events.md that nothing emits any more: {', '.join(stale)}"


def test_the_development_tools_events_have_their_own_section() -> None:
    """demo.*, sandbox.* and the demo's consumer: under "Development tools", and nothing
    the daemon or the commands emit is there."""
    documented = catalogue()
    dev = {name for name, only_dev in emitted().items() if only_dev}
    assert dev >= {"demo.ready", "sandbox.started"}
    wrong = sorted(
        name
        for name in set(documented) & set(emitted())
        if (documented[name] == DEV_SECTION) != (name in dev)
    )
    assert not wrong, f"in the wrong section of docs/events.md (rotator/dev/ or not): {wrong}"


# --- links ----------------------------------------------------------------------------------


def documents() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "deploy/README.md"]


def prose(text: str) -> str:
    """``text`` without fenced code blocks (links and headings there are no links)."""
    return re.sub(r"^(```|~~~).*?^\1[^\n]*$", "", text, flags=re.S | re.M)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: its text, lowercased, punctuation but ``-`` and ``_``
    dropped, spaces turned to ``-``."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for match in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", prose(path.read_text("utf-8")), re.M):
        base = slug(match.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def test_slugs_follow_githubs_rules() -> None:
    assert slug("Bootstrap: adopting the first key") == "bootstrap-adopting-the-first-key"
    assert slug("What consumers read (Vault layout)") == "what-consumers-read-vault-layout"
    assert slug("Operations: container and deploy/") == "operations-container-and-deploy"
    assert slug("`ROTATOR_KEY_TTL` and more") == "rotator_key_ttl-and-more"


def links(path: Path) -> list[str]:
    return re.findall(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", prose(path.read_text("utf-8")))


def test_every_relative_link_leads_somewhere() -> None:
    broken = []
    checked = 0
    for doc in documents():
        for target in links(doc):
            if re.match(r"[a-z][a-z+.-]*:", target):  # http(s), mailto: not fetched
                continue
            checked += 1
            file, _, anchor = target.partition("#")
            dest = (doc.parent / file).resolve() if file else doc
            where = f"{doc.relative_to(REPO)}: ({target})"
            if not dest.exists():
                broken.append(f"{where}: no such file")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{where}: no heading with that anchor")
    assert checked >= 20
    assert not broken, "\n".join(broken)


# --- the walk-through -----------------------------------------------------------------------


def code(text: str) -> str:
    """The fenced blocks and inline code spans of ``text``: where commands are written."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M)
    spans = re.findall(r"`([^`\n]+)`", prose(text))
    return "\n".join(blocks + spans)


KUBECTL_RESOURCE = re.compile(r"(?:exec(?: -i)?|logs|rollout (?:status|restart|undo))\s+$")


def test_every_deploy_path_in_the_walk_through_exists() -> None:
    text = OPERATIONS_MD.read_text(encoding="utf-8")
    missing = []
    paths = set()
    for match in re.finditer(r"(?<![\w.-])deploy/[\w./-]*", text):
        if KUBECTL_RESOURCE.search(text[max(0, match.start() - 40) : match.start()]):
            continue  # `kubectl exec deploy/rotator`: the Deployment, not a path
        path = match.group(0).rstrip(".")
        paths.add(path)
        if not (REPO / path).exists():
            missing.append(path)
    assert len(paths) >= 12
    assert {"deploy/vault/setup.sh", "deploy/monitoring/grafana-dashboard.json"} <= paths
    assert not missing, f"docs/operations.md names paths that do not exist: {sorted(missing)}"


def make_targets() -> set[str]:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z][\w-]*)\s*:(?!=)", makefile, flags=re.M))


def test_every_make_target_in_the_walk_through_exists() -> None:
    used = set(re.findall(r"\bmake ([a-z][\w-]*)", code(OPERATIONS_MD.read_text("utf-8"))))
    assert {"image", "monitoring"} <= used
    assert not used - make_targets(), f"no such make target: {sorted(used - make_targets())}"


def test_every_rotator_command_in_the_walk_through_exists() -> None:
    text = code(OPERATIONS_MD.read_text("utf-8"))
    used = set(re.findall(r"(?:^|[\s`])rotator ([a-z][\w-]*)", text, flags=re.M))
    names = {command.name for command in COMMANDS}
    assert {"bootstrap", "status", "plan"} <= used
    assert not used - names, f"no such rotator command: {sorted(used - names)}"


@pytest.mark.parametrize("path", [OPERATIONS_MD, REPO / "deploy/kubernetes/kustomization.yaml"])
def test_the_walk_through_shows_the_current_version(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    tags = re.findall(r"(?:rotator:|newTag:\s*)(\d+\.\d+\.\d+)", text)
    assert tags and set(tags) == {rotator.__version__}

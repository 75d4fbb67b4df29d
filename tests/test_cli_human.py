"""The CLI at a terminal: bare ``rotator`` prints usage, ``run --help`` lists the variables,
``status`` is a table with human durations and hints, ``plan`` says what to run, and
``bootstrap``/``rotate`` speak a sentence (JSON with ``--json``), against real OpenBao and the
sandbox; none of it shows a secret."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rotator.adapters.encord.registry import registry_factory
from rotator.adapters.vault import VaultStore
from rotator.cli import COMMANDS
from rotator.cli.planview import action_line
from rotator.dev.openbao import OpenBaoDev
from rotator.runtime.config import from_env, parse_duration
from rotator.runtime.config.table import VARIABLES
from rotator.runtime.render import align, human_duration, relative, short_id
from rotator.runtime.wiring import make_engines, make_leases
from tests.crash import SimulatedCrash
from tests.e2e import CALM_TIMINGS, base_env, rotator_cli, subprocess_env
from tests.fixtures_sandbox import SandboxHandle
from tests.secret_scan import assert_no_secrets

UNITS = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}
HEX64 = re.compile(r"\b[0-9a-f]{64}\b")

# --- the formatter ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("td", "text"),
    [
        (timedelta(days=89, hours=23, minutes=59, seconds=53, milliseconds=390), "89d 23h"),
        (timedelta(hours=5, minutes=12, seconds=59), "5h 12m"),
        (timedelta(seconds=42, milliseconds=999), "42s"),
        (timedelta(hours=2), "2h"),
        (timedelta(days=1, minutes=5), "1d"),
        (timedelta(minutes=1, seconds=1), "1m 1s"),
        (timedelta(milliseconds=300, microseconds=999), "300ms"),
        (timedelta(microseconds=999), "0s"),
        (timedelta(0), "0s"),
        (-timedelta(minutes=3), "-3m"),
    ],
)
def test_human_duration_examples(td: timedelta, text: str) -> None:
    """Two largest units, truncated, the zero second unit left out."""
    assert human_duration(td) == text


@given(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=40_000)))
def test_human_duration_is_two_adjacent_units_never_more_than_the_duration(td: timedelta) -> None:
    """At most two parts: the largest unit ``td`` holds, then (when not zero) the unit right
    below it, under its size; the text reads back (``parse_duration``) to at most ``td`` and
    less than one of that lower unit below it (one second for a text in seconds); under a
    second, whole milliseconds."""
    text = human_duration(td)
    if td < timedelta(seconds=1):
        ms = td // timedelta(milliseconds=1)
        assert text == (f"{ms}ms" if ms else "0s")
        return
    parts = text.split(" ")
    assert 1 <= len(parts) <= 2
    order = list(UNITS)
    first = order.index(parts[0][-1])
    below = min(first + 1, len(order) - 1)
    if len(parts) == 2:
        assert parts[1][-1] == order[below] and first < below
        assert 0 < int(parts[1][:-1]) < UNITS[order[first]] // UNITS[order[below]]
    assert td >= timedelta(seconds=UNITS[order[first]])
    if first > 0:
        assert td < timedelta(seconds=UNITS[order[first - 1]])
    shown = parse_duration(text.replace(" ", ""))
    assert shown <= td < shown + timedelta(seconds=UNITS[order[below]])


def test_short_ids_relative_times_and_alignment() -> None:
    """Key ids shortened to 12 hex characters; times as 'in X' / 'X ago'; columns aligned."""
    key_id = "3f2a9c1b" * 8
    assert short_id(key_id) == "3f2a9c1b3f2a…" and short_id("abc") == "abc"
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert relative(now + timedelta(hours=5, minutes=12), now) == "in 5h 12m"
    assert relative(now - timedelta(seconds=42), now) == "42s ago"
    assert relative(now, now) == "now"
    lines = align(["A", "LONGER"], [["wide cell", "x"], ["b", ""]])
    assert lines == ["A          LONGER", "wide cell  x", "b"]


# --- usage and help -------------------------------------------------------------------------


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rotator", *args],
        env=subprocess_env(env or {}),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_bare_rotator_prints_usage_and_the_commands_and_exits_2() -> None:
    """No command: the usage and every command on stderr, not a JSON line; exit 2."""
    done = _run([])
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("usage: rotator")
    assert not any(line.startswith("{") for line in done.stderr.splitlines())
    for command in COMMANDS:
        assert re.search(rf"^\s+{command.name}\b", done.stderr, re.M), command.name
    assert "rotator run --help" in done.stderr


def test_run_help_lists_every_variable_and_the_top_level_help_points_there() -> None:
    """`rotator run --help` names every variable of the table with its help text; `rotator
    --help` says where they are instead of listing them."""
    done = _run(["run", "--help"])
    assert done.returncode == 0, done.stderr
    listed = {line.split()[0]: line for line in done.stdout.splitlines() if line.startswith("  ")}
    for var in VARIABLES:
        assert var.name in listed, var.name
        assert var.help in listed[var.name], var.name
    top = _run(["--help"])
    assert top.returncode == 0 and "rotator run --help" in top.stdout
    assert "ROTATOR_KEY_TTL" not in top.stdout


# --- status, plan, bootstrap and rotate against OpenBao and the sandbox -------------------


def _cli(args: list[str], env: dict[str, str], *, rc: int = 0) -> str:
    code, out, err = rotator_cli(args, env)
    assert code == rc, err[-2000:]
    assert_no_secrets(out + err, f"rotator {' '.join(args)}")
    return out


def _status(env: dict[str, str]) -> tuple[list[list[str]], list[str], dict[str, Any]]:
    """The status table's rows (split on runs of 2+ spaces), its hints, and the --json."""
    text = _cli(["status"], env)
    table, _, notes = text.partition("\n\n")
    rows = [re.split(r" {2,}", line.strip()) for line in table.splitlines()]
    assert rows[0][:3] == ["ACCOUNT", "CREDENTIAL", "STATE"]
    (doc,) = json.loads(_cli(["status", "--json"], env))["accounts"]
    return rows[1:], [n for n in notes.splitlines() if n], doc


@pytest.fixture
def env(openbao: OpenBaoDev, vault_prefix: str, sandbox: SandboxHandle) -> dict[str, str]:
    return base_env(
        openbao, vault_prefix, sandbox.url, ROTATOR_CREDENTIALS="ssh-key,bearer-token",
        **CALM_TIMINGS,
    )


def test_status_and_plan_before_bootstrap_say_what_to_run(env: dict[str, str]) -> None:
    """Not bootstrapped: state 'none' and the exact bootstrap command, in the table's hints,
    in plan's text and in both --json documents."""
    rows, notes, doc = _status(env)
    assert rows == [
        ["alpha", "ssh-key", "none", "-", "-", "-", "-/5"],
        ["alpha", "bearer-token", "none", "-", "-", "-"],
    ]
    run = "run: rotator bootstrap alpha --private-key-file F"
    assert len(notes) == 1 and run in notes[0]
    assert doc["ssh-key"]["state"] == "none" and run in doc["hints"][0]
    assert "keys_at_encord" not in doc
    text = _cli(["plan"], env)
    assert "alpha:\n  blocked         ssh-key: not_bootstrapped" in text
    assert run in text
    (plan,) = json.loads(_cli(["plan", "--json"], env))["accounts"]
    blocked = {"action": "Blocked", "kind": "ssh-key", "reason": "not_bootstrapped"}
    assert plan["actions"] == [blocked]
    assert run in plan["hints"][0]


def test_bootstrap_and_rotate_speak_a_sentence_and_json_with_the_flag(
    env: dict[str, str], sandbox: SandboxHandle, vault_store: VaultStore
) -> None:
    """bootstrap: 'alpha: adopted key <12 hex>… as the current ssh-key (expires <date>)';
    --json: the bootstrap.done document with the full key id. The same for rotate; the
    status table then shows the short id, human durations, bearer state and last rotation;
    --json has seconds and full ids."""
    key_file = str(sandbox.bootstrap_key_file)
    out = _cli(["bootstrap", "alpha", "--private-key-file", key_file], env)
    adopted = vault_store.read("alpha/ssh-key")
    assert adopted is not None and adopted.data is not None
    first = str(adopted.data["key_id"])
    assert re.fullmatch(
        rf"alpha: adopted key {first[:12]}… as the current ssh-key \(expires \d{{4}}-\d\d-\d\d\)\n",
        out,
    ), out
    doc = json.loads(_cli(["bootstrap", "alpha", "--private-key-file", key_file, "--json"], env))
    assert (doc["event"], doc["key_id"]) == ("bootstrap.done", first)

    out = _cli(["rotate", "alpha"], env)
    newest = vault_store.read("alpha/ssh-key")
    assert newest is not None and newest.data is not None
    second = str(newest.data["key_id"])
    assert out.startswith(f"alpha: rotated the ssh-key: key {second[:12]}… is current"), out
    assert "retires after 1h of grace" in out and not HEX64.search(out)
    done = json.loads(_cli(["rotate", "alpha", "--json"], env))
    assert done["event"] == "rotate.done" and "rotated" in done["outcomes"]

    rows, notes, status = _status(env)
    current = status["ssh-key"]["key_id"]
    assert rows[0][:4] == ["alpha", "ssh-key", "ok", short_id(current)]
    assert re.fullmatch(r"\d+m?s", rows[0][4]) and rows[0][5] == "89d 23h"
    assert rows[0][6] == "3/5" and rows[0][7].startswith("rotated ")  # two in their grace
    assert rows[1][:3] == ["alpha", "bearer-token", "fresh"]
    assert re.fullmatch(r"59m \d+s", rows[1][5]), rows[1]
    assert notes == []
    ssh = status["ssh-key"]
    assert HEX64.fullmatch(current) and set(ssh["retiring"]) >= {second}
    assert isinstance(ssh["age_s"], int) and ssh["age_s"] < 60
    assert 90 * 86_400 - 60 < ssh["expires_in_s"] <= 90 * 86_400
    assert ssh["expires_at"].endswith("+00:00") and ssh["state"] == "ok"
    bearer = status["bearer-token"]
    assert bearer["state"] == "fresh" and 3500 < bearer["expires_in_s"] <= 3600
    assert status["keys_at_encord"] == 3 and status["hints"] == []
    private = sandbox.bootstrap_key_file.read_text().splitlines()[1:-1]
    for text in (out, json.dumps(status)):
        assert not any(line in text for line in private)


def test_status_shows_a_rotation_stopped_half_way_and_one_asked_for(
    env: dict[str, str], sandbox: SandboxHandle, vault_store: VaultStore
) -> None:
    """A rotation that stopped after registering its key shows 'rotating' with a hint that
    the next check finishes it; `rotator rotate` while a daemon holds the account says it
    asked the daemon (JSON with --json), and status then shows 'requested'."""
    env = {**env, "ROTATOR_CHECK_INTERVAL": "5m"}  # the daemon's lease outlives the test
    _cli(["bootstrap", "alpha", "--private-key-file", str(sandbox.bootstrap_key_file)], env)
    settings = from_env(env)
    # Unpooled: each registry's connections close with it (the daemon's pool lives on).
    engine = make_engines(settings, vault_store, registry_factory(sandbox.url))["alpha"]

    def crash(step: str) -> None:
        if step == "after_register":
            raise SimulatedCrash(step)

    engine.hook = crash
    with pytest.raises(SimulatedCrash):
        engine.check(force=frozenset({"ssh-key"}))
    rows, notes, doc = _status(env)
    assert rows[0][2] == "rotating" and doc["ssh-key"]["pending"] in ("intent", "registered")
    assert any(
        "alpha ssh-key: a rotation stopped at its" in n and "rotator rotate alpha" in n
        for n in notes
    ), notes
    assert "resume rotation" in _cli(["plan"], env)

    engine.hook = lambda step: None
    engine.check()  # finishes it
    assert make_leases(settings, vault_store, holder="a-daemon")["alpha"].acquire()
    out = _cli(["rotate", "alpha"], env)
    assert out == (
        "alpha: a running daemon holds the account; it was asked to rotate the ssh-key at "
        "its next check (every 5m)\n"
    )
    rows, notes, doc = _status(env)
    assert rows[0][2] == "requested" and doc["ssh-key"]["requested"] is True
    assert any("asked to rotate" in n for n in notes), notes
    asked = json.loads(_cli(["rotate", "alpha", "--json"], env))
    assert asked == {"event": "rotate.requested", "account": "alpha", "kind": "ssh-key"}


def test_status_and_plan_when_encord_does_not_answer(
    env: dict[str, str], sandbox: SandboxHandle
) -> None:
    """Encord stopped: status still shows the record, '?/5' keys and a hint naming
    ENCORD_DOMAIN (exit 0); plan reports the account's error with the same hint, exit 1."""
    _cli(["bootstrap", "alpha", "--private-key-file", str(sandbox.bootstrap_key_file)], env)
    sandbox.sandbox.stop()
    rows, notes, doc = _status(env)
    assert rows[0][2] == "ok" and rows[0][6] == "?/5"
    assert doc["keys_at_encord"] is None and doc["encord_error"]
    assert any("ENCORD_DOMAIN" in n for n in notes), notes
    text = _cli(["plan"], env, rc=1)
    assert "alpha:\n  could not plan: " in text and "check ENCORD_DOMAIN" in text
    (plan,) = json.loads(_cli(["plan", "--json"], env, rc=1))["accounts"]
    assert plan["reason"] == "encord_unavailable" and "ENCORD_DOMAIN" in plan["hints"][0]


def test_rotate_names_one_account_of_several(
    openbao: OpenBaoDev, vault_prefix: str, sandbox: SandboxHandle, tmp_path: Path
) -> None:
    """`rotator rotate alpha` with two accounts configured rotates alpha (it used to stop
    with a KeyError on the other account's lease)."""
    env = base_env(
        openbao, vault_prefix, sandbox.url, ROTATOR_ACCOUNTS="alpha=sa-alpha,beta=sa-beta",
        ROTATOR_CREDENTIALS="ssh-key", **CALM_TIMINGS,
    )
    _cli(["bootstrap", "alpha", "--private-key-file", str(sandbox.bootstrap_key_file)], env)
    assert _cli(["rotate", "alpha"], env).startswith("alpha: rotated the ssh-key")


def test_plan_lines_for_every_action_shape() -> None:
    """Each action of describe() reads as a verb, its subject, its reason (and detail); a
    field the line does not know still shows as name=value."""
    now = datetime(2030, 1, 1, 9, tzinfo=UTC)
    key_id = "ab" * 32
    cases: list[tuple[dict[str, Any], str]] = [
        ({"action": "Rotate", "kind": "ssh-key", "reason": "expires_in_2d"},
         "  rotate          ssh-key: expires_in_2d"),
        ({"action": "Revoke", "kind": "api-key", "key_id": key_id, "reason": "grace_over"},
         "  revoke          api-key, key abababababab…: grace_over"),
        ({"action": "DeleteOrphan", "key_id": key_id, "title": "rotator:x", "reason": "orphaned"},
         "  delete orphan   key abababababab…, 'rotator:x': orphaned"),
        ({"action": "Blocked", "kind": "ssh-key", "reason": "blocked_by_cap",
          "detail": "5/5 keys held"},
         "  blocked         ssh-key: blocked_by_cap (5/5 keys held)"),
        ({"action": "MintBearer", "reason": "no_token"}, "  mint bearer     no_token"),
        ({"action": "Wait", "until": "2030-01-03T10:30:00+00:00", "reason": "next_due"},
         "  wait            until 2030-01-03 10:30 UTC (in 2d 1h): next_due"),
        ({"action": "Wait", "until": None, "reason": "nothing_scheduled"},
         "  wait            until something changes: nothing_scheduled"),
        ({"action": "Wait", "until": None, "reason": "paused", "window": "sat 02:00-04:00"},
         "  wait            until something changes, window=sat 02:00-04:00: paused"),
    ]
    for action, line in cases:
        assert action_line(action, now) == line

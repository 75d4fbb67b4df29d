"""Settings from the environment: defaults, parsing, every problem reported at once."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rotator.adapters.vault import LOGINS, VaultSettings
from rotator.cli import ENV_HELP
from rotator.core.errors import ConfigError
from rotator.core.vocab import MAX_DURATION, Account
from rotator.runtime.config import (
    LOG_FORMATS,
    Settings,
    format_duration,
    from_env,
    parse_duration,
    settings_summary,
)
from rotator.runtime.config.table import VARIABLES

ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - the documented default, compared, never bound
TOKEN = "hvs.CAESIJlU2sFakeVaultTokenForTests0123"

MINIMAL = {
    "VAULT_ADDR": "https://vault.example.com:8200",
    "VAULT_TOKEN": TOKEN,
    "ROTATOR_ACCOUNTS": "ml=sa-hash-1",
}


def env(**overrides: str) -> dict[str, str]:
    """The minimal valid environment with ``overrides`` applied."""
    return {**MINIMAL, **overrides}


def problems_of(environ: dict[str, str]) -> list[str]:
    """The problems from_env reports for ``environ`` (fails if it reports none)."""
    with pytest.raises(ConfigError) as info:
        from_env(environ)
    return info.value.problems


# ---------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500ms", timedelta(milliseconds=500)),
        ("4s", timedelta(seconds=4)),
        ("2m", timedelta(minutes=2)),
        ("24h", timedelta(hours=24)),
        ("90d", timedelta(days=90)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1d2h3m4s5ms", timedelta(days=1, hours=2, minutes=3, seconds=4, milliseconds=5)),
        ("  15m \n", timedelta(minutes=15)),
        ("0s", timedelta(0)),
        ("90m", timedelta(minutes=90)),
        ("1m1m", timedelta(minutes=2)),
    ],
)
def test_parse_duration_accepts(text: str, expected: timedelta) -> None:
    """Single units, sums, milliseconds and surrounding whitespace all parse to the right span."""
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    ["soon", "", "  ", "90", "d", "1.5h", "-1s", "1h 30m", "1w", "1H", "10 s", "1h30", "ms", "+5s"],
)
def test_parse_duration_rejects(text: str) -> None:
    """Anything that is not integer+unit pieces is refused with a message showing an example."""
    with pytest.raises(ValueError, match=r"expected a duration like '90d' or '1h30m', got"):
        parse_duration(text)


def test_parse_duration_rejects_overflow() -> None:
    """A duration too large for timedelta is a ValueError, not an OverflowError."""
    with pytest.raises(ValueError, match="too large"):
        parse_duration("99999999999d")


@pytest.mark.parametrize(
    ("td", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(days=90), "90d"),
        (timedelta(hours=1, minutes=30), "1h30m"),
        (timedelta(milliseconds=500), "500ms"),
        (timedelta(minutes=16, seconds=30), "16m30s"),
        (timedelta(days=1, seconds=1, milliseconds=1), "1d1s1ms"),
        (timedelta(microseconds=1600), "2ms"),
        (-timedelta(minutes=5), "-5m"),
    ],
)
def test_format_duration(td: timedelta, text: str) -> None:
    """format_duration gives the compact largest-units-first spelling."""
    assert format_duration(td) == text


@given(st.integers(min_value=0, max_value=10**13))
def test_duration_round_trip(ms: int) -> None:
    """parse_duration inverts format_duration for every millisecond-precision span."""
    td = timedelta(milliseconds=ms)
    assert parse_duration(format_duration(td)) == td


@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=10**5),
            st.sampled_from(["ms", "s", "m", "h", "d"]),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_formatted_durations_are_canonical(parts: list[tuple[int, str]]) -> None:
    """Any sum that parses formats to a canonical text that parses back to the same span."""
    td = parse_duration("".join(f"{count}{unit}" for count, unit in parts))
    text = format_duration(td)
    assert parse_duration(text) == td
    assert format_duration(parse_duration(text)) == text


# ---------------------------------------------------------------- defaults and parsing


def test_defaults() -> None:
    """With only the required variables set, every other setting takes its documented default."""
    s = from_env(MINIMAL)
    assert s.vault == VaultSettings(
        addr="https://vault.example.com:8200",
        token=TOKEN,
        cacert=None,
        namespace=None,
        timeout=timedelta(seconds=5),
        mount="secret",
        prefix="encord",
    )
    assert s.accounts == (Account(name="ml", hash="sa-hash-1"),)
    assert s.encord_domain == "https://api.encord.com"
    assert s.credentials == frozenset({"ssh-key", "bearer-token"})
    assert s.key_kinds == ("ssh-key",)
    assert s.key_ttl == timedelta(days=90)
    assert s.rotate_before == timedelta(days=14)
    assert s.grace == timedelta(hours=24)
    assert s.key_cap == 5
    assert s.bearer_ttl == timedelta(hours=1)
    assert s.check_interval == timedelta(minutes=5)
    assert s.jitter == timedelta(seconds=30)
    assert s.log_format == "auto"  # console at a terminal, JSON anywhere else
    assert s.log_level == "info"
    assert s.dry_run is False
    assert (s.http_host, s.http_port) == (ALL_INTERFACES, 8080)
    assert s.lease_ttl == 3 * timedelta(minutes=5, seconds=30)
    assert s.max_concurrency == 4


@pytest.mark.parametrize("fmt", ["auto", "json", "console", "ecs", "Auto", "ECS"])
def test_every_log_format_is_accepted(fmt: str) -> None:
    """ROTATOR_LOG_FORMAT takes each format the logs offer, in any case."""
    assert from_env(env(ROTATOR_LOG_FORMAT=fmt)).log_format == fmt.lower()
    assert fmt.lower() in LOG_FORMATS


def test_every_variable_parsed(tmp_path: Path) -> None:
    """Each variable, set to a non-default value, lands in its field."""
    cacert = tmp_path / "ca.pem"
    cacert.write_text("not checked beyond being readable\n")
    s = from_env(
        {
            "VAULT_ADDR": "http://127.0.0.1:8200/",
            "VAULT_TOKEN": f"  {TOKEN}\n",
            "VAULT_CACERT": str(cacert),
            "VAULT_NAMESPACE": "team-a/",
            "VAULT_CLIENT_TIMEOUT": "1500ms",
            "ROTATOR_VAULT_MOUNT": "kv",
            "ROTATOR_VAULT_PREFIX": "/teams/encord/",
            "ENCORD_DOMAIN": "https://api.us.encord.com/",
            "ROTATOR_ACCOUNTS": " ml = hash-1 , ops=hash-2",
            "ROTATOR_CREDENTIALS": "bearer-token, api-key,ssh-key",
            "ROTATOR_KEY_TTL": "30d",
            "ROTATOR_ROTATE_BEFORE": "7d",
            "ROTATOR_GRACE": "2h",
            "ROTATOR_KEY_CAP": "6",
            "ROTATOR_BEARER_TTL": "45m",
            "ROTATOR_CHECK_INTERVAL": "1m",
            "ROTATOR_JITTER": "0s",
            "ROTATOR_LOG_FORMAT": "Console",
            "ROTATOR_LOG_LEVEL": "DEBUG",
            "ROTATOR_DRY_RUN": "Yes",
            "ROTATOR_HTTP_ADDR": "[::1]:9090",
            "ROTATOR_LEASE_TTL": "10m",
            "ROTATOR_MAX_CONCURRENCY": "2",
        }
    )
    assert s.vault == VaultSettings(
        addr="http://127.0.0.1:8200",
        token=TOKEN,
        cacert=str(cacert),
        namespace="team-a",
        timeout=timedelta(milliseconds=1500),
        mount="kv",
        prefix="teams/encord",
    )
    assert s.encord_domain == "https://api.us.encord.com"
    assert s.accounts == (Account("ml", "hash-1"), Account("ops", "hash-2"))
    assert s.credentials == frozenset({"ssh-key", "api-key", "bearer-token"})
    assert s.key_kinds == ("ssh-key", "api-key")
    assert (s.key_ttl, s.rotate_before, s.grace) == (
        timedelta(days=30),
        timedelta(days=7),
        timedelta(hours=2),
    )
    assert s.key_cap == 6
    assert s.bearer_ttl == timedelta(minutes=45)
    assert (s.check_interval, s.jitter) == (timedelta(minutes=1), timedelta(0))
    assert (s.log_format, s.log_level, s.dry_run) == ("console", "debug", True)
    assert (s.http_host, s.http_port, s.http_addr) == ("::1", 9090, "[::1]:9090")
    assert s.lease_ttl == timedelta(minutes=10)
    assert s.max_concurrency == 2


def test_token_file_is_read_and_stripped(tmp_path: Path) -> None:
    """VAULT_TOKEN_FILE stands in for VAULT_TOKEN; its content is stripped of whitespace."""
    token_file = tmp_path / "token"
    token_file.write_text(f"\n{TOKEN}\n")
    environ = env(VAULT_TOKEN_FILE=str(token_file))
    del environ["VAULT_TOKEN"]
    assert from_env(environ).vault.token == TOKEN


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("TRUE", True), ("1", True), ("yes", True), ("false", False),
     ("No", False), ("0", False)],
)
def test_dry_run_spellings(value: str, expected: bool) -> None:
    """ROTATOR_DRY_RUN takes true/false, 1/0 and yes/no in any case."""
    assert from_env(env(ROTATOR_DRY_RUN=value)).dry_run is expected


@pytest.mark.parametrize(
    ("value", "host", "port"),
    [
        ("127.0.0.1:0", "127.0.0.1", 0),
        ("localhost:65535", "localhost", 65535),
        (":9090", ALL_INTERFACES, 9090),
        ("[::]:8080", "::", 8080),
        ("health.internal:80", "health.internal", 80),
    ],
)
def test_http_addr_forms(value: str, host: str, port: int) -> None:
    """ROTATOR_HTTP_ADDR takes host:port, a bare :port, and bracketed IPv6."""
    s = from_env(env(ROTATOR_HTTP_ADDR=value))
    assert (s.http_host, s.http_port) == (host, port)


def test_empty_values_count_as_unset() -> None:
    """A variable set to an empty or blank value takes its default, as if unset."""
    s = from_env(env(ROTATOR_KEY_TTL="", ROTATOR_CREDENTIALS="  ", VAULT_NAMESPACE=""))
    assert s.key_ttl == timedelta(days=90)
    assert s.credentials == frozenset({"ssh-key", "bearer-token"})
    assert s.vault.namespace is None


def test_reads_only_the_mapping_it_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """from_env reads the mapping passed in, not the process environment."""
    monkeypatch.setenv("ROTATOR_KEY_TTL", "soon")
    monkeypatch.delenv("VAULT_ADDR", raising=False)
    assert from_env(MINIMAL).key_ttl == timedelta(days=90)


def test_settings_built_directly_derive_the_lease() -> None:
    """A Settings built in code gets the env defaults and a lease of 3 × (interval + jitter)."""
    s = Settings(
        vault=VaultSettings(addr="http://vault:8200", token=TOKEN),
        accounts=(Account("a", "h"),),
        check_interval=timedelta(minutes=1),
        jitter=timedelta(seconds=10),
        credentials=frozenset({"api-key", "ssh-key"}),
    )
    assert s.lease_ttl == timedelta(minutes=3, seconds=30)
    assert s.key_kinds == ("ssh-key", "api-key")
    assert s.key_cap == 5


# ---------------------------------------------------------------- problems

SINGLE_BAD = [
    ("VAULT_ADDR", "vault.example.com"),
    ("VAULT_ADDR", "ftp://vault"),
    ("VAULT_ADDR", "https://"),
    ("VAULT_ADDR", "https://vault:99999"),
    ("VAULT_ADDR", "https://vault/?x=1"),
    ("VAULT_CACERT", "/nonexistent/ca.pem"),
    ("VAULT_CLIENT_TIMEOUT", "0s"),
    ("VAULT_CLIENT_TIMEOUT", "fast"),
    ("ROTATOR_VAULT_MOUNT", "a//b"),
    ("ROTATOR_VAULT_PREFIX", "../up"),
    ("ENCORD_DOMAIN", "api.encord.com"),
    ("ROTATOR_ACCOUNTS", "ml"),
    ("ROTATOR_ACCOUNTS", "=hash"),
    ("ROTATOR_ACCOUNTS", "ml="),
    ("ROTATOR_ACCOUNTS", "m/l=hash"),
    ("ROTATOR_ACCOUNTS", "m l=hash"),
    ("ROTATOR_ACCOUNTS", "ml=ha/sh"),
    ("ROTATOR_ACCOUNTS", "ml=a,ml=b"),
    ("ROTATOR_ACCOUNTS", "ml=a,,ops=b"),
    ("ROTATOR_CREDENTIALS", "ssh-key,password"),
    ("ROTATOR_CREDENTIALS", "ssh-key,"),
    ("ROTATOR_CREDENTIALS", ","),
    ("ROTATOR_KEY_TTL", "soon"),
    ("ROTATOR_KEY_TTL", "0d"),
    ("ROTATOR_ROTATE_BEFORE", "-1d"),
    ("ROTATOR_GRACE", "1 day"),
    ("ROTATOR_KEY_CAP", "0"),
    ("ROTATOR_KEY_CAP", "five"),
    ("ROTATOR_KEY_CAP", "-3"),
    ("ROTATOR_BEARER_TTL", "0s"),
    ("ROTATOR_CHECK_INTERVAL", "5"),
    ("ROTATOR_JITTER", "-30s"),
    ("ROTATOR_LOG_FORMAT", "xml"),
    ("ROTATOR_LOG_LEVEL", "verbose"),
    ("ROTATOR_DRY_RUN", "maybe"),
    ("ROTATOR_HTTP_ADDR", "8080"),
    ("ROTATOR_HTTP_ADDR", "0.0.0.0:65536"),
    ("ROTATOR_HTTP_ADDR", "0.0.0.0:http"),
    ("ROTATOR_HTTP_ADDR", "::1:8080"),
    ("ROTATOR_HTTP_ADDR", "[::g]:8080"),
    ("ROTATOR_HTTP_ADDR", "bad_host!:8080"),
    ("ROTATOR_LEASE_TTL", "0s"),
    ("ROTATOR_MAX_CONCURRENCY", "0"),
    ("ROTATOR_MAX_CONCURRENCY", "2.5"),
]


@pytest.mark.parametrize(("name", "value"), SINGLE_BAD)
def test_each_bad_value_gives_one_problem_naming_its_variable(name: str, value: str) -> None:
    """One bad variable yields exactly one problem line, which starts with that variable."""
    problems = problems_of(env(**{name: value}))
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{name}: ")
    assert "\n" not in problems[0]


def test_durations_over_100_years_are_refused() -> None:
    """A duration so long that a time plus it would overflow (ROTATOR_KEY_TTL=999999999d made
    plan() raise OverflowError) is one clear problem line; 100 years is still accepted."""
    assert problems_of(env(ROTATOR_KEY_TTL="999999999d")) == [
        "ROTATOR_KEY_TTL: must be at most 36500d (100 years), got '999999999d'"
    ]
    assert from_env(env(ROTATOR_KEY_TTL="36500d")).key_ttl == MAX_DURATION


def test_duration_problem_message() -> None:
    """A bad duration's problem reads like the documented example."""
    assert problems_of(env(ROTATOR_KEY_TTL="soon")) == [
        "ROTATOR_KEY_TTL: expected a duration like '90d' or '1h30m', got 'soon'"
    ]


def test_missing_required_variables_are_all_reported() -> None:
    """An empty environment names VAULT_ADDR, VAULT_TOKEN and ROTATOR_ACCOUNTS together."""
    problems = problems_of({})
    assert sorted(p.split(":")[0] for p in problems) == [
        "ROTATOR_ACCOUNTS",
        "VAULT_ADDR",
        "VAULT_TOKEN",
    ]


def test_several_bad_values_are_listed_together() -> None:
    """Every problem is collected into one ConfigError, one line each."""
    with pytest.raises(ConfigError) as info:
        from_env(
            env(
                ROTATOR_KEY_TTL="soon",
                ROTATOR_KEY_CAP="none",
                ROTATOR_LOG_FORMAT="xml",
                ENCORD_DOMAIN="nowhere",
                ROTATOR_ACCOUNTS="",
            )
        )
    names = {p.split(":")[0] for p in info.value.problems}
    assert names == {
        "ROTATOR_KEY_TTL",
        "ROTATOR_KEY_CAP",
        "ROTATOR_LOG_FORMAT",
        "ENCORD_DOMAIN",
        "ROTATOR_ACCOUNTS",
    }
    assert str(info.value) == "; ".join(info.value.problems)


def test_url_credentials_are_refused_unechoed() -> None:
    """A URL with a user:password part is refused without repeating the password."""
    problems = problems_of(env(VAULT_ADDR="https://admin:hunter2-pass@vault:bad/"))
    assert len(problems) == 1 and problems[0].startswith("VAULT_ADDR: must not carry")
    assert "hunter2" not in problems[0]


def test_unreadable_token_file_is_a_problem(tmp_path: Path) -> None:
    """A VAULT_TOKEN_FILE that cannot be read is reported under its own name."""
    environ = env(VAULT_TOKEN_FILE=str(tmp_path / "missing"))
    del environ["VAULT_TOKEN"]
    problems = problems_of(environ)
    assert len(problems) == 1
    assert problems[0].startswith("VAULT_TOKEN_FILE: cannot read file")


def test_both_token_sources_is_a_problem(tmp_path: Path) -> None:
    """Setting both VAULT_TOKEN and VAULT_TOKEN_FILE is refused rather than guessed."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    assert problems_of(env(VAULT_TOKEN_FILE=str(token_file))) == [
        "VAULT_TOKEN: set only one of VAULT_TOKEN and VAULT_TOKEN_FILE"
    ]


# ---------------------------------------------------------------- relations


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        ({"ROTATOR_KEY_TTL": "14d"}, "ROTATOR_ROTATE_BEFORE"),
        ({"ROTATOR_ROTATE_BEFORE": "100d"}, "ROTATOR_ROTATE_BEFORE"),
        ({"ROTATOR_GRACE": "15d"}, "ROTATOR_GRACE"),
        ({"ROTATOR_KEY_CAP": "1"}, "ROTATOR_KEY_CAP"),
        (
            {"ROTATOR_KEY_CAP": "3", "ROTATOR_CREDENTIALS": "ssh-key,api-key"},
            "ROTATOR_KEY_CAP",
        ),
        ({"ROTATOR_BEARER_TTL": "5m30s"}, "ROTATOR_BEARER_TTL"),
        ({"ROTATOR_BEARER_TTL": "5m", "ROTATOR_JITTER": "0s"}, "ROTATOR_BEARER_TTL"),
        ({"ROTATOR_LEASE_TTL": "5m"}, "ROTATOR_LEASE_TTL"),
    ],
)
def test_relations_are_checked(overrides: dict[str, str], name: str) -> None:
    """Values fine alone but inconsistent together give one problem naming the constrained one."""
    problems = problems_of(env(**overrides))
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{name}: must")
    assert "\n" not in problems[0]


@pytest.mark.parametrize(
    "overrides",
    [
        {"ROTATOR_GRACE": "14d"},  # grace may equal rotate-before
        {"ROTATOR_KEY_CAP": "4", "ROTATOR_CREDENTIALS": "ssh-key,api-key"},
        {"ROTATOR_KEY_CAP": "1", "ROTATOR_CREDENTIALS": "bearer-token"},
        {"ROTATOR_BEARER_TTL": "5m", "ROTATOR_CREDENTIALS": "ssh-key"},  # no tokens minted
        {"ROTATOR_BEARER_TTL": "5m1s", "ROTATOR_JITTER": "0s"},
        {"ROTATOR_LEASE_TTL": "5m1s"},
    ],
)
def test_relations_boundaries_pass(overrides: dict[str, str]) -> None:
    """The relations are strict only where they must be, and only when their inputs apply."""
    from_env(env(**overrides))


def test_relations_skipped_when_an_input_did_not_parse() -> None:
    """A relation whose input is already reported does not add a second, confusing problem."""
    problems = problems_of(env(ROTATOR_KEY_TTL="soon", ROTATOR_ROTATE_BEFORE="100d"))
    assert problems == ["ROTATOR_KEY_TTL: expected a duration like '90d' or '1h30m', got 'soon'"]
    problems = problems_of(env(ROTATOR_CREDENTIALS="x", ROTATOR_KEY_CAP="1"))
    assert [p.split(":")[0] for p in problems] == ["ROTATOR_CREDENTIALS"]


# ---------------------------------------------------------------- the token stays hidden


def test_token_not_in_repr() -> None:
    """Neither Settings' nor VaultSettings' repr shows the Vault token."""
    s = from_env(MINIMAL)
    assert TOKEN not in repr(s)
    assert TOKEN not in str(s)
    assert TOKEN not in repr(s.vault)
    assert "token" not in repr(s.vault)


@pytest.mark.parametrize(
    "name",
    [
        "VAULT_ADDR",
        "ENCORD_DOMAIN",
        "ROTATOR_ACCOUNTS",
        "ROTATOR_CREDENTIALS",
        "ROTATOR_KEY_TTL",
        "ROTATOR_LOG_LEVEL",
        "ROTATOR_HTTP_ADDR",
        "ROTATOR_DRY_RUN",
        "VAULT_CACERT",
        "ROTATOR_VAULT_PREFIX",
    ],
)
def test_token_pasted_into_another_variable_is_not_echoed(name: str) -> None:
    """A token put in the wrong variable is reported without its value."""
    problems = problems_of(env(**{name: f"x {TOKEN} {TOKEN[:40]}"}))
    assert len(problems) == 1
    assert problems[0].startswith(f"{name}: ")
    assert TOKEN not in str(problems)
    assert TOKEN[4:20] not in str(problems)


def test_token_from_file_not_echoed(tmp_path: Path) -> None:
    """The token read from VAULT_TOKEN_FILE is hidden too, and a bad token is not quoted."""
    token_file = tmp_path / "token"
    token_file.write_text(f"{TOKEN} extra\n")
    environ = env(VAULT_TOKEN_FILE=str(token_file), ROTATOR_KEY_TTL=TOKEN)
    del environ["VAULT_TOKEN"]
    problems = problems_of(environ)
    assert [p.split(":")[0] for p in problems] == ["VAULT_TOKEN_FILE", "ROTATOR_KEY_TTL"]
    assert TOKEN not in str(problems)
    assert "extra" not in str(problems)


def test_token_not_in_error_text_with_many_problems() -> None:
    """Even an error listing everything wrong never contains the token, in str or repr."""
    with pytest.raises(ConfigError) as info:
        from_env({"VAULT_TOKEN": TOKEN, "ROTATOR_KEY_TTL": TOKEN, "ROTATOR_GRACE": "x"})
    assert TOKEN not in str(info.value)
    assert TOKEN not in repr(info.value)


def test_settings_summary_is_json_safe_and_has_no_token() -> None:
    """settings_summary is plain JSON with every effective setting and no token."""
    summary = settings_summary(from_env(env(ROTATOR_CREDENTIALS="api-key,ssh-key")))
    text = json.dumps(summary)
    assert TOKEN not in text
    assert "token" not in json.dumps(summary["vault"])
    assert summary["key_ttl"] == "90d"
    assert summary["lease_ttl"] == "16m30s"
    assert summary["credentials"] == ["ssh-key", "api-key"]
    assert summary["accounts"] == [
        {"name": "ml", "hash": "sa-hash-1", "domain": "https://api.encord.com"}
    ]
    assert summary["http_addr"] == "0.0.0.0:8080"
    assert json.loads(text) == summary


def test_registrar_defaults_to_api_and_accepts_manual() -> None:
    """ROTATOR_REGISTRAR is 'api' unless set; 'manual' is accepted with ssh-key."""
    assert from_env(env()).registrar == "api"
    assert from_env(env(ROTATOR_REGISTRAR="manual")).registrar == "manual"


def test_registrar_problems_name_the_variable() -> None:
    """An unknown registrar, or manual with api-key, is one line naming ROTATOR_REGISTRAR."""
    for overrides in (
        {"ROTATOR_REGISTRAR": "carrier-pigeon"},
        {"ROTATOR_REGISTRAR": "manual", "ROTATOR_CREDENTIALS": "ssh-key,api-key"},
    ):
        with pytest.raises(ConfigError) as info:
            from_env(env(**overrides))
        assert len(info.value.problems) == 1
        assert info.value.problems[0].startswith("ROTATOR_REGISTRAR")


# ---------------------------------------------------------------- the variable table


README = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def _readme_defaults() -> dict[str, str]:
    """Variable -> default, from docs/configuration.md's ``| variable | default | meaning |``
    table."""
    lines = README.read_text(encoding="utf-8").splitlines()
    start = lines.index("| variable | default | meaning |")
    rows: dict[str, str] = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        names, default = (cell.strip() for cell in line.split("|")[1:3])
        for name in names.split(" / "):
            rows[name.strip().strip("`")] = default
    return rows


def _same_default(readme: str, table: str) -> bool:
    """Equal as text, or (durations) as lengths of time: README's `24h` is the table's 1d."""
    if readme == table:
        return True
    try:
        return parse_duration(readme.strip("`")) == parse_duration(table.strip("`"))
    except ValueError:
        return False


def test_readme_configuration_table_matches_the_variable_table() -> None:
    """Every variable rotator reads is in docs/configuration.md's table with the same default,
    and the table documents no variable rotator does not read."""
    readme = _readme_defaults()
    table = {var.name: var.default_text for var in VARIABLES}
    assert set(readme) == set(table)
    wrong = {
        name: (readme[name], table[name])
        for name in table
        if not _same_default(readme[name], table[name])
    }
    assert wrong == {}


def test_help_lists_every_variable_with_its_default() -> None:
    """`rotator --help` (ENV_HELP) names every variable of the table, with its default."""
    for var in VARIABLES:
        (line,) = [line for line in ENV_HELP.splitlines() if line.split()[:1] == [var.name]]
        shown = var.default_text.replace("`", "")
        assert shown.removeprefix("— ") in line


def test_login_methods_declare_their_variables() -> None:
    """Each ROTATOR_VAULT_AUTH method is one class naming its variables; the table holds them."""
    names = {var.name for var in VARIABLES}
    assert set(LOGINS) == {"token", "approle", "kubernetes"}
    for method, login in LOGINS.items():
        assert login.method == method and login.VARIABLES
        assert {env.name for env in login.VARIABLES} <= names


@pytest.mark.parametrize(
    ("variable", "url", "allowed"),
    [
        ("VAULT_ADDR", "http://127.0.0.1:8200", True),
        ("VAULT_ADDR", "http://127.0.0.2:8200", True),
        ("VAULT_ADDR", "http://[::1]:8200", True),
        ("VAULT_ADDR", "http://localhost:8200", True),
        ("VAULT_ADDR", "https://vault.example.com:8200", True),
        ("VAULT_ADDR", "http://vault.example.com:8200", False),
        ("VAULT_ADDR", "http://10.0.0.7:8200", False),
        ("ENCORD_DOMAIN", "https://api.encord.com", True),
        ("ENCORD_DOMAIN", "http://127.0.0.1:8900", True),
        ("ENCORD_DOMAIN", "http://api.encord.com", False),
        ("ENCORD_DOMAIN", "http://localhost.evil.example:80", False),
    ],
)
def test_plain_http_only_to_loopback_unless_allowed(variable: str, url: str, allowed: bool) -> None:
    """Plain http:// to a host that is not loopback is refused with one line naming the
    variable and ROTATOR_ALLOW_INSECURE_HTTP; that variable lets it through."""
    if allowed:
        assert from_env(env(**{variable: url})).allow_insecure_http is False
    else:
        found = problems_of(env(**{variable: url}))
        assert len(found) == 1 and found[0].startswith(f"{variable}: plain http://")
        assert "ROTATOR_ALLOW_INSECURE_HTTP=true" in found[0]
        settings = from_env(env(**{variable: url, "ROTATOR_ALLOW_INSECURE_HTTP": "true"}))
        assert settings.allow_insecure_http is True


@pytest.mark.parametrize(
    ("accounts", "words"),
    [
        (".=sa-1", "'.' or '..'"),
        ("..=sa-1", "'.' or '..'"),
        ("a=sa-1,a:x=sa-2", "must not contain ':'"),
        ("alpha=sa-1,beta=sa-1", "repeats the service-account hash of 'alpha'"),
    ],
)
def test_ambiguous_account_names_and_repeated_hashes_are_refused(accounts: str, words: str) -> None:
    """Names that are not a safe path segment or could claim another account's key titles,
    and one service account under two names, are each one clear line."""
    found = problems_of(env(ROTATOR_ACCOUNTS=accounts))
    assert len(found) == 1 and found[0].startswith("ROTATOR_ACCOUNTS:") and words in found[0]


def test_instance_is_derived_from_where_the_state_lives_unless_set() -> None:
    """Unset, ROTATOR_INSTANCE is a hash of Vault's host:port, namespace, mount and prefix:
    the same for every replica and restart, different for another Vault, namespace or prefix.
    Set, it is used as is; a value that could break a key title is one problem line."""
    base = from_env(env()).instance
    assert base == from_env(env()).instance and base.startswith("v") and len(base) == 11
    others = {
        from_env(env(ROTATOR_VAULT_PREFIX="staging")).instance,
        from_env(env(ROTATOR_VAULT_MOUNT="kv")).instance,
        from_env(env(VAULT_NAMESPACE="team-b")).instance,
        from_env(env(VAULT_ADDR="https://vault.staging.example:8200")).instance,
    }
    assert base not in others and len(others) == 4
    assert from_env(env(ROTATOR_INSTANCE="prod-eu")).instance == "prod-eu"
    for bad in ("a:b", "x" * 33, "two words"):
        problems = problems_of(env(ROTATOR_INSTANCE=bad))
        assert len(problems) == 1 and problems[0].startswith("ROTATOR_INSTANCE: "), problems

"""The inventory loader: YAML in, frozen Inventory out, one-line errors with file:line: key.path."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fanout.errors import InventoryError
from fanout.inventory import load_inventory
from fanout.model import (
    DEFAULT_STEPS,
    Host,
    Inventory,
    OnFailure,
    Settings,
    StepKind,
    format_duration,
    parse_duration,
    select_hosts,
)
from fanout.steps import BUILTIN_STEPS

EXAMPLE = Path(__file__).resolve().parents[2] / "inventory.example.yaml"
HOME = "/u01/app/oracle/product/19.0.0/dbhome_1"


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # so errors read "nightly.yaml:…", the path as given


def _load(text: str) -> tuple[Host, ...]:
    return _load_inventory(text).hosts


def _load_inventory(text: str) -> Inventory:
    path = Path("nightly.yaml")
    path.write_text(text)
    return load_inventory(path)


def _error(text: str) -> str:
    with pytest.raises(InventoryError) as info:
        _load(text)
    return str(info.value)


def _host(
    *extra: str,
    name: str = "erp-prod",
    address: str = "db1.example.com",
    priority: str = "1",
    sid: str = "ERP",
) -> str:
    """One host on lines 2-6; each ``extra`` key goes on line 7, 8, …"""
    lines = [
        "hosts:",
        f"  - name: {name}",
        f"    address: {address}",
        f"    priority: {priority}",
        f"    oracle_sid: {sid}",
        f"    oracle_home: {HOME}",
        *(f"    {line}" for line in extra),
    ]
    return "\n".join(lines) + "\n"


# --- loading what is valid ---------------------------------------------------------


def test_example_inventory_loads() -> None:
    """inventory.example.yaml loads cleanly, hosts in priority order with ties in file order."""
    inventory = load_inventory(EXAMPLE)
    names = [host.name for host in inventory.hosts]
    assert names == ["erp-prod", "crm-prod", "billing-prod", "hr-prod", "dwh", "test-db"]
    assert "COMPRESSED" in inventory.steps["full"].body
    assert inventory.steps["precheck"].kind is StepKind.SHELL
    assert inventory.steps["precheck"].on_failure is OnFailure.STOP


def test_minimal_host_gets_the_dataclass_defaults() -> None:
    """A host with only the required keys gets Host's defaults; the steps are the built-ins."""
    inventory = _load_inventory(_host())
    assert inventory.hosts == (Host("erp-prod", "db1.example.com", 1, "ERP", HOME),)
    assert inventory.settings == Settings()
    assert dict(inventory.steps) == dict(BUILTIN_STEPS)
    assert inventory.hosts[0].steps == DEFAULT_STEPS


def test_path_is_kept_as_given_and_sha256_is_of_the_bytes() -> None:
    """Inventory.path is the path as given and sha256 the hex digest of the file's bytes."""
    inventory = _load_inventory(_host())
    assert inventory.path == Path("nightly.yaml")
    assert inventory.sha256 == hashlib.sha256(Path("nightly.yaml").read_bytes()).hexdigest()


def test_priority_orders_hosts_and_ties_keep_file_order() -> None:
    """Hosts are sorted by priority; equal priorities keep their order in the file."""
    text = "hosts:\n" + "".join(
        f"  - {{name: {name}, address: {name}.example.com, priority: {priority},"
        f" oracle_sid: DB, oracle_home: /oh}}\n"
        for name, priority in [("c", 3), ("a1", 1), ("b", 2), ("a2", 1), ("a3", 1)]
    )
    hosts = _load(text)
    assert [(host.name, host.index) for host in hosts] == [
        ("a1", 1),
        ("a2", 3),
        ("a3", 4),
        ("b", 2),
        ("c", 0),
    ]


def test_defaults_are_inherited_and_a_host_overrides_them() -> None:
    """Every host inherits defaults; its own keys win, and its tags replace the defaults' tags."""
    text = f"""\
defaults:
  user: oracle
  port: 2222
  oracle_home: {HOME}
  identity_file: ~/.ssh/id_ed25519
  step_timeout: 4h
  retries: 1
  tags: [prod]
hosts:
  - {{name: a, address: a.example.com, priority: 1, oracle_sid: A}}
  - {{name: b, address: b.example.com, priority: 1, oracle_sid: B, port: 22, tags: [dr]}}
  - {{name: c, address: c.example.com, priority: 1, oracle_sid: C, tags: [], oracle_home: /oh}}
"""
    a, b, c = _load(text)
    assert (a.user, a.port, a.oracle_home, a.step_timeout, a.retries) == (
        "oracle",
        2222,
        HOME,
        14400,
        1,
    )
    assert a.identity_file == Path.home() / ".ssh" / "id_ed25519"
    assert a.tags == ("prod",)
    assert (b.port, b.tags, b.user) == (22, ("dr",), "oracle")
    assert (c.tags, c.oracle_home) == ((), "/oh")


def test_settings_are_read() -> None:
    """settings: limits, cancel_grace (0 allowed) and state_dir with ~ expanded."""
    text = (
        "settings:\n  max_parallel: 3\n  cancel_grace: 0\n  state_dir: ~/fo\n  max_connecting: 5\n"
    )
    settings = _load_inventory(text + _host()).settings
    assert settings == Settings(3, 0.0, Path.home() / "fo", 5)


def test_empty_optional_sections_are_ignored() -> None:
    """settings:, defaults: and steps: with every child commented out mean nothing set."""
    inventory = _load_inventory("settings:\ndefaults:\nsteps:\n" + _host())
    assert inventory.settings == Settings()
    assert inventory.hosts[0].user is None


def test_steps_override_a_builtin_and_define_a_custom_step() -> None:
    """A built-in keeps what is not overridden; a custom shell step can be named by hosts."""
    text = """\
steps:
  full:
    retries: 2
  precheck:
    shell: "test -d ${FRA}"
    on_failure: stop
    timeout: 5m
""" + _host("steps: [precheck, full]")
    inventory = _load_inventory(text)
    full = inventory.steps["full"]
    assert (full.body, full.kind, full.retries) == (BUILTIN_STEPS["full"].body, StepKind.RMAN, 2)
    precheck = inventory.steps["precheck"]
    assert (precheck.kind, precheck.body) == (StepKind.SHELL, "test -d ${FRA}")  # not expanded
    assert (precheck.on_failure, precheck.timeout, precheck.retries) == (
        OnFailure.STOP,
        300.0,
        None,
    )
    assert inventory.hosts[0].steps == ("precheck", "full")


def test_empty_ok_is_read_per_step() -> None:
    """`empty_ok: true` is kept on its step; steps that leave it out keep the default False."""
    inventory = _load_inventory("steps:\n  archivelog:\n    empty_ok: true\n" + _host())
    assert inventory.steps["archivelog"].empty_ok is True
    assert inventory.steps["archivelog"].body == BUILTIN_STEPS["archivelog"].body
    assert inventory.steps["full"].empty_ok is False
    no = _load_inventory("steps:\n  archivelog:\n    empty_ok: False\n" + _host())
    assert no.steps["archivelog"].empty_ok is False


def test_scalars_are_read_as_written() -> None:
    """YAML 1.1 booleans and numbers in string places stay as written: tags [no, on], name 0123."""
    (host,) = _load(_host("tags: [no, on]", name="0123", address="10.0.0.1"))
    assert (host.name, host.address, host.tags) == ("0123", "10.0.0.1", ("no", "on"))


def test_environment_references_are_expanded(monkeypatch: pytest.MonkeyPatch) -> None:
    """${VAR} in a string value is the environment variable; $$ is a literal $."""
    monkeypatch.setenv("DB_HOST", "db9.example.com")
    monkeypatch.setenv("ORACLE_BASE", "/u01/app/oracle")
    text = _host(address="${DB_HOST}", sid="A$$B").replace(HOME, "${ORACLE_BASE}/19c")
    (host,) = _load(text)
    assert (host.address, host.oracle_sid, host.oracle_home) == (
        "db9.example.com",
        "A$B",
        "/u01/app/oracle/19c",
    )


# --- rejecting what is not ------------------------------------------------------------

_TWO_HOSTS = f"""\
hosts:
  - {{name: erp-prod, address: db1.example.com, priority: 1, oracle_sid: ERP, oracle_home: {HOME}}}
  - {{name: %s, address: %s, priority: 2, oracle_sid: %s, oracle_home: {HOME}}}
"""

ERRORS = [
    pytest.param(
        _host(priority="high"),
        "nightly.yaml:4: hosts[0].priority: expected a positive integer, got 'high'",
        id="priority-word",
    ),
    pytest.param(
        _host(priority="yes"),
        "nightly.yaml:4: hosts[0].priority: expected a positive integer, got 'yes'",
        id="priority-yaml-bool",
    ),
    pytest.param(
        _host(priority="0"),
        "nightly.yaml:4: hosts[0].priority: expected a positive integer, got '0'",
        id="priority-zero",
    ),
    pytest.param(
        _host(priority='"1"'),
        "nightly.yaml:4: hosts[0].priority: expected a positive integer, got the string '1'",
        id="priority-quoted",
    ),
    pytest.param(
        _host(priority="0x10"),
        "nightly.yaml:4: hosts[0].priority: expected a positive integer, got '0x10'",
        id="priority-hex",
    ),
    pytest.param(
        _host("retries: 1.5"),
        "nightly.yaml:7: hosts[0].retries: expected an integer from 0 to 100, got '1.5'",
        id="retries-float",
    ),
    pytest.param(
        _host("connect_retries: -1"),
        "nightly.yaml:7: hosts[0].connect_retries: expected an integer from 0 to 100, got '-1'",
        id="connect-retries-negative",
    ),
    pytest.param(
        _host("port: 70000"),
        "nightly.yaml:7: hosts[0].port: expected a port number (1-65535), got '70000'",
        id="port-range",
    ),
    pytest.param(
        "settings:\n  max_parallel: 0\n" + _host(),
        "nightly.yaml:2: settings.max_parallel: expected an integer from 1 to 10000, got '0'",
        id="max-parallel-zero",
    ),
    pytest.param(
        "settings:\n  max_connecting: true\n" + _host(),
        "nightly.yaml:2: settings.max_connecting: expected an integer from 1 to 10000, got 'true'",
        id="max-connecting-bool",
    ),
    pytest.param(
        _host().replace("priority:", "priorty:"),
        "nightly.yaml:4: hosts[0]: unknown key 'priorty' (did you mean 'priority'?)",
        id="unknown-host-key",
    ),
    pytest.param(
        _host().replace("hosts:", "host:"),
        "nightly.yaml:1: unknown key 'host' (did you mean 'hosts'?)",
        id="unknown-top-key",
    ),
    pytest.param(
        "defaults:\n  usr: oracle\n" + _host(),
        "nightly.yaml:2: defaults: unknown key 'usr' (did you mean 'user'?)",
        id="unknown-defaults-key",
    ),
    pytest.param(
        "settings:\n  flavour: auto\n" + _host(),
        "nightly.yaml:2: settings: unknown key 'flavour'",
        id="unknown-key-no-hint",
    ),
    pytest.param(
        _host().replace("    oracle_sid: ERP\n", ""),
        "nightly.yaml:2: hosts[0]: missing required key 'oracle_sid'",
        id="missing-key",
    ),
    pytest.param(
        "settings: {}\n",
        "nightly.yaml:1: missing required key 'hosts'",
        id="missing-hosts",
    ),
    pytest.param(
        "hosts: []\n",
        "nightly.yaml:1: hosts: expected a non-empty list, got an empty list",
        id="no-hosts",
    ),
    pytest.param(
        "hosts:\n  - erp-prod\n",
        "nightly.yaml:2: hosts[0]: expected a mapping, got 'erp-prod'",
        id="host-not-mapping",
    ),
    pytest.param(
        _host("priority: 2"),
        "nightly.yaml:7: hosts[0]: duplicate key 'priority' (first on line 4)",
        id="duplicate-key",
    ),
    pytest.param(
        _TWO_HOSTS % ("erp-prod", "db2.example.com", "CRM"),
        "nightly.yaml:3: hosts[1].name: duplicate host name 'erp-prod' (first on line 2)",
        id="duplicate-host",
    ),
    pytest.param(
        _TWO_HOSTS % ("erp-again", "DB1.example.com", "ERP"),
        "nightly.yaml:3: hosts[1].oracle_sid: ERP on DB1.example.com is already backed up by host"
        " 'erp-prod' (two backups of one database would wait on each other)",
        id="same-database",
    ),
    pytest.param(
        "hosts:\n  - name: [unclosed\n",
        "nightly.yaml:2: invalid YAML: while parsing a flow sequence:"
        " expected ',' or ']', but got '<stream end>'",
        id="yaml-syntax",
    ),
    pytest.param(
        "settings: 1\n  max_parallel: 2\n",
        "nightly.yaml:2: invalid YAML: mapping values are not allowed here",
        id="yaml-indent",
    ),
    pytest.param(
        "- name: erp-prod\n",
        "nightly.yaml:1: expected a mapping with 'hosts' at the top, got a list",
        id="top-level-list",
    ),
    pytest.param(
        "# nothing yet\n",
        "nightly.yaml: the file is empty (expected a mapping with 'hosts')",
        id="empty-file",
    ),
    pytest.param(
        _host("steps: [full, fulll]"),
        "nightly.yaml:7: hosts[0].steps[1]: unknown step 'fulll' (did you mean 'full'?)",
        id="unknown-step-hint",
    ),
    pytest.param(
        _host("steps: [incremental]"),
        "nightly.yaml:7: hosts[0].steps[0]: unknown step 'incremental'"
        " (known: archivelog, backup, controlfile, full)",
        id="unknown-step",
    ),
    pytest.param(
        "defaults:\n  steps: [full, full]\n" + _host(),
        "nightly.yaml:2: defaults.steps[1]: duplicate step 'full'",
        id="duplicate-step",
    ),
    pytest.param(
        _host("steps: []"),
        "nightly.yaml:7: hosts[0].steps: expected at least one step",
        id="no-steps",
    ),
    pytest.param(
        _host(sid="ERP-1"),
        "nightly.yaml:5: hosts[0].oracle_sid: expected an ORACLE_SID like ORCL or PROD_1,"
        " got 'ERP-1'",
        id="sid",
    ),
    pytest.param(
        _host(name="erp/prod"),
        "nightly.yaml:2: hosts[0].name: expected a host name of letters, digits, '.', '_', '-',"
        " got 'erp/prod'",
        id="host-name",
    ),
    pytest.param(
        _host(address='"db1; reboot"'),
        "nightly.yaml:3: hosts[0].address: expected a hostname, IP address or ssh alias,"
        " got 'db1; reboot'",
        id="address-shell",
    ),
    pytest.param(
        _host(address="-oProxyCommand=sh"),
        "nightly.yaml:3: hosts[0].address: expected a hostname, IP address or ssh alias,"
        " got '-oProxyCommand=sh'",
        id="address-option",
    ),
    pytest.param(
        _host("user: root$(id)"),
        "nightly.yaml:7: hosts[0].user: expected a POSIX user name, got 'root$(id)'",
        id="user",
    ),
    pytest.param(
        _host('tags: ["prod env"]'),
        "nightly.yaml:7: hosts[0].tags[0]: expected a tag of letters, digits, '.', '_', '-',"
        " got 'prod env'",
        id="tag",
    ),
    pytest.param(
        _host("tags: prod"),
        "nightly.yaml:7: hosts[0].tags: expected a list, got 'prod'",
        id="tags-not-list",
    ),
    pytest.param(
        _host().replace(HOME, "u01/app/oracle"),
        "nightly.yaml:6: hosts[0].oracle_home: expected an absolute path on the database host,"
        " got 'u01/app/oracle'",
        id="oracle-home-relative",
    ),
    pytest.param(
        _host('oracle_home: "/u01/app\\n/x"').replace(f"    oracle_home: {HOME}\n", ""),
        "nightly.yaml:6: hosts[0].oracle_home: contains a control character: '/u01/app\\n/x'",
        id="oracle-home-newline",
    ),
    pytest.param(
        _host("identity_file: id_ed25519"),
        "nightly.yaml:7: hosts[0].identity_file: expected an absolute path (or ~/...),"
        " got 'id_ed25519'",
        id="identity-relative",
    ),
    pytest.param(
        _host("step_timeout: 0s"),
        "nightly.yaml:7: hosts[0].step_timeout: expected a positive duration, got '0s'",
        id="timeout-zero",
    ),
    pytest.param(
        _host("connect_timeout: soon"),
        "nightly.yaml:7: hosts[0].connect_timeout: expected a duration like 30s, 5m, 6h or 1h30m,"
        " got 'soon'",
        id="duration-word",
    ),
    pytest.param(
        _host(address="${DB1_HOST}"),
        "nightly.yaml:3: hosts[0].address: environment variable 'DB1_HOST' is not set",
        id="env-unset",
    ),
    pytest.param(
        _host(address="db${X"),
        "nightly.yaml:3: hosts[0].address: unterminated '${' (write '$$' for a literal '$')",
        id="env-unterminated",
    ),
    pytest.param(
        "steps:\n  precheck:\n    timeout: 5m\n" + _host(),
        "nightly.yaml:3: steps.precheck: a custom step takes exactly one of 'rman' or 'shell'",
        id="custom-step-no-body",
    ),
    pytest.param(
        "steps:\n  check: {rman: 'X;', shell: 'true'}\n" + _host(),
        "nightly.yaml:2: steps.check: a custom step takes exactly one of 'rman' or 'shell'",
        id="custom-step-two-bodies",
    ),
    pytest.param(
        "steps:\n  full:\n    shell: 'true'\n" + _host(),
        "nightly.yaml:3: steps.full: unknown key 'shell'",
        id="builtin-to-shell",
    ),
    pytest.param(
        "steps:\n  full:\n    on_failure: halt\n" + _host(),
        "nightly.yaml:3: steps.full.on_failure: expected continue or stop, got 'halt'",
        id="on-failure",
    ),
    pytest.param(
        "steps:\n  archivelog:\n    empty_ok: 'yes'\n" + _host(),
        "nightly.yaml:3: steps.archivelog.empty_ok: expected true or false, got the string 'yes'",
        id="empty-ok",
    ),
    pytest.param(
        "steps:\n  check:\n    shell: ''\n" + _host(),
        "nightly.yaml:3: steps.check.shell: expected commands, got the string ''",
        id="empty-body",
    ),
    pytest.param(
        "defaults: &d\n  port: 22\nhosts:\n  - <<: *d\n    name: a\n",
        "nightly.yaml:4: hosts[0]: YAML merge keys ('<<') are not supported",
        id="merge-key",
    ),
]


@pytest.mark.parametrize(("text", "message"), ERRORS)
def test_invalid_inventory_fails_with_one_exact_line(text: str, message: str) -> None:
    """An invalid inventory raises InventoryError: exactly file:line: key.path: what."""
    assert _error(text) == message


def test_missing_file_has_no_line() -> None:
    """An unreadable file is an InventoryError naming the path as given, with line None."""
    with pytest.raises(InventoryError) as info:
        load_inventory(Path("missing.yaml"))
    assert (info.value.line, str(info.value)) == (
        None,
        "missing.yaml: cannot read: No such file or directory",
    )


def test_invalid_utf8_names_its_line() -> None:
    """Bytes that are not UTF-8 are reported on their line."""
    Path("nightly.yaml").write_bytes(_host().encode() + b"    user: or\xe1cle\n")
    with pytest.raises(InventoryError) as info:
        load_inventory(Path("nightly.yaml"))
    assert str(info.value) == "nightly.yaml:7: not valid UTF-8"


def test_absolute_path_is_kept_in_errors(tmp_path: Path) -> None:
    """The error names the file exactly as it was given, absolute here."""
    path = tmp_path / "nightly.yaml"
    path.write_text(_host(priority="high"))
    with pytest.raises(InventoryError, match=rf"^{path}:4: hosts\[0\]\.priority: "):
        load_inventory(path)


# --- durations ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("6h", 21600),
        ("1h30m", 5400),
        ("2d", 172800),
        ("1d2h3m4s", 93784),
        ("0.5s", 0.5),
        ("90", 90),
        ("1.5", 1.5),
        ("0s", 0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    """Durations combine d/h/m/s in descending order; a bare number is seconds."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "1.5h", "30m1h", "1h 30m", "-5s", "5S", "1h1h", "s"])
def test_parse_duration_rejects(text: str) -> None:
    """Anything else is a ValueError quoting the text."""
    with pytest.raises(ValueError, match="expected a duration like 30s"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (21600, "6h"),
        (5400, "1h30m"),
        (0.5, "0.5s"),
        (0, "0s"),
        (61, "1m1s"),
        (90061.25, "1d1h1m1.25s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    """format_duration writes the shortest form parse_duration reads back."""
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [-1, float("nan"), float("inf")])
def test_format_duration_rejects(seconds: float) -> None:
    """Negative and non-finite durations are a ValueError."""
    with pytest.raises(ValueError, match="non-negative"):
        format_duration(seconds)


@given(st.integers(min_value=0, max_value=30 * 86400 * 1000))
def test_duration_round_trip(millis: int) -> None:
    """Any whole number of milliseconds survives format_duration then parse_duration."""
    seconds = millis / 1000
    assert parse_duration(format_duration(seconds)) == seconds


# --- select_hosts ----------------------------------------------------------------------


def _fleet() -> tuple[Host, ...]:
    return (
        Host("erp-prod", "a", 1, "ERP", "/oh", tags=("prod", "erp")),
        Host("crm-prod", "b", 1, "CRM", "/oh", tags=("prod",)),
        Host("erp-test", "c", 2, "ERPT", "/oh", tags=("test", "erp")),
        Host("dwh", "d", 3, "DWH", "/oh"),
    )


def _names(hosts: tuple[Host, ...]) -> list[str]:
    return [host.name for host in hosts]


def test_select_without_filters_keeps_every_host() -> None:
    """Empty limit and tags select every host, in order."""
    assert _names(select_hosts(_fleet(), [], [])) == ["erp-prod", "crm-prod", "erp-test", "dwh"]


def test_select_limit_globs_are_ored() -> None:
    """A host matches if any limit glob matches its name; order is preserved."""
    assert _names(select_hosts(_fleet(), ["dwh", "erp-*"], [])) == ["erp-prod", "erp-test", "dwh"]
    assert select_hosts(_fleet(), ["ERP-*"], []) == ()  # case-sensitive


def test_select_tags_match_any() -> None:
    """A host matches if it carries any of the given tags."""
    assert _names(select_hosts(_fleet(), [], ["test", "erp"])) == ["erp-prod", "erp-test"]


def test_select_limit_and_tags_are_anded() -> None:
    """limit and tags narrow each other."""
    assert _names(select_hosts(_fleet(), ["*-prod"], ["erp"])) == ["erp-prod"]


# --- capacity groups and the backup window -------------------------------------------


def test_groups_window_and_duration_load() -> None:
    """`groups:` with max_parallel, `group:` as one name or a list, window_end with or without
    a zone, hard_deadline, and an RMAN step opting in to DURATION."""
    text = (
        "settings: {window_end: '06:00 Europe/Paris', hard_deadline: true}\n"
        "groups:\n  nfs1: {max_parallel: 2}\n  vmhost: {max_parallel: 1}\n"
        "steps:\n  full: {window_duration: true}\n"
        + _host("group: nfs1")
        + "  - {name: b, address: b, priority: 1, oracle_sid: B, oracle_home: /oh,"
        " group: [nfs1, vmhost]}\n"
    )
    inventory = _load_inventory(text)
    assert {g.name: g.max_parallel for g in inventory.groups.values()} == {"nfs1": 2, "vmhost": 1}
    assert [h.groups for h in inventory.hosts] == [("nfs1",), ("nfs1", "vmhost")]
    window = inventory.settings.window_end
    assert window is not None
    assert (window.hour, window.minute, window.zone, window.label) == (
        6,
        0,
        "Europe/Paris",
        "06:00 Europe/Paris",
    )
    assert inventory.settings.hard_deadline is True
    assert inventory.steps["full"].window_duration is True
    assert inventory.steps["archivelog"].window_duration is False


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "groups: {nfs1: {max_parallel: 2}}\n" + _host("group: nfs2"),
            "nightly.yaml:8: hosts[0].group: unknown group 'nfs2' (did you mean 'nfs1'?)",
        ),
        (
            _host("group: nfs"),
            "nightly.yaml:7: hosts[0].group: unknown group 'nfs' (define it under 'groups:')",
        ),
        (
            "groups: {nfs1: {max_parallel: 0}}\n" + _host(),
            "nightly.yaml:1: groups.nfs1.max_parallel: expected a positive integer, got '0'",
        ),
        (
            "groups: {nfs1: {}}\n" + _host(),
            "nightly.yaml:1: groups.nfs1: missing required key 'max_parallel'",
        ),
        (
            "settings: {window_end: '25:00'}\n" + _host(),
            "nightly.yaml:1: settings.window_end: expected a time of day like 06:00 or"
            " '06:00 Europe/Paris', got '25:00'",
        ),
        (
            "settings: {window_end: '06:00 Mars/Olympus'}\n" + _host(),
            "nightly.yaml:1: settings.window_end: unknown time zone 'Mars/Olympus'"
            " (expected an IANA name like Europe/Paris or UTC)",
        ),
        (
            "settings: {hard_deadline: 'yes please'}\n" + _host(),
            "nightly.yaml:1: settings.hard_deadline: expected true or false,"
            " got the string 'yes please'",
        ),
        (
            "steps:\n  full:\n    rman: |\n      BACKUP DATABASE PLUS ARCHIVELOG;\n"
            "    window_duration: true\n" + _host(),
            "nightly.yaml:5: steps.full.window_duration: RMAN cannot combine DURATION with"
            " PLUS ARCHIVELOG (line 1 of the script); back up the archive logs in a step"
            " of their own",
        ),
        (
            "steps:\n  check: {shell: 'true', window_duration: true}\n" + _host(),
            "nightly.yaml:2: steps.check.window_duration: only an RMAN step can take DURATION",
        ),
    ],
)
def test_group_and_window_errors_name_file_line_and_key(text: str, expected: str) -> None:
    """Bad groups, window and DURATION settings are one line with file, line and key path."""
    assert _error(text) == expected


@pytest.mark.parametrize("name", ["inventory.example.yaml", "docs/example-fleet.yaml"])
def test_libyaml_and_pure_python_loaders_read_the_same_inventory(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast libyaml path yields exactly the inventory the pure-Python loader does."""
    import yaml

    path = Path(__file__).resolve().parents[2] / name
    fast = load_inventory(path)
    monkeypatch.delattr(yaml, "CSafeLoader", raising=False)
    assert load_inventory(path) == fast

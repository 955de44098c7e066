"""Fleet keys of the inventory (catalog, configure, requires, when, level policy, oratab) and how
steps render with them: exact scripts, one-line errors that name the step and never echo a
password."""

from __future__ import annotations

from pathlib import Path

import pytest

from fanout.errors import InventoryError
from fanout.inventory import load_inventory
from fanout.model import Inventory, LevelPolicy
from fanout.policy import LevelChoice
from fanout.steps import render_host

HOST = """\
hosts:
  - name: erp
    address: db1
    priority: 1
    oracle_sid: ERP
"""


def load_inventory_text(tmp_path: Path, text: str) -> Inventory:
    path = tmp_path / "nightly.yaml"
    path.write_text(text)
    return load_inventory(path)


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(InventoryError) as info:
        load_inventory_text(tmp_path, text)
    message = str(info.value)
    assert "\n" not in message
    return message.replace(str(tmp_path) + "/", "")


def test_oracle_home_may_be_left_to_oratab(tmp_path: Path) -> None:
    """Without oracle_home a host loads with None (resolved remotely), oratab if given."""
    inv = load_inventory_text(tmp_path, "defaults:\n  oratab: /srv/oratab\n" + HOST)
    (host,) = inv.hosts
    assert (host.oracle_home, host.oratab) == (None, "/srv/oratab")


def test_catalog_password_refused_and_never_echoed(tmp_path: Path) -> None:
    """A catalog with a user and password is refused at load; the message never shows it."""
    for value in ("rco/Secr3t@rcat", "rco@rcat", "/Secr3t@rcat", "rco/Secr3t"):
        message = error(tmp_path, f"defaults:\n  catalog: {value}\n" + HOST)
        assert message == (
            "nightly.yaml:2: defaults.catalog: expected /@TNS_ALIAS (no user, no password); "
            "put catalog credentials in an Oracle wallet and write catalog: /@TNS_ALIAS"
        )
        assert "Secr3t" not in message
        assert "rco" not in message


def test_connect_in_a_step_refused_naming_step_and_line(tmp_path: Path) -> None:
    """CONNECT CATALOG user/password in a step body: refused at its line, password not shown."""
    text = (
        "steps:\n"
        "  nightly:\n"
        "    rman: |\n"
        "      BACKUP INCREMENTAL LEVEL 1 DATABASE;\n"
        "      connect catalog rco/Secr3t@rcat;\n"
        + HOST.replace("ERP\n", "ERP\n    steps: [nightly]\n")
    )
    message = error(tmp_path, text)
    assert message == (
        "nightly.yaml:5: steps.nightly.rman: CONNECT is not allowed in a step: put catalog "
        "credentials in an Oracle wallet and write catalog: /@TNS_ALIAS (defaults or host)"
    )


@pytest.mark.parametrize(
    ("body", "what"),
    [
        (
            "CONFIGURE RETENTION POLICY TO REDUNDANCY 2;",
            "CONFIGURE is not allowed inside RUN: move it to the step's configure: list",
        ),
        (
            "LIST BACKUP SUMMARY;",
            "LIST is not allowed inside RUN (RMAN accepts it only at its prompt)",
        ),
        ("} RUN { BACKUP DATABASE;", "'}' is not allowed: fanout writes the RUN { } block itself"),
    ],
)
def test_commands_rman_refuses_inside_run(tmp_path: Path, body: str, what: str) -> None:
    """Commands RMAN accepts only at its prompt are refused at load, naming the step."""
    text = f'steps:\n  custom:\n    rman: "{body}"\n' + HOST
    assert error(tmp_path, text) == f"nightly.yaml:3: steps.custom.rman: {what}"


def test_quoted_and_commented_words_are_not_commands(tmp_path: Path) -> None:
    """A tag or a comment that says CONNECT is not a CONNECT command."""
    text = (
        "steps:\n  custom:\n    rman: |\n"
        "      # connect catalog is done by fanout\n"
        "      BACKUP DATABASE TAG 'CONNECT';\n" + HOST
    )
    inv = load_inventory_text(tmp_path, text)
    assert "CONNECT" in inv.steps["custom"].body


def test_configure_list_validated(tmp_path: Path) -> None:
    """configure: takes CONFIGURE commands only, one per item, and only on RMAN steps."""
    base = "steps:\n  backup:\n    configure:\n"
    assert error(tmp_path, base + "      - BACKUP DATABASE\n" + HOST) == (
        "nightly.yaml:4: steps.backup.configure[0]: expected one CONFIGURE command, got BACKUP"
    )
    assert error(tmp_path, base + "      - CONNECT CATALOG a/b@c\n" + HOST).endswith(
        "configure[0]: expected a CONFIGURE command; put catalog credentials in an Oracle "
        "wallet and write catalog: /@TNS_ALIAS"
    )
    shell = (
        "steps:\n  check:\n    shell: 'true'\n    configure: [CONFIGURE BACKUP OPTIMIZATION ON]\n"
    )
    assert error(tmp_path, shell + HOST) == (
        "nightly.yaml:4: steps.check.configure: only an RMAN step takes this key"
    )


def test_requires_must_name_an_earlier_step(tmp_path: Path) -> None:
    """requires names a known step that runs on the host before the step requiring it."""
    steps = "steps:\n  obsolete:\n    rman: DELETE NOPROMPT OBSOLETE;\n    requires: [{}]\n"
    assert error(tmp_path, steps.format("bakup") + HOST) == (
        "nightly.yaml:4: steps.obsolete.requires[0]: unknown step 'bakup' (did you mean 'backup'?)"
    )
    late = HOST + "    steps: [obsolete, backup]\n"
    assert error(tmp_path, steps.format("backup") + late) == (
        "nightly.yaml:10: hosts[0].steps: step 'obsolete' requires 'backup', which comes after it"
    )
    missing = HOST + "    steps: [full, obsolete]\n"
    assert error(tmp_path, steps.format("backup") + missing) == (
        "nightly.yaml:10: hosts[0].steps: step 'obsolete' requires 'backup', "
        "which is not in its steps"
    )


def test_level_policy_keys(tmp_path: Path) -> None:
    """level0_every / level0_on / cumulative configure the backup step; bad values are errors."""
    good = (
        "steps:\n  backup:\n    level0_every: ~\n    level0_on: [sun, wed]\n    cumulative: yes\n"
    )
    inv = load_inventory_text(tmp_path, good + HOST)
    assert inv.steps["backup"].levels == LevelPolicy(None, frozenset({6, 2}), cumulative=True)
    bad_day = "steps:\n  backup:\n    level0_on: [sunday, funday]\n"
    assert error(tmp_path, bad_day + HOST) == (
        "nightly.yaml:3: steps.backup.level0_on[1]: expected a weekday (mon … sun), got 'funday'"
    )
    no_level = "steps:\n  backup:\n    rman: BACKUP DATABASE;\n"
    assert error(tmp_path, no_level + HOST) == (
        "nightly.yaml:3: steps.backup.rman: expected commands containing {level} "
        "(the level policy writes 0 or 1)"
    )
    on_shell = "steps:\n  check:\n    shell: 'true'\n    cumulative: true\n"
    assert error(tmp_path, on_shell + HOST) == (
        "nightly.yaml:4: steps.check.cumulative: only an RMAN step takes this key"
    )


def test_script_with_catalog_configure_and_level(tmp_path: Path) -> None:
    """CONNECT CATALOG and CONFIGURE go before RUN; the level and CUMULATIVE fill the template."""
    text = (
        "defaults:\n  oracle_home: /u01/h\n  catalog: /@RCAT\n"
        "steps:\n  backup:\n    cumulative: true\n"
        "    configure:\n      - configure retention policy to recovery window of 14 days;\n"
        + HOST
        + "    steps: [backup]\n"
    )
    inv = load_inventory_text(tmp_path, text)
    (host,) = inv.hosts
    choice = LevelChoice(1, "last level 0 2026-11-29 (2d ago)", cumulative=True)
    (step,) = render_host(inv, host, "r1", levels={"backup": choice})
    assert step.stdin == (
        "CONNECT CATALOG /@RCAT;\n"
        "configure retention policy to recovery window of 14 days;\n"
        "RUN {\n"
        "  SET COMMAND ID TO 'fanout-r1';\n"
        "  BACKUP INCREMENTAL LEVEL 1 CUMULATIVE DATABASE TAG 'FANOUT_L1';\n"
        "}\n"
        "EXIT;\n"
    )
    assert (step.level, step.detail) == (1, "level 1 cumulative: last level 0 2026-11-29 (2d ago)")
    assert "RCAT" not in step.command  # no probe: the catalog is required
    (level0,) = render_host(inv, host, "r1", levels={"backup": LevelChoice(0, "x", True)})
    assert "LEVEL 0 DATABASE TAG 'FANOUT_L0'" in (level0.stdin or "")


def test_optional_catalog_probes_first(tmp_path: Path) -> None:
    """catalog_optional: the command tries the catalog and drops the CONNECT line if it fails."""
    text = "defaults:\n  oracle_home: /u01/h\n  catalog: /@RCAT\n  catalog_optional: true\n" + HOST
    inv = load_inventory_text(tmp_path, text)
    (step, *_) = render_host(inv, inv.hosts[0], "r1")
    assert (
        "if ! printf 'CONNECT CATALOG %s;\\nEXIT;\\n' /@RCAT | \"$ORACLE_HOME/bin/rman\" "
        ">/dev/null 2>&1; then printf 'fanout: warning: recovery catalog %s unreachable: "
        'ran NOCATALOG\\n\' /@RCAT; IFS= read -r _; fi; "$ORACLE_HOME/bin/rman" target /'
    ) in step.command
    assert (step.stdin or "").startswith("CONNECT CATALOG /@RCAT;\nRUN {\n")


def test_when_renders_with_the_environment(tmp_path: Path) -> None:
    """A step's when: becomes a command with the same environment prologue, text as written."""
    text = (
        "defaults:\n  oracle_home: /u01/h\n"
        "steps:\n  archivelog:\n    when: '[ \"$(cat /etc/role)\" = ${ROLE:-x} ]'\n" + HOST
    )
    inv = load_inventory_text(tmp_path, text)
    steps = {s.name: s for s in render_host(inv, inv.hosts[0], "r1")}
    assert steps["full"].when is None
    assert steps["archivelog"].when == (
        "ORACLE_SID=ERP; ORACLE_HOME=/u01/h; NLS_LANG=AMERICAN_AMERICA.AL32UTF8; "
        "NLS_DATE_FORMAT='YYYY-MM-DD HH24:MI:SS'; export ORACLE_SID ORACLE_HOME NLS_LANG "
        'NLS_DATE_FORMAT; unset TWO_TASK; [ "$(cat /etc/role)" = ${ROLE:-x} ]'
    )

"""ORACLE_HOME from oratab: the rendered POSIX sh, run for real by /bin/sh against oratab files
shaped like the ones on real hosts (comments, blank lines, +ASM, duplicates, CRLF)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import fanout.steps
from fanout.model import Host
from fanout.steps import oratab_lookup

SHELLS = [sh for sh in ("/bin/sh", "/bin/dash", "/bin/bash") if os.access(sh, os.X_OK)]

REAL_WORLD = (
    "#\n"
    "# This file is used by ORACLE utilities.  It is created by root.sh\n"
    "# and updated by either Database Configuration Assistant while creating\n"
    "# a database or ASM Configuration Assistant while creating ASM instance.\n"
    "\n"
    "#   $ORACLE_SID:$ORACLE_HOME:<N|Y>:\n"
    "+ASM:/u01/app/19.0.0/grid:N\n"
    "   \n"
    ":/u01/app/oracle/product/empty:N\n"
    "ERP2:/u01/app/oracle/product/12.2.0/dbhome_1:N\n"
    "#ERP:/u01/app/oracle/product/commented:N\n"
    "ERP:/u01/app/oracle/product/19.0.0/dbhome_1:Y          # line added by Agent\n"
    "ERP:/u01/app/oracle/product/18.0.0/dbhome_1:N\n"
    "CRM:/u01/app/oracle/product/19.0.0/dbhome_2\n"
)


def host(sid: str, oratab: str | None, home: str | None = None) -> Host:
    return Host("db", "127.0.0.1", 1, sid, home, oratab=oratab)


def resolve(
    shell: str, sid: str, oratab: Path | None, *, rman: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run the lookup as fanout renders it, with PATH empty (builtins only), then print the home."""
    script = (
        f"ORACLE_SID={sid}; {oratab_lookup(host(sid, str(oratab) if oratab else None), rman=rman)}"
        '; printf "HOME=[%s]\\n" "$ORACLE_HOME"'
    )
    return subprocess.run(
        [shell, "-c", script],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
        env={"PATH": "/nonexistent"},  # any external command would fail: builtins only
    )


@pytest.fixture(params=SHELLS)
def shell(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.parametrize(
    ("sid", "home"),
    [
        ("ERP", "/u01/app/oracle/product/19.0.0/dbhome_1"),  # first of two, comments ignored
        ("ERP2", "/u01/app/oracle/product/12.2.0/dbhome_1"),  # ERP does not match ERP2
        ("CRM", "/u01/app/oracle/product/19.0.0/dbhome_2"),  # two fields only
    ],
)
def test_real_world_oratab_resolves_the_anchored_sid(
    shell: str, tmp_path: Path, sid: str, home: str
) -> None:
    """The first entry whose first field is exactly the SID wins; comments, blanks, +ASM skipped."""
    oratab = tmp_path / "oratab"
    oratab.write_text(REAL_WORLD)
    done = resolve(shell, sid, oratab)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"HOME=[{home}]\n"


def test_windows_line_endings_and_no_final_newline(shell: str, tmp_path: Path) -> None:
    """CRLF lines give the home without the CR; a last line without a newline still counts."""
    oratab = tmp_path / "oratab"
    oratab.write_bytes(b"# copied from a share\r\nCRM:/u01/crm:Y\r\nERP:/u01/erp\r\nDWH:/u01/dwh")
    for sid, home in (("CRM", "/u01/crm"), ("ERP", "/u01/erp"), ("DWH", "/u01/dwh")):
        assert resolve(shell, sid, oratab).stdout == f"HOME=[{home}]\n"


def test_missing_sid_fails_with_the_clear_cause(shell: str, tmp_path: Path) -> None:
    """A SID found only in a comment, as +ASM's home or as a prefix is not there: exit 3."""
    oratab = tmp_path / "oratab"
    oratab.write_text(REAL_WORLD)
    for sid in ("DWH", "ER", "ASM"):
        done = resolve(shell, sid, oratab)
        assert done.returncode == 3
        assert done.stdout == ""
        assert done.stderr == f"fanout: ORACLE_SID {sid} not in {oratab}\n"


def test_empty_home_is_skipped_for_a_later_entry(shell: str, tmp_path: Path) -> None:
    """``ERP::N`` (no home) does not count; a later ERP entry with a home does."""
    oratab = tmp_path / "oratab"
    oratab.write_text("ERP::N\nERP:/u01/erp:N\n")
    assert resolve(shell, "ERP", oratab).stdout == "HOME=[/u01/erp]\n"


def test_default_paths_in_order(
    shell: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without an oratab setting: the first existing of /etc/oratab, /var/opt/oracle/oratab."""
    linux, solaris = tmp_path / "etc-oratab", tmp_path / "var-opt-oracle-oratab"
    monkeypatch.setattr(fanout.steps, "DEFAULT_ORATABS", (str(linux), str(solaris)))
    missing = resolve(shell, "ERP", None)
    assert missing.returncode == 3
    assert missing.stderr == f"fanout: no oratab (looked for {linux}, {solaris})\n"
    solaris.write_text("ERP:/opt/solaris/home:N\n")
    assert resolve(shell, "ERP", None).stdout == "HOME=[/opt/solaris/home]\n"
    linux.write_text("ERP:/u01/linux/home:N\n")
    assert resolve(shell, "ERP", None).stdout == "HOME=[/u01/linux/home]\n"


def test_rman_step_checks_the_binary_and_says_which_home(shell: str, tmp_path: Path) -> None:
    """For an RMAN step: no bin/rman fails with its own cause; found, the home is printed."""
    home = tmp_path / "home"
    (home / "bin").mkdir(parents=True)
    oratab = tmp_path / "oratab"
    oratab.write_text(f"ERP:{home}:N\n")
    done = resolve(shell, "ERP", oratab, rman=True)
    assert (done.returncode, done.stderr) == (3, f"fanout: no rman in {home}/bin\n")
    rman = home / "bin" / "rman"
    shutil.copy("/bin/true", rman)
    done = resolve(shell, "ERP", oratab, rman=True)
    assert done.returncode == 0
    assert done.stdout == f"fanout: ORACLE_HOME {home} (from {oratab})\nHOME=[{home}]\n"


def test_hostile_oratab_path_stays_quoted(shell: str, tmp_path: Path) -> None:
    """An oratab path with quotes, spaces and $(…) is a file name, never shell code."""
    weird = tmp_path / "it's $(touch pwned) `x`"
    weird.mkdir()
    oratab = weird / "oratab"
    oratab.write_text("ERP:/u01/erp:N\n")
    assert resolve(shell, "ERP", oratab).stdout == "HOME=[/u01/erp]\n"
    assert not list(tmp_path.glob("pwned"))
    assert not Path("pwned").exists()


def test_explicit_home_renders_no_lookup() -> None:
    """An explicit oracle_home is used as is: no oratab read, no extra check."""
    explicit = host("ERP", "/etc/oratab", home="/u01/explicit")
    step = fanout.steps.render_step(explicit, fanout.steps.BUILTIN_STEPS["full"], "r1")
    assert "oratab" not in step.command
    assert "ORACLE_HOME=/u01/explicit;" in step.command

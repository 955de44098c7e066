"""`fanout plan` and the CLI's error handling, through typer's runner."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from fanout import __version__
from fanout.cli import app

EXAMPLE = Path(__file__).resolve().parents[2] / "inventory.example.yaml"
runner = CliRunner()


def test_version() -> None:
    """--version prints the package version."""
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"fanout {__version__}"


def test_plan_lists_hosts_in_dispatch_order() -> None:
    """plan prints hosts by priority, file order breaking ties, without connecting."""
    result = runner.invoke(app, ["plan", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines() if line[:1].isdigit()]
    assert [r[2] for r in rows] == [
        "erp-prod",
        "crm-prod",
        "billing-prod",
        "hr-prod",
        "dwh",
        "test-db",
    ]
    assert [int(r[1]) for r in rows] == sorted(int(r[1]) for r in rows)


def test_plan_limit_and_tag_select_hosts() -> None:
    """--limit globs and --tag select hosts; the same options apply to run."""
    result = runner.invoke(app, ["plan", str(EXAMPLE), "--limit", "*-prod", "--tag", "erp"])
    assert result.exit_code == 0, result.output
    assert "1 of 6 hosts" in result.output
    assert "erp-prod" in result.output
    assert "crm-prod" not in result.output


def test_plan_show_scripts_prints_command_and_script() -> None:
    """--show-scripts prints each step's remote command and its RMAN script."""
    result = runner.invoke(app, ["plan", str(EXAMPLE), "-l", "billing-prod", "--show-scripts"])
    assert result.exit_code == 0, result.output
    assert "--- billing-prod / full (rman" in result.output
    assert '"$ORACLE_HOME/bin/rman" target /' in result.output
    assert "SET COMMAND ID TO 'fanout-" in result.output


def test_no_match_is_a_usage_error(tmp_path: Path) -> None:
    """A selection that matches nothing exits 2 with one line naming the file."""
    result = runner.invoke(app, ["plan", str(EXAMPLE), "--limit", "nope*"])
    assert result.exit_code == 2
    assert result.output.strip() == f"fanout: {EXAMPLE}: no host matches --limit nope*"


def test_broken_inventory_is_one_line_exit_2_no_traceback(tmp_path: Path) -> None:
    """An invalid inventory gives file:line: key.path: message on stderr, exit 2, no traceback."""
    bad = tmp_path / "nightly.yaml"
    bad.write_text(
        "defaults:\n  oracle_home: /u01/app/oracle\nhosts:\n"
        "  - name: a\n    address: db1\n    priority: high\n    oracle_sid: ERP\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "fanout", "plan", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert (
        proc.stderr
        == f"fanout: {bad}:6: hosts[0].priority: expected a positive integer, got 'high'\n"
    )


def test_missing_inventory_file() -> None:
    """A missing inventory file is a one-line usage error."""
    proc = subprocess.run(
        [sys.executable, "-m", "fanout", "run", "/nonexistent/x.yaml", "--batch"],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("fanout: /nonexistent/x.yaml: ")
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_help_does_not_import_ssh() -> None:
    """`fanout --help` pays for neither asyncssh nor cluster mode (grpc, the etcd client)."""
    code = (
        "import sys; from fanout.cli import app;"
        "sys.argv=['fanout','--help'];\n"
        "try: app()\nexcept SystemExit: pass\n"
        "heavy = ('asyncssh', 'grpc', 'aetcd', 'fanout.cluster');\n"
        "print([m for m in heavy if m in sys.modules], file=sys.stderr)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert proc.stderr.strip() == "[]"


def test_bare_resume_means_latest_and_never_eats_the_inventory() -> None:
    """`--resume` alone means the latest failed run; a run id after it is taken as its value."""
    from fanout.cli import optional_resume_value

    assert optional_resume_value(["run", "--resume", "n.yaml"]) == [
        "run",
        "--resume",
        "latest",
        "n.yaml",
    ]
    assert optional_resume_value(["run", "n.yaml", "--resume"]) == [
        "run",
        "n.yaml",
        "--resume",
        "latest",
    ]
    rid = "20261123T171435Z-3f9a"
    assert optional_resume_value(["run", "n.yaml", "--resume", rid]) == [
        "run",
        "n.yaml",
        "--resume",
        rid,
    ]
    assert optional_resume_value(["run", "n.yaml"]) == ["run", "n.yaml"]

"""Cost of resolving ORACLE_HOME from oratab in the remote command (not a test; read the numbers).

    python benchmarks/oratab_lookup.py [--runs 500] [--lines 60]

Renders the real prologue of an RMAN step (``steps._environment``) twice, with an explicit
``oracle_home`` and with the oratab lookup, against a generated oratab of ``--lines`` entries
(comments, +ASM, the SID last), and runs each ``--runs`` times under /bin/sh. Prints the mean
wall time per run, the difference (the lookup's own cost), and the processes each one forks,
counted with ``strace -f -e trace=fork,vfork,clone,clone3`` when strace is installed.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from fanout.model import Host
from fanout.steps import _environment


def prologue(home: str | None, oratab: Path, rman_home: Path) -> str:
    host = Host("db", "127.0.0.1", 1, "ERP", home, oratab=str(oratab))
    return _environment(host, rman=True) + "; :"


def mean_seconds(command: str, runs: int) -> float:
    started = time.perf_counter()
    for _ in range(runs):
        subprocess.run(["/bin/sh", "-c", command], check=True, stdout=subprocess.DEVNULL)
    return (time.perf_counter() - started) / runs


def forks(command: str) -> int | None:
    strace = shutil.which("strace")
    if strace is None:
        return None
    done = subprocess.run(
        [strace, "-f", "-e", "trace=fork,vfork,clone,clone3", "/bin/sh", "-c", command],
        capture_output=True,
        text=True,
        check=True,
    )
    return len(re.findall(r"^(?:\[pid +\d+\] )?(?:v?fork|clone3?)\(", done.stderr, re.M))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--lines", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        (home / "bin").mkdir(parents=True)
        (home / "bin" / "rman").write_text("#!/bin/sh\n")
        (home / "bin" / "rman").chmod(0o755)
        oratab = Path(tmp) / "oratab"
        lines = ["# oratab", "", "+ASM:/u01/grid:N"]
        lines += [f"DB{n}:/u01/app/oracle/product/19/db{n}:N" for n in range(args.lines - 4)]
        oratab.write_text("\n".join([*lines, f"ERP:{home}:Y"]) + "\n")
        explicit = prologue(str(home), oratab, home)
        lookup = prologue(None, oratab, home)
        base = mean_seconds(explicit, args.runs)
        resolved = mean_seconds(lookup, args.runs)
        print(f"sh with explicit ORACLE_HOME : {base * 1e3:.3f} ms/run, forks {forks(explicit)}")
        print(f"sh with oratab lookup        : {resolved * 1e3:.3f} ms/run, forks {forks(lookup)}")
        print(f"lookup cost ({args.lines}-line oratab): {(resolved - base) * 1e6:.0f} us")


if __name__ == "__main__":
    main()

"""Task runner: `nox -s tests lint typecheck` (what CI runs), `nox -s bench` (benchmarks)."""

from __future__ import annotations

import nox

nox.options.error_on_external_run = True
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "lint", "typecheck"]

PYTHON = None  # the interpreter nox runs under (3.11+)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Unit, engine, transport, system and cluster tests (they start a private sshd and etcd)."""
    session.install("-e", ".[test,cluster]")
    session.run("pytest", *session.posargs, env={"TERM": "dumb"})


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff==0.17.6")  # pinned: formatting must not change under CI
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on fanout/."""
    session.install("-e", ".[cluster]", "mypy", "types-PyYAML")
    session.run("mypy")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks against a private sshd on loopback; writes benchmarks/RESULTS.md."""
    session.install("-e", ".")
    session.run("python", "benchmarks/run.py", *session.posargs)

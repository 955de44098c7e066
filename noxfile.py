"""Task runner: `nox -s tests tests_asyncssh_floor lint typecheck` (CI), `nox -s bench`."""

from __future__ import annotations

import nox

nox.options.error_on_external_run = True
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "tests_asyncssh_floor", "lint", "typecheck"]

PYTHON = None  # the interpreter nox runs under (3.11+)
ASYNCSSH_FLOOR = "2.16.0"  # the lower bound of asyncssh in pyproject.toml (a test checks)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Unit, engine, transport, system and cluster tests (they start a private sshd and etcd)."""
    session.install("-e", ".[test,cluster]")
    session.run("pytest", *session.posargs, env={"TERM": "dumb"})


@nox.session(python=PYTHON)
def tests_asyncssh_floor(session: nox.Session) -> None:
    """The SSH tests on the lowest asyncssh declared: transport, orphans, cancel, ProxyJump,
    ciphers."""
    session.install("-e", ".[test]", f"asyncssh=={ASYNCSSH_FLOOR}")
    session.run(
        "pytest",
        "tests/transport",
        "tests/system/test_orphans.py",
        "tests/system/test_cancel.py",
        "tests/system/test_proxyjump.py",
        "tests/system/test_ciphers.py",
        "-k",
        "not 50_hosts",  # the fleet-scale cancel runs once, in `tests`: CI stays under 10 min
        *session.posargs,
        env={"TERM": "dumb"},
    )


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

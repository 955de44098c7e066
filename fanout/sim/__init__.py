"""A simulated fleet of Oracle database hosts for ``fanout demo``, tests and benchmarks.

``server.SimFleet`` is an in-process asyncssh server on 127.0.0.1 that fanout's real SSH
transport talks to. Each exec request runs the received command with the local ``/bin/sh``
in a session of its own, as sshd would, so fanout's exact remote command (pgid line, lock,
``kill -s SIG -- -<pgid>``, ``ps``) meets a real shell and real processes. Each simulated
database has its own directory: a fake ``ORACLE_HOME`` whose ``bin/rman`` is
``rman_fake.py`` (the one RMAN fake of the repository, also behind the real-sshd tests),
its lock directory and its recovery area. ``demo.py`` is ``fanout demo``.
Nothing here is imported by ``fanout run``.
"""

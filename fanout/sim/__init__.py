"""A simulated fleet of Oracle database hosts for ``fanout demo``, tests and experiments.

``server.SimFleet`` is an in-process asyncssh server on 127.0.0.1 that fanout's real SSH
transport talks to. Each exec request runs as a simulated ``sh`` (``shell.py`` parses,
``interp.py`` runs, with ``builtins.py`` and ``programs.py``) on a shared simulated machine
(``machine.py``: process table, file system), so fanout's exact remote command works: pgid
line, environment prologue, per-database lock, ``kill -s SIG -- -<pgid>``, ``ps -A -o …``.
``$ORACLE_HOME/bin/rman`` is ``rman.py``, printing ``transcript.py``'s RMAN output as the
``behaviour.py`` configured for its ORACLE_SID says. ``demo.py`` is ``fanout demo``.
Nothing here is imported by ``fanout run``.
"""

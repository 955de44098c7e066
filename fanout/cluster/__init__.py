"""Cluster mode: several fanout nodes, one run, fenced takeover (``settings.cluster``).

Nothing here is imported unless an inventory has ``settings.cluster``. The pieces:

- ``kv.py``: the small key-value protocol the rest speaks (leases, a create-if-absent, a
  write fenced by a key's create revision, reads) and its errors. Pure.
- ``etcd.py``: that protocol over etcd's gRPC API; the only module that imports the etcd
  client (``aetcd``'s generated stubs) and ``grpc``. Replace it to change the client.
- ``memory.py``: the same protocol in memory, with a clock: the unit tests' etcd.
- ``leader.py``: campaign, keepalive, the local deadline and fenced writes. Pure asyncio.
- ``checkpoint.py``: events → step records in etcd (fenced), and records → events again
  (for a node's own run store). Pure.
- ``hook.py``: the runner's ``RunHook`` for one leader's share of a run, and copying a
  run from etcd into this node's run store.
- ``run.py``: ``fanout run`` in cluster mode: stand by or lead, dedupe, takeover.

Exit codes (in ``errors.ExitCode``, documented in the README): ``FENCED`` (76) when this
node lost leadership during the run and stopped its remote work, ``CLUSTER_UNAVAILABLE``
(69, sysexits' EX_UNAVAILABLE) when etcd could not be reached for
``settings.cluster.unavailable_after`` before this node led or stood by.
"""

from __future__ import annotations

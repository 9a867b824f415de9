"""Would the store lose replay state? What Redis reports about its persistence and replication, judged.

FBU replay protection (architecture.md §3) is the last accepted Sequence Number of each (session, AR), kept in
Redis. A Redis that forgets it (a restart on RDB snapshots only, an fsync policy that leaves writes in the page
cache, a failover to a replica the update had not reached yet) lets an FBU that was already accepted be accepted
again. This module decides, from what Redis itself reports, whether that can happen, and says why in words an
operator can act on:

* :func:`evaluate` is pure: the facts of each primary (``CONFIG GET appendonly appendfsync``, or ``INFO
  persistence`` ``aof_enabled`` where CONFIG is refused; ``INFO server`` ``run_id``; ``INFO replication``
  role, connected replicas, ``min-replicas-to-write``) and the operator's :class:`ReplayDurabilityPolicy` in,
  a :class:`DurabilityReport` out.
* :class:`DurabilityMonitor` is the small state kept between checks (time passed in): the last report, the
  run ids last seen (a change is a Redis restart or a failover), and whether a check is due: after any new
  connection to Redis (a reconnect), and while refusing, at most once per ``retry_interval``.
* :func:`gather_facts` is the thin IO part, on the blocking redis-py client (one pipelined round trip per
  primary). The checks run at start, on readiness checks and after a reconnect, not per FBU.

Hand-written because no library judges Redis persistence settings; the facts are plain redis-py replies.
"""

from __future__ import annotations

from aaa_fmip.store.durability.facts import (
    aconnect_hook,
    cluster_connect_hook,
    connect_hook,
    facts_from_replies,
    gather_facts,
    log_check,
    node_name,
    replicated,
    topology_of,
    wait_replies,
)
from aaa_fmip.store.durability.policy import (
    NOT_DURABLE,
    RETRY_INTERVAL,
    DurabilityChange,
    DurabilityMonitor,
    DurabilityReport,
    MinFsync,
    NodeFacts,
    ReplayDurabilityPolicy,
    Topology,
    evaluate,
)

__all__ = [
    "NOT_DURABLE",
    "RETRY_INTERVAL",
    "DurabilityChange",
    "DurabilityMonitor",
    "DurabilityReport",
    "MinFsync",
    "NodeFacts",
    "ReplayDurabilityPolicy",
    "Topology",
    "aconnect_hook",
    "cluster_connect_hook",
    "connect_hook",
    "evaluate",
    "facts_from_replies",
    "gather_facts",
    "log_check",
    "node_name",
    "replicated",
    "topology_of",
    "wait_replies",
]

"""Pure: the durability policy, the facts of a Redis node, what they mean for replay state, and the monitor that
decides when to check again (time passed in)."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Final, Literal

from aaa_fmip.errors import StoreNotDurable

Topology = Literal["standalone", "sentinel", "cluster"]
MinFsync = Literal["always", "everysec"]

# The FBU path re-checks a refusing store at most this often (seconds), so a fixed Redis is noticed soon.
RETRY_INTERVAL: Final = 1.0

log = logging.getLogger("aaa_fmip.store")

# What a client is told when FBUs are refused on a store that would lose replay state; the reasons are logged.
NOT_DURABLE: Final = (
    "FBUs are not verified: the key store would lose replay state on a restart or failover (see the service log)"
)

_FSYNC_RANK: Final = {"always": 2, "everysec": 1, "no": 0}


@dataclasses.dataclass(frozen=True)
class ReplayDurabilityPolicy:
    """What the operator accepts (``[store]`` settings, docs/configuration.md "Running Redis for aaa-fmip").

    ``allow_volatile``: verify FBUs even on a store that would lose replay state (loud warning, a metric).
    ``min_appendfsync``: the weakest AOF fsync policy accepted as durable.
    ``wait_replicas``: an accepted replay update must be acknowledged by this many replicas (Redis ``WAIT``,
    at most ``wait_timeout_ms``) before the verdict; 0: no waiting.
    """

    allow_volatile: bool = False
    min_appendfsync: MinFsync = "everysec"
    wait_replicas: int = 0
    wait_timeout_ms: int = 100

    def __post_init__(self) -> None:
        if self.min_appendfsync not in ("always", "everysec"):
            raise ValueError("min_appendfsync must be 'always' or 'everysec'")
        if self.wait_replicas < 0:
            raise ValueError("wait_replicas must not be negative")
        if self.wait_timeout_ms <= 0:
            raise ValueError("wait_timeout_ms must be positive (WAIT 0 would block for ever)")


@dataclasses.dataclass(frozen=True)
class NodeFacts:
    """What one Redis primary reports. ``None``: not reported (the command was refused or the field absent)."""

    node: str  # host:port or socket, for messages
    run_id: str | None
    appendonly: bool | None
    appendfsync: str | None
    role: str | None
    connected_replicas: int
    min_replicas_to_write: int | None
    config_refused: str | None = None  # why CONFIG GET was refused (ACL, renamed), if it was
    maxmemory: int | None = None  # bytes; 0: no limit
    maxmemory_policy: str | None = None


@dataclasses.dataclass(frozen=True)
class DurabilityReport:
    """The verdict on a store: ``durable`` or not, and why (``problems``), and what it can still lose
    (``notes``)."""

    durable: bool
    problems: tuple[str, ...]
    notes: tuple[str, ...]
    run_ids: frozenset[str]
    nodes: tuple[str, ...]

    def summary(self) -> str:
        if self.durable:
            head = "replay state is durable"
            return f"{head}; {'; '.join(self.notes)}" if self.notes else head
        return "replay state would be lost: " + "; ".join(self.problems)


@dataclasses.dataclass(frozen=True)
class DurabilityChange:
    """What a new check changed, for logging and metrics."""

    report: DurabilityReport
    first: bool  # the first check of this process
    restarted: tuple[str, ...]  # nodes whose run id changed (restart, or another server after a failover)
    durability_changed: bool  # durable <-> not durable, or other problems than before


def evaluate(nodes: Sequence[NodeFacts], policy: ReplayDurabilityPolicy, topology: Topology) -> DurabilityReport:
    """Judge the primaries' facts against ``policy`` (pure)."""
    problems: list[str] = []
    notes: list[str] = []
    if not nodes:
        problems.append("no Redis primary could be examined")
    wanted = policy.min_appendfsync
    for facts in nodes:
        where = f"Redis at {facts.node}" if len(nodes) > 1 or topology == "cluster" else "Redis"
        if facts.role is not None and facts.role != "master":
            problems.append(f"{where} is a replica (role {facts.role}), not a primary")
        if facts.appendonly is None:
            problems.append(
                f"{where} does not say whether its append-only file is on (CONFIG GET and INFO persistence refused)"
            )
        elif not facts.appendonly:
            problems.append(
                f"{where} runs without an append-only file (appendonly no): a restart loses all replay state "
                "written since the last RDB snapshot; turn appendonly on"
            )
        elif facts.appendfsync is None:
            why = f" ({facts.config_refused})" if facts.config_refused else ""
            problems.append(
                f"{where} has its append-only file on but its fsync policy cannot be read: CONFIG GET was "
                f"refused{why}; allow the service's Redis user +config|get"
            )
        elif facts.appendfsync not in _FSYNC_RANK:
            problems.append(f"{where} reports an unknown appendfsync policy {facts.appendfsync!r}")
        elif _FSYNC_RANK[facts.appendfsync] < _FSYNC_RANK[wanted]:
            loses = (
                "an operating-system crash or power loss loses what the kernel had not written yet (up to about 30 s)"
                if facts.appendfsync == "no"
                else "an operating-system crash or power loss loses up to about 1 s of replay updates"
            )
            problems.append(
                f"{where} fsyncs its append-only file with appendfsync {facts.appendfsync}: {loses}; set "
                f"appendfsync {wanted} (store.min_appendfsync = {wanted!r})"
            )
        elif facts.appendfsync == "everysec":
            notes.append(
                f"{where} uses appendfsync everysec: an operating-system crash or power loss can lose up to "
                "about 1 s of replay updates (a Redis crash loses none unless the disk had fallen behind)"
            )
        can_fail_over = topology == "sentinel" or (topology == "cluster" and facts.connected_replicas > 0)
        if can_fail_over and policy.wait_replicas == 0:
            problems.append(
                f"{where} replicates asynchronously and a failover promotes a replica that may lack the latest "
                "replay updates; set store.replay_wait_replicas (Redis WAIT) to at least 1"
            )
        if policy.wait_replicas > facts.connected_replicas:
            notes.append(
                f"{where} has {facts.connected_replicas} connected replica(s) and store.replay_wait_replicas is "
                f"{policy.wait_replicas}: accepted FBUs are refused until enough replicas acknowledge"
            )
        if facts.maxmemory and facts.maxmemory_policy not in (None, "noeviction"):
            problems.append(
                f"{where} evicts keys when it reaches maxmemory (maxmemory-policy {facts.maxmemory_policy}): "
                "evicted replay state lets a replayed FBU through; set maxmemory-policy noeviction"
            )
        if facts.min_replicas_to_write:
            notes.append(f"{where} refuses writes with fewer than {facts.min_replicas_to_write} replica(s)")
    if policy.wait_replicas and not any("WAIT" in p for p in problems):
        notes.append(
            f"every accepted replay update waits for {policy.wait_replicas} replica(s) "
            f"(at most {policy.wait_timeout_ms} ms)"
        )
    run_ids = frozenset(f.run_id for f in nodes if f.run_id)
    return DurabilityReport(
        durable=not problems,
        problems=tuple(problems),
        notes=tuple(notes),
        run_ids=run_ids,
        nodes=tuple(f.node for f in nodes),
    )


class DurabilityMonitor:
    """The last durability check of one store and when the next one is due (time passed in).

    ``note_connection`` is called by the redis-py connect hooks (any thread, or an event loop): a new
    connection may be to a restarted or failed-over server, so the next FBU re-checks first, and a verdict
    reached over a connection made meanwhile is re-checked before it is given (see ``RedisStore.check_replay``).
    """

    def __init__(
        self,
        policy: ReplayDurabilityPolicy,
        topology: Topology,
        *,
        retry_interval: float = RETRY_INTERVAL,
    ) -> None:
        self.policy = policy
        self.topology = topology
        self.retry_interval = retry_interval
        self._lock = threading.Lock()
        self.check_lock = threading.Lock()  # one check at a time; those who waited find it done
        self._connections = 0
        self._checked_connections = -1
        self._checked_at: float | None = None
        self._run_ids: dict[str, str] = {}
        self.report: DurabilityReport | None = None
        self.restarts = 0  # run id changes seen (restarts, failovers)
        self.checks = 0

    # called from the connect hooks
    def note_connection(self) -> None:
        with self._lock:
            self._connections += 1

    @property
    def connections(self) -> int:
        return self._connections

    def check_due(self, now: float) -> bool:
        """A check is due: none yet, a connection was made since the last, or (refusing) the retry interval
        has passed."""
        if self._checked_connections != self._connections or self.report is None:
            return True
        refusing = not self.allows_replay
        return refusing and self._checked_at is not None and now - self._checked_at >= self.retry_interval

    @property
    def allows_replay(self) -> bool:
        """FBUs may be verified: the store was found durable, or the operator accepts volatile replay state.
        False before the first check."""
        if self.policy.allow_volatile:
            return True
        return self.report is not None and self.report.durable

    def observe(self, nodes: Sequence[NodeFacts], *, now: float, connections: int) -> DurabilityChange:
        """Record a check; ``connections`` is :attr:`connections` as read before gathering (a connection opened
        since, even the check's own, makes the next check due: one that another caller opened meanwhile may
        lead to another server)."""
        report = evaluate(nodes, self.policy, self.topology)
        with self._lock:
            previous = self.report
            if self.topology == "cluster":
                restarted = tuple(f.node for f in nodes if f.run_id and self._run_ids.get(f.node, f.run_id) != f.run_id)
            else:  # one primary, whose address changes in a Sentinel failover: compare the run ids alone
                before = frozenset(self._run_ids.values())
                restarted = report.nodes if before and report.run_ids and before != report.run_ids else ()
                self._run_ids.clear()
            for f in nodes:
                if f.run_id:
                    self._run_ids[f.node] = f.run_id
            self.restarts += len(restarted)
            self.report = report
            self._checked_at = now
            self._checked_connections = connections
            self.checks += 1
        changed = previous is None or previous.durable != report.durable or previous.problems != report.problems
        return DurabilityChange(report=report, first=previous is None, restarted=restarted, durability_changed=changed)

    def gate(self, now: float, check: Callable[[], object]) -> None:
        """Before a replay check: run ``check`` (a durability check, IO) when one is due, one caller at a time
        (those who waited find it done); raise :class:`StoreNotDurable` unless FBUs may be verified."""
        if self.check_due(now):
            with self.check_lock:
                if self.check_due(now):
                    check()
        if not self.allows_replay:
            raise StoreNotDurable(NOT_DURABLE)

    def refusal(self) -> str:
        """Why FBUs are refused now (for logs; never sent to clients)."""
        if self.report is None:
            return "the store's durability has not been checked yet"
        return self.report.summary()

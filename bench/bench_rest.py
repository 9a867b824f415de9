"""REST benchmark: ``POST /v1/fbu/verify`` against a baseline on the same stack, in the same run.

What it does, all on 127.0.0.1 and with every wait bounded:

1. starts a redis-server of its own, the real service (``python -m aaa_fmip.cli serve`` with a generated
   configuration: one access router, one AAA client, an external Redis, a random KEK) and the baseline
   (:mod:`bench.baseline_app`: FastAPI + uvicorn, same worker count and uvicorn options, the same Redis and the
   same redis-py client settings, one GET per request, awaited on the event loop as the FBU route's store calls
   are; ``baseline-thread`` does the GET in a pool thread instead, and is measured in the closed loop only);
2. ingests ``--sessions`` EAP sessions through ``POST /v1/sessions`` and checks each returned SPI against the
   mobile node's own derivation;
3. pre-builds every FBU it will send (:func:`aaa_fmip.mn.build_fbu`): unique, validly authenticated, with
   sequence numbers increasing per session, so each one must come back ``"verdict": "accepted"``; the FBUs of
   one session go out in order on one connection;
4. runs, after a warm-up, a closed-loop phase (``--connections`` connections, ``--requests`` requests) and an
   open-loop phase per ``--rate`` (requests/s, for ``--duration`` s each; latency from each request's intended
   send time) against the baseline and then the service;
5. counts every answer: any FBU not accepted, any baseline answer not 200, any failed request stops the run with
   exit status 1 (a benchmark whose requests fail measures nothing);
6. prints a table (and ``--json``), the throughput ratio and the two targets it reports against: FBU verify at
   least 0.8x the baseline's closed-loop throughput, and FBU verify p99 <= 2 ms at 1,000 requests/s (checked at
   every open-loop rate run). Targets are reported, never asserted. An open-loop phase whose target answered
   clearly less than the offered rate is marked *saturated*: its latency then measures a queue that grows for
   as long as the phase lasts, not the service's tail.

Server CPU per request (user + system time of the server process, and of redis-server, over the phase) is read
from /proc where there is one.

``--loadgen wrk`` measures the restated targets (docs/performance.md) with wrk, a C load generator: per round the
baseline and the service alternately, closed loop (``--connections``) and one connection, ``--seconds`` each,
every answer checked by a Lua script; medians over ``--rounds`` and the FBU/baseline ratios; then the time from
a revocation to the first rejected FBU. ``--cluster`` runs both on a 3-node Redis Cluster, ``--workers N`` both
with N processes. The service is started by the tests' own process handling (``tests/support/service_proc.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import importlib.metadata
import ipaddress
import json
import math
import os
import platform
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

import redis as redis_py

from aaa_fmip import keys, mn
from bench import loadgen
from tests.support.redis_server import RedisServer, free_port, redis_binary
from tests.support.service_proc import ServiceProcess

HOST: Final = "127.0.0.1"
REPO_ROOT: Final = Path(__file__).resolve().parents[1]
PAR: Final = ipaddress.IPv6Address("2001:db8::1")
PCOA_PREFIX: Final = int(ipaddress.IPv6Address("2001:db8:1::"))
NCOA_PREFIX: Final = int(ipaddress.IPv6Address("2001:db8:2::"))
FBU_LIFETIME_SECONDS: Final = 60
RATIO_TARGET: Final = 0.8
P99_TARGET_MS: Final = 2.0
SATURATED_BELOW: Final = 0.95  # answered/offered under which an open-loop phase is called saturated
STARTUP_TIMEOUT: Final = 60.0
TARGETS: Final = {
    "baseline": "baseline",
    "baseline-thread": "baseline-thread",
    "fbu": "fbu-verify",
    "ingest": "ingest",
}
MAX_SEQUENCES_PER_SESSION: Final = 30_000  # well inside the 2^15 window of RFC 1982 serial arithmetic


# --------------------------------------------------------------------------------------------- processes


def _clock_ticks() -> int:
    try:
        return int(os.sysconf("SC_CLK_TCK"))
    except (ValueError, OSError, AttributeError):
        return 100


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (Linux /proc), or None where that cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _clock_ticks()  # utime, stime (proc(5) fields 14, 15)


def tree_cpu_seconds(pid: int) -> float | None:
    """CPU seconds of ``pid`` and of every live process below it (a service with several workers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        cpu = process_cpu_seconds(current)
        if cpu is None:
            if current == pid:
                return None
            continue
        total += cpu
        todo += children.get(current, [])
    return total


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AAA_FMIP_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class ServerProcess:
    """A Python server subprocess on a loopback port, logging to a file; stopped with SIGTERM (bounded)."""

    def __init__(self, name: str, args: Sequence[str], workdir: Path, port: int, env: dict[str, str]) -> None:
        self.name = name
        self.args = list(args)
        self.workdir = workdir
        self.port = port
        self.env = env
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready_path: str, timeout: float = STARTUP_TIMEOUT) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, *self.args], cwd=self.workdir, env=_clean_env(self.env), stdout=log, stderr=log
            )
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}) while starting:\n{self.log_tail()}")
            try:
                status, body = http_get(self.port, ready_path, timeout=2.0)
                if status == 200:
                    return
                last = f"{status} {body[:200]!r}"
            except OSError as exc:
                last = type(exc).__name__
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} not ready within {timeout:.0f} s (last: {last}):\n{self.log_tail()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu_seconds(self) -> float | None:
        return None if self.proc is None else tree_cpu_seconds(self.proc.pid)

    def stop(self, timeout: float = 20.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def log_problems(self, lines: int = 10) -> str:
        """The last warning/error lines of the log (the service logs JSON; anything else counts too), else the tail."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        problems = []
        for line in text.splitlines():
            try:
                level = json.loads(line).get("level")
            except (ValueError, AttributeError):
                level = "text"
            if level not in ("info", "debug"):
                problems.append(line)
        return "\n".join(problems[-lines:]) if problems else self.log_tail(lines)


class ServiceServer(ServiceProcess):
    """The service under test: ``aaa-fmip serve`` run by the tests' own process handling
    (:class:`tests.support.service_proc.ServiceProcess`), with what a benchmark reads from it."""

    name = "service"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu_seconds(self) -> float | None:
        return None if self.proc is None else tree_cpu_seconds(self.proc.pid)

    def log_problems(self, lines: int = 10) -> str:
        """The last warning/error lines of the log, else its tail."""
        problems = [json.dumps(r) for r in self.log_records() if r.get("level") not in ("info", "debug")]
        return "\n".join(problems[-lines:]) if problems else self.log_tail(lines)


class Server(Protocol):
    name: str
    port: int

    def cpu_seconds(self) -> float | None: ...

    def log_problems(self, lines: int = ...) -> str: ...


def http_get(port: int, path: str, *, timeout: float) -> tuple[int, bytes]:
    """One blocking GET, for readiness checks (the load goes through :mod:`bench.loadgen`)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


# -------------------------------------------------------------------------------------------- workload


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def service_config(redis_url: str, ar_token: str, aaa_token: str) -> str:
    return f"""[store]
url = "{redis_url}"
prefix = "bench"

[[access_routers]]
name = "ar-bench"
addresses = ["{PAR}"]
token_sha256 = "{_sha(ar_token)}"

[[clients]]
name = "aaa-bench"
role = "aaa"
token_sha256 = "{_sha(aaa_token)}"

# The benchmark's one router sends more than a router would: its token bucket stays in the path (its cost is
# measured) but far above the load, so that no answer is a 429.
[limits]
caller_rate = 1000000.0
caller_burst = 1000000
"""


class ClusterRedis:
    """A 3-node Redis Cluster (tests/store/_topologies), with the CPU time of all its nodes."""

    def __init__(self, directory: Path) -> None:
        from tests.store._topologies import RedisClusterDeployment

        self.cluster = RedisClusterDeployment(directory)
        self.proc = None

    @property
    def url(self) -> str:
        return self.cluster.url

    def start(self) -> None:
        self.cluster.start()

    def stop(self) -> None:
        self.cluster.stop()

    def node_cpu_seconds(self) -> list[float | None]:
        return [process_cpu_seconds(node.proc.pid) for node in self.cluster.procs]

    def cpu_seconds(self) -> float | None:
        total = 0.0
        for node in self.cluster.procs:
            cpu = process_cpu_seconds(node.proc.pid)
            if cpu is None:
                return None
            total += cpu
        return total


AnyRedis = RedisServer | ClusterRedis
AOF_REWRITE_TIMEOUT: Final = 120.0


def _node_ports(redis: AnyRedis) -> list[int]:
    return list(redis.cluster.ports) if isinstance(redis, ClusterRedis) else [redis.port]


def _node_info(redis: AnyRedis, section: str) -> list[dict[str, Any]]:
    """``INFO section`` of every node."""
    out = []
    for port in _node_ports(redis):
        with redis_py.Redis(port=port, socket_timeout=5) as client:
            out.append(client.info(section))
    return out


def redis_forks(redis: AnyRedis) -> int:
    """Forks so far, all nodes (INFO ``total_forks``): with ``--save ""`` each is an AOF rewrite."""
    return sum(int(info.get("total_forks", 0)) for info in _node_info(redis, "stats"))


def compact_aof(redis: AnyRedis) -> None:
    """Rewrite every node's append-only file now and wait for it (bounded), so that no automatic rewrite (at 100%
    growth past 64 MB, Redis' defaults) forks inside the next measured phase: a fork and the copy-on-write
    faults after it land on the phase's Redis CPU and tail, and they come from how much was written before,
    not from the requests measured. The cost a rewrite has is reported by ``forks`` per phase and in
    docs/performance.md."""
    for port in _node_ports(redis):
        with redis_py.Redis(port=port, socket_timeout=5) as client:
            client.bgrewriteaof()
    deadline = time.monotonic() + AOF_REWRITE_TIMEOUT
    while any(
        i.get("aof_rewrite_in_progress") or i.get("aof_rewrite_scheduled") for i in _node_info(redis, "persistence")
    ):
        if time.monotonic() > deadline:
            raise BenchFailed("the AOF rewrite before a phase", {"seconds": int(AOF_REWRITE_TIMEOUT)})
        time.sleep(0.05)


def redis_scripts(redis: AnyRedis) -> int:
    """Scripts run so far, all nodes (INFO commandstats: EVALSHA and EVAL calls). Per accepted FBU one, unless
    scripts are refused and sent again (another writer moved an audit chain's head meanwhile)."""
    return sum(
        int(info.get(name, {}).get("calls", 0))
        for info in _node_info(redis, "commandstats")
        for name in ("cmdstat_evalsha", "cmdstat_eval")
    )


def redis_cpu_seconds(redis: AnyRedis) -> float | None:
    if isinstance(redis, ClusterRedis):
        return redis.cpu_seconds()
    return None if redis.proc is None else process_cpu_seconds(redis.proc.pid)


@dataclass
class MobileNode:
    """One ingested session, as its mobile node knows it."""

    index: int
    emsk: bytes
    eap_session_id: bytes
    spi: int = 0
    hk: keys.HandoverKey | None = None
    next_sequence: int = 1
    pcoa: ipaddress.IPv6Address = field(init=False)
    ncoa: ipaddress.IPv6Address = field(init=False)

    def __post_init__(self) -> None:
        self.pcoa = ipaddress.IPv6Address(PCOA_PREFIX + 0x100 + self.index)
        self.ncoa = ipaddress.IPv6Address(NCOA_PREFIX + 0x100 + self.index)


@dataclass
class Batch:
    """Pre-encoded requests, the lane (session) of each, and what each answer must say."""

    requests: list[bytes]
    lanes: list[int]
    expected: list[tuple[int, int]]  # (spi, sequence) for FBUs; empty for the baseline


class FbuFactory:
    """Unique, valid FBUs: request i of a batch goes to session i mod N with that session's next sequence."""

    def __init__(self, nodes: list[MobileNode], port: int, token: str) -> None:
        self.nodes = nodes
        self.host = f"{HOST}:{port}"
        self.headers = (("Authorization", f"Bearer {token}"), ("Content-Type", "application/json"))

    def bodies(self, count: int) -> list[bytes]:
        """The bodies of :meth:`batch` (wrk builds the requests around them)."""
        return [request.split(b"\r\n\r\n", 1)[1] for request in self.batch(count).requests]

    def batch(self, count: int) -> Batch:
        requests: list[bytes] = []
        lanes: list[int] = []
        expected: list[tuple[int, int]] = []
        n = len(self.nodes)
        for i in range(count):
            node = self.nodes[i % n]
            assert node.hk is not None
            sequence = node.next_sequence
            if sequence > MAX_SEQUENCES_PER_SESSION:  # parse_args keeps the runs below this
                raise BenchFailed(f"session {node.index} would need more than {MAX_SEQUENCES_PER_SESSION} FBUs")
            node.next_sequence += 1
            mh = mn.build_fbu(
                node.hk,
                sequence=sequence,
                lifetime_seconds=FBU_LIFETIME_SECONDS,
                pcoa=node.pcoa,
                ncoa=node.ncoa,
                par=PAR,
            )
            body = json.dumps(
                {"source": str(node.pcoa), "destination": str(PAR), "mh": mh.hex()}, separators=(",", ":")
            ).encode()
            requests.append(
                loadgen.encode_request("POST", "/v1/fbu/verify", host=self.host, body=body, headers=self.headers)
            )
            lanes.append(node.index)
            expected.append((node.spi, sequence))
        return Batch(requests, lanes, expected)


def baseline_batch(port: int, count: int, path: str = "/baseline") -> Batch:
    request = loadgen.encode_request("GET", path, host=f"{HOST}:{port}")
    return Batch([request] * count, list(range(count)), [])


class Tally:
    """Counts the outcome of every answer; ``bad`` counts every answer that is not the ``good`` outcome.

    ``kind`` is "baseline" (200 and the baseline's body), "ingest" (201) or "fbu" (200, ``"verdict":
    "accepted"`` for exactly the SPI and sequence number sent).
    """

    GOOD: Final = {"baseline": "ok", "baseline-thread": "ok", "ingest": "created", "fbu": "accepted"}

    def __init__(self, kind: str, expected: Sequence[tuple[int, int]] = ()) -> None:
        self.kind = kind
        self.good = self.GOOD[kind]
        self.expected = expected
        self.outcomes: Counter[str] = Counter()
        self.bad = 0
        self.example: str | None = None

    def __call__(self, response: loadgen.Response) -> None:
        outcome = self._classify(response)
        self.outcomes[outcome] += 1
        if outcome != self.good:
            self.bad += 1
            if self.example is None:
                self.example = f"request {response.index}: {outcome}: {response.body[:300]!r}"

    def _classify(self, response: loadgen.Response) -> str:
        if response.status == 0:
            return f"error: {response.error}"
        if self.kind == "ingest":
            return "created" if response.status == 201 else f"http {response.status}"
        if response.status != 200:
            return f"http {response.status}"
        try:
            body = json.loads(response.body)
        except ValueError:
            return "unparseable body"
        if self.kind.startswith("baseline"):
            return "ok" if body.get("status") == "ok" and body.get("length") else "unexpected body"
        if body.get("valid") is not True:
            return f"rejected: {body.get('reason')}"
        if body.get("verdict") != "accepted":
            return str(body.get("verdict"))
        spi, sequence = self.expected[response.index]
        if body.get("spi") != spi or body.get("sequence") != sequence:
            return "accepted, but for another FBU"
        return "accepted"


# ------------------------------------------------------------------------------------------------- runs


@dataclass
class Phase:
    target: str  # "baseline" | "baseline-thread" | "fbu-verify" | "ingest"
    mode: str  # "closed" | "open"
    result: loadgen.LoadResult
    outcomes: dict[str, int]
    server_cpu_ms_per_req: float | None
    redis_cpu_ms_per_req: float | None

    @property
    def label(self) -> str:
        rate = self.result.target_rate
        return f"{self.target} {self.mode}" + (f" {rate:g}/s" if rate else "")

    def row(self) -> dict[str, Any]:
        return {
            "target": self.target,
            **self.result.summary(),
            "outcomes": self.outcomes,
            "server_cpu_ms_per_request": _round(self.server_cpu_ms_per_req),
            "redis_cpu_ms_per_request": _round(self.redis_cpu_ms_per_req),
        }


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _progress(label: str) -> Callable[[int, int, float], None]:
    def report(done: int, total: int, elapsed: float) -> None:
        rate = done / elapsed if elapsed > 0 else 0.0
        print(f"    {label}: {done}/{total} answered, {rate:,.0f}/s", flush=True)

    return report


class Runner:
    def __init__(self, args: argparse.Namespace, redis: AnyRedis) -> None:
        self.args = args
        self.redis = redis

    def run(
        self,
        kind: str,
        mode: str,
        server: Server,
        batch: Batch,
        *,
        connections: int,
        rate: float | None = None,
        check: Callable[[loadgen.Response], None] | None = None,
        progress: bool = True,
    ) -> Phase:
        target = TARGETS[kind]
        label = f"{target} {mode}" + (f" {rate:g}/s" if rate else "")
        print(f"  {label}: {len(batch.requests)} requests over {connections} connections", flush=True)
        tally = Tally(kind, batch.expected)

        def on_response(response: loadgen.Response) -> None:
            tally(response)
            if check is not None:
                check(response)

        cpu_server, cpu_redis = server.cpu_seconds(), self._redis_cpu()
        common: dict[str, Any] = {
            "connections": connections,
            "lanes": batch.lanes,
            "timeout": self.args.timeout,
            "max_seconds": self.args.max_seconds,
            "on_response": on_response,
            "progress": _progress(label) if progress else None,
        }
        if mode == "closed":
            result = loadgen.run_closed(HOST, server.port, batch.requests, **common)
        else:
            assert rate is not None
            result = loadgen.run_open(HOST, server.port, batch.requests, rate=rate, **common)
        after_server, after_redis = server.cpu_seconds(), self._redis_cpu()
        phase = Phase(
            target=target,
            mode=mode,
            result=result,
            outcomes=dict(tally.outcomes),
            server_cpu_ms_per_req=_per_request(cpu_server, after_server, result.requests),
            redis_cpu_ms_per_req=_per_request(cpu_redis, after_redis, result.requests),
        )
        print(f"    {label}: done, {_phase_line(phase)}", flush=True)
        if tally.bad or result.failed or result.stopped_early or result.requests != len(batch.requests):
            print(f"\nbench_rest: {label}: {tally.bad} unexpected answers", file=sys.stderr)
            if result.stopped_early:
                print(f"bench_rest: the run hit --max-seconds {self.args.max_seconds:g}", file=sys.stderr)
            if tally.example:
                print(f"bench_rest: first unexpected answer: {tally.example}", file=sys.stderr)
            print(f"bench_rest: {server.name} log, last problems:\n{server.log_problems()}", file=sys.stderr)
            raise BenchFailed(label, dict(tally.outcomes))
        return phase

    def _redis_cpu(self) -> float | None:
        return redis_cpu_seconds(self.redis)


class BenchFailed(Exception):
    """A phase got answers other than the expected ones (or none): its numbers would mean nothing."""

    def __init__(self, what: str, outcomes: dict[str, int] | None = None) -> None:
        super().__init__(what)
        self.outcomes = outcomes or {}


def _per_request(before: float | None, after: float | None, requests: int) -> float | None:
    if before is None or after is None or requests == 0:
        return None
    return (after - before) * 1000 / requests


def _phase_line(phase: Phase) -> str:
    r = phase.result
    return (
        f"{r.throughput:,.0f}/s, p50 {r.pct(50) * 1000:.2f} ms, p99 {r.pct(99) * 1000:.2f} ms, "
        f"max {max(r.latencies, default=0) * 1000:.2f} ms"
    )


# ------------------------------------------------------------------------------------------- reporting


def machine() -> dict[str, Any]:
    def version(dist: str) -> str | None:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    cpu_model = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    redis_version = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run([redis_binary(), "--version"], capture_output=True, text=True, timeout=10).stdout
        redis_version = next((p[2:] for p in out.split() if p.startswith("v=")), None)
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "redis_server": redis_version,
        "packages": {
            name: version(name)
            for name in (
                "fastapi",
                "starlette",
                "uvicorn",
                "h11",
                "httptools",
                "uvloop",
                "pydantic",
                "redis",
                "hiredis",
            )
        },
    }


def _fmt(value: float, digits: int = 2) -> str:
    return f"{value:.{digits}f}"


def table(phases: list[Phase]) -> str:
    head = (
        "target",
        "mode",
        "conns",
        "requests",
        "req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "srv CPU ms/req",
        "redis CPU ms/req",
    )
    rows = [head]
    for p in phases:
        r = p.result
        mode = "closed" if p.mode == "closed" else f"open {r.target_rate:g}/s"
        rows.append(
            (
                p.target,
                mode,
                str(r.connections),
                str(r.requests),
                f"{r.throughput:,.0f}",
                _fmt(r.pct(50) * 1000),
                _fmt(r.pct(90) * 1000),
                _fmt(r.pct(99) * 1000),
                _fmt(r.pct(99.9) * 1000),
                _fmt(max(r.latencies, default=0) * 1000),
                "-" if p.server_cpu_ms_per_req is None else _fmt(p.server_cpu_ms_per_req, 3),
                "-" if p.redis_cpu_ms_per_req is None else _fmt(p.redis_cpu_ms_per_req, 3),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = []
    for n, row in enumerate(rows):
        cells = [c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def saturated(result: loadgen.LoadResult) -> bool:
    """An open-loop phase whose target answered clearly less than the offered rate."""
    return result.target_rate is not None and result.throughput < SATURATED_BELOW * result.target_rate


def verdicts(phases: list[Phase]) -> dict[str, Any]:
    closed = {p.target: p for p in phases if p.mode == "closed"}
    out: dict[str, Any] = {}
    if "baseline" in closed and "fbu-verify" in closed:
        base, fbu = closed["baseline"].result.throughput, closed["fbu-verify"].result.throughput
        ratio = fbu / base if base else 0.0
        out["throughput_ratio"] = {"value": round(ratio, 3), "target": RATIO_TARGET, "met": ratio >= RATIO_TARGET}
    if "baseline-thread" in closed and "fbu-verify" in closed:
        base = closed["baseline-thread"].result.throughput
        ratio = closed["fbu-verify"].result.throughput / base if base else 0.0
        out["throughput_ratio_to_thread_baseline"] = round(ratio, 3)
    out["p99_at_rate"] = []
    for p in phases:
        if p.mode == "open" and p.target == "fbu-verify":
            r = p.result
            p99 = r.pct(99) * 1000
            out["p99_at_rate"].append(
                {
                    "rate": r.target_rate,
                    "answered_rps": round(r.throughput, 1),
                    "saturated": saturated(r),
                    "value_ms": round(p99, 3),
                    "target_ms": P99_TARGET_MS,
                    "met": p99 <= P99_TARGET_MS,
                }
            )
    return out


def verdict_lines(summary: dict[str, Any]) -> list[str]:
    lines = []
    ratio = summary.get("throughput_ratio")
    if ratio:
        v, t = ratio["value"], ratio["target"]
        state = "met" if ratio["met"] else f"MISSED: {v / t:.0%} of the target"
        lines.append(f"FBU verify / baseline closed-loop throughput: {v:.2f}x (target >= {t}x: {state})")
    if "throughput_ratio_to_thread_baseline" in summary:
        v = summary["throughput_ratio_to_thread_baseline"]
        lines.append(f"FBU verify / baseline-thread (a GET in a pool thread, for reference): {v:.2f}x")
    for p99 in summary.get("p99_at_rate", []):
        v, t = p99["value_ms"], p99["target_ms"]
        state = "met" if p99["met"] else f"MISSED by {v - t:.2f} ms ({v / t:.1f}x the target)"
        line = f"FBU verify p99 at {p99['rate']:g} requests/s: {v:.2f} ms (target <= {t:g} ms: {state})"
        if p99["saturated"]:
            line += (
                f"; SATURATED: answered {p99['answered_rps']:,.0f}/s of {p99['rate']:g}/s offered, so this latency"
                " is a queue growing for the whole phase"
            )
        lines.append(line)
    return lines


# ---------------------------------------------------------------------------------------------- main


def _rates(text: str) -> list[float]:
    try:
        rates = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("expected numbers separated by commas, e.g. 200,1000") from None
    if any(r < 0 or not math.isfinite(r) for r in rates):
        raise argparse.ArgumentTypeError("rates must be finite and not negative")
    return [r for r in rates if r > 0]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench bench_rest",
        description=(
            "Load-test POST /v1/fbu/verify of a real aaa-fmip service and, in the same run, a baseline endpoint on "
            "the same stack (FastAPI + uvicorn, one Redis GET). Starts its own redis-server, service and baseline on "
            "127.0.0.1; every FBU is unique and must be accepted, or the run fails (exit status 1)."
        ),
        epilog=(
            "Phases: warm-up; closed loop (--connections connections, --requests requests, as fast as answers come "
            "back: maximum throughput); open loop (for each --rate, that many requests/s for --duration s, latency "
            "measured from each request's intended send time, so queueing is counted). Each phase runs against the "
            "baseline, then the service. Targets reported (not asserted): FBU verify >= 0.8x the baseline's "
            "closed-loop throughput; FBU verify p99 <= 2 ms at 1000 requests/s."
        ),
    )
    parser.add_argument(
        "--requests", type=int, default=20_000, help="requests per closed-loop phase and target (default 20000)"
    )
    parser.add_argument(
        "--connections", type=int, default=16, help="keep-alive connections in the closed-loop phase (default 16)"
    )
    parser.add_argument(
        "--rate",
        type=_rates,
        default=[200.0, 1000.0],
        metavar="RATE[,RATE...]",
        help="open-loop rates, requests/s, one phase per rate and target; 0 skips the open loop (default 200,1000)",
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of each open-loop phase (default 10)")
    parser.add_argument(
        "--open-connections", type=int, default=32, help="keep-alive connections in the open loop (default 32)"
    )
    parser.add_argument("--sessions", type=int, default=1000, help="EAP sessions ingested (default 1000)")
    parser.add_argument(
        "--warmup", type=int, default=1000, help="requests per target before measuring, not reported (default 1000)"
    )
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds allowed for each connect and each answer (default 10)"
    )
    parser.add_argument(
        "--max-seconds", type=float, default=300.0, help="upper bound on any one phase, seconds (default 300)"
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="the service's --log-level (default info, as deployed: one access line per request)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE ('-' for stdout)")
    parser.add_argument(
        "--loadgen",
        choices=["python", "wrk"],
        default="python",
        help="python: the asyncio generator of bench/loadgen.py (closed and open loop); wrk: wrk, alternating "
        "baseline and service per round, closed loop with --connections and one connection (default python)",
    )
    parser.add_argument(
        "--cluster", action="store_true", help="wrk: a 3-node Redis Cluster instead of one redis-server"
    )
    parser.add_argument("--rounds", type=int, default=3, help="wrk: rounds of baseline/service (default 3)")
    parser.add_argument("--seconds", type=float, default=8.0, help="wrk: seconds per run (default 8)")
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes of the service and of the baseline (default 1)"
    )
    args = parser.parse_args(argv)
    for name in ("requests", "connections", "open_connections", "sessions"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup < 0 or args.duration <= 0 or args.timeout <= 0 or args.max_seconds <= 0:
        parser.error("--warmup must not be negative; --duration, --timeout and --max-seconds must be positive")
    if args.sessions < max(args.connections, args.open_connections):
        parser.error("--sessions must be at least --connections and --open-connections (one session per lane)")
    total = args.warmup + args.requests + sum(max(1, round(rate * args.duration)) for rate in args.rate)
    if math.ceil(total / args.sessions) > MAX_SEQUENCES_PER_SESSION:
        parser.error(f"more than {MAX_SEQUENCES_PER_SESSION} FBUs per session: raise --sessions")
    return args


def service_server(
    workdir: Path,
    redis_url: str,
    tokens: dict[str, str],
    *,
    kek: str,
    log_level: str = "info",
    workers: int = 1,
    tree: Path | None = None,
) -> ServiceServer:
    """The service under test (not started yet): the benchmark's configuration on ``redis_url``, the callers of
    ``tokens``, ``kek``; its code from ``tree`` (another checkout) when given, else from this one."""
    env = {"AAA_FMIP_KEK": kek}
    if tree is not None:
        env["PYTHONPATH"] = str(tree)  # that tree's code first
    return ServiceServer(
        workdir,
        config=service_config(redis_url, tokens["ar"], tokens["aaa"]),
        env=env,
        args=("--log-level", log_level, "--workers", str(workers)),
    )


@contextlib.contextmanager
def deployment(
    workdir: Path, log_level: str, workers: int | None = None, cluster: bool = False
) -> Iterator[tuple[AnyRedis, ServiceServer, ServerProcess, dict[str, str]]]:
    redis: AnyRedis = ClusterRedis(workdir / "cluster") if cluster else RedisServer(workdir / "redis")
    redis.start()
    started: list[ServerProcess | ServiceServer] = []
    try:
        tokens = {"ar": secrets.token_urlsafe(32), "aaa": secrets.token_urlsafe(32)}
        service = service_server(
            workdir / "service", redis.url, tokens, kek=secrets.token_hex(32), log_level=log_level, workers=workers or 1
        )
        baseline_port = free_port()
        baseline = ServerProcess(
            "baseline",
            [
                "-m",
                "bench.baseline_app",
                "--listen",
                f"{HOST}:{baseline_port}",
                "--redis-url",
                redis.url,
                *([] if workers is None else ["--workers", str(workers)]),
            ],
            workdir / "baseline",
            baseline_port,
            {},
        )
        service.start(timeout=STARTUP_TIMEOUT)
        started.append(service)
        print(f"  service ready on {HOST}:{service.port} (pid {service.pid})", flush=True)
        baseline.start("/baseline")
        started.append(baseline)
        print(f"  baseline ready on {HOST}:{baseline.port} (pid {baseline.pid})", flush=True)
        yield redis, service, baseline, tokens
    finally:
        for proc in reversed(started):
            proc.stop()
        redis.stop()


def ingest(runner: Runner, service: Server, token: str, count: int, connections: int) -> tuple[list[MobileNode], Phase]:
    nodes = [MobileNode(i, os.urandom(64), b"\x0d" + os.urandom(64)) for i in range(count)]
    headers = (("Authorization", f"Bearer {token}"), ("Content-Type", "application/json"))
    requests = []
    for node in nodes:
        body = json.dumps(
            {
                "emsk": node.emsk.hex(),
                "eap_session_id": node.eap_session_id.hex(),
                "user_name": f"mn{node.index}@bench.example",
                "calling_station_id": "02-00-" + "-".join(f"{b:02x}" for b in node.index.to_bytes(4, "big")),
            }
        ).encode()
        requests.append(
            loadgen.encode_request("POST", "/v1/sessions", host=f"{HOST}:{service.port}", body=body, headers=headers)
        )
    mismatched: list[int] = []

    def check(response: loadgen.Response) -> None:
        if response.status == 201:
            nodes[response.index].spi = int(json.loads(response.body)["spi"])

    batch = Batch(requests, list(range(count)), [])
    phase = runner.run("ingest", "closed", service, batch, connections=connections, check=check, progress=False)
    for node in nodes:  # the mobile node's side: the same SPI and its handover key for the PAR
        master = mn.derive_master_key(emsk=node.emsk, eap_session_id=node.eap_session_id)
        node.hk = mn.derive_handover_key(master, PAR)
        if node.spi != master.spi:
            mismatched.append(node.index)
    if mismatched:
        raise BenchFailed(f"ingest: {len(mismatched)} sessions got another SPI than the mobile node derives")
    return nodes, phase


def measure(args: argparse.Namespace, workdir: Path, phases: list[Phase]) -> None:
    """Run every phase, appending each to ``phases`` as it completes (so a failure keeps the ones before it)."""
    with deployment(workdir, args.log_level, args.workers) as (redis, service, baseline, tokens):
        runner = Runner(args, redis)
        nodes, ingested = ingest(runner, service, tokens["aaa"], args.sessions, min(args.connections, 8))
        print(f"  ingested {len(nodes)} sessions ({ingested.result.throughput:,.0f}/s)", flush=True)
        factory = FbuFactory(nodes, service.port, tokens["ar"])
        open_counts = [max(1, round(rate * args.duration)) for rate in args.rate]
        t0 = time.perf_counter()
        warm_fbu = factory.batch(args.warmup)
        closed_fbu = factory.batch(args.requests)
        open_fbus = [factory.batch(count) for count in open_counts]
        built = args.warmup + args.requests + sum(open_counts)
        print(f"  built {built} FBUs in {time.perf_counter() - t0:.1f} s", flush=True)

        def base(count: int) -> Batch:
            return baseline_batch(baseline.port, count)

        def base_thread(count: int) -> Batch:
            return baseline_batch(baseline.port, count, "/baseline-thread")

        if args.warmup:
            print("warm-up", flush=True)
            runner.run("baseline", "closed", baseline, base(args.warmup), connections=args.connections, progress=False)
            runner.run(
                "baseline-thread",
                "closed",
                baseline,
                base_thread(args.warmup),
                connections=args.connections,
                progress=False,
            )
            runner.run("fbu", "closed", service, warm_fbu, connections=args.connections, progress=False)
        print("closed loop", flush=True)
        phases.append(runner.run("baseline", "closed", baseline, base(args.requests), connections=args.connections))
        phases.append(
            runner.run("baseline-thread", "closed", baseline, base_thread(args.requests), connections=args.connections)
        )
        phases.append(runner.run("fbu", "closed", service, closed_fbu, connections=args.connections))
        for rate, count, open_fbu in zip(args.rate, open_counts, open_fbus, strict=True):
            print(f"open loop, {rate:g} requests/s", flush=True)
            conns = args.open_connections
            phases.append(runner.run("baseline", "open", baseline, base(count), connections=conns, rate=rate))
            phases.append(runner.run("fbu", "open", service, open_fbu, connections=conns, rate=rate))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print("bench_rest: POST /v1/fbu/verify vs a baseline on the same stack", flush=True)
    info = machine()
    pkgs = ", ".join(f"{k} {v}" for k, v in info["packages"].items() if v)
    print(
        f"  machine: {info['cpus']} CPUs ({info['cpu_model']}), Python {info['python']}, "
        f"redis-server {info['redis_server']}; {pkgs}",
        flush=True,
    )
    if args.loadgen == "wrk":
        return main_wrk(args, info)
    phases: list[Phase] = []
    failure: BenchFailed | None = None
    try:
        with tempfile.TemporaryDirectory(prefix="aaa-fmip-bench-") as tmp:
            measure(args, Path(tmp), phases)
    except BenchFailed as exc:
        failure = exc
    except RuntimeError as exc:  # a server did not start; the message says why
        failure = BenchFailed(str(exc))

    summary = verdicts(phases)
    if phases:
        print()
        if failure is not None:
            print("phases completed before the failure (every request of these got its expected answer):")
        print(table(phases))
        print()
        for line in verdict_lines(summary):
            print(line)
        print("outcomes: " + "; ".join(f"{p.label}: {p.outcomes}" for p in phases))
    return finish(
        args,
        failure,
        {"benchmark": "bench_rest", "machine": info, "phases": [p.row() for p in phases], "targets": summary},
    )


def finish(args: argparse.Namespace, failure: BenchFailed | None, doc: dict[str, Any]) -> int:
    """Say what failed (if anything), write ``--json`` (``doc`` with the parameters and the failure) and give the
    exit status: 0, or 1 when a phase failed. ``doc["benchmark"]`` names the benchmark in the failure line."""
    if failure is not None:
        counts = ", ".join(f"{k}: {v}" for k, v in failure.outcomes.items())
        name = str(doc["benchmark"]).split()[0]
        print(f"{name}: FAILED in {failure}" + (f" ({counts})" if counts else ""), file=sys.stderr)
    if args.json:
        doc = {
            **doc,
            "parameters": {k: v for k, v in vars(args).items() if k != "json"},
            "failed": None if failure is None else {"phase": str(failure), "outcomes": failure.outcomes},
        }
        text = json.dumps(doc, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    return 0 if failure is None else 1


# ------------------------------------------------------------------------------------------------- wrk


@dataclass
class WrkRun:
    round: int
    load: str  # "closed" | "one connection"
    target: str  # "baseline" | "fbu-verify"
    result: loadgen.WrkResult
    server_cpu_ms: float | None
    redis_cpu_ms: float | None
    loadavg: tuple[float, float, float]
    redis_node_cpu_ms: list[float | None]  # per Cluster node (the audit stream's node does the chain's work)
    forks: int = 0  # AOF rewrites (forks) during the phase, all nodes
    steal: float | None = None  # share of the machine's CPU time the hypervisor gave to others during the phase
    scripts: float | None = None  # Redis scripts per request (EVALSHA, EVAL), all nodes

    def row(self) -> dict[str, Any]:
        r = self.result
        return {
            "round": self.round,
            "load": self.load,
            "target": self.target,
            "requests": r.requests,
            "throughput": round(r.throughput, 1),
            "p50_ms": round(r.p50 * 1000, 3),
            "p99_ms": round(r.p99 * 1000, 3),
            "p999_ms": round(r.p999 * 1000, 3),
            "server_cpu_ms_per_request": _round(self.server_cpu_ms),
            "redis_cpu_ms_per_request": _round(self.redis_cpu_ms),
            "redis_node_cpu_ms_per_request": [_round(x, 4) for x in self.redis_node_cpu_ms],
            "aof_rewrites": self.forks,
            "scripts_per_request": None if self.scripts is None else round(self.scripts, 3),
            "loadavg_1m": self.loadavg[0],
            "steal": None if self.steal is None else round(self.steal, 4),
            "good": r.good,
        }


def _wrk_run(
    args: argparse.Namespace,
    workdir: Path,
    redis: AnyRedis,
    server: Server,
    *,
    target: str,
    bodies: Sequence[bytes],
    headers: Sequence[tuple[str, str]],
    connections: int,
    seconds: float,
    label: tuple[int, str],
) -> WrkRun:
    fbu = target == "fbu-verify"
    compact_aof(redis)
    forks_before = redis_forks(redis)
    loadavg = os.getloadavg()
    steal_before = cpu_steal()
    nodes_before = redis.node_cpu_seconds() if isinstance(redis, ClusterRedis) else []
    scripts_before = redis_scripts(redis)
    before = (server.cpu_seconds(), redis_cpu_seconds(redis))
    result = loadgen.run_wrk(
        HOST,
        server.port,
        bodies=bodies,
        method="POST" if fbu else "GET",
        path="/v1/fbu/verify" if fbu else "/baseline",
        headers=headers,
        expect='"verdict":"accepted"' if fbu else '"status":"ok"',
        connections=connections,
        threads=min(2, connections),
        seconds=seconds,
        workdir=workdir / "wrk",
        timeout=args.timeout,
        repeat=not fbu,
    )
    after = (server.cpu_seconds(), redis_cpu_seconds(redis))
    nodes_after = redis.node_cpu_seconds() if isinstance(redis, ClusterRedis) else []
    forks = redis_forks(redis) - forks_before
    scripts = redis_scripts(redis) - scripts_before
    steal = steal_share(steal_before, cpu_steal())
    run = WrkRun(
        label[0],
        label[1],
        target,
        result,
        _per_request(before[0], after[0], result.requests),
        _per_request(before[1], after[1], result.requests),
        loadavg,
        [_per_request(b, a, result.requests) for b, a in zip(nodes_before, nodes_after, strict=True)],
        forks,
        steal,
        scripts / result.requests if result.requests else None,
    )
    r = result
    print(
        f"  round {label[0]} {label[1]:<14} {target:<10} {r.throughput:8,.0f}/s  p50 {r.p50 * 1000:6.3f} ms  "
        f"p99 {r.p99 * 1000:6.3f} ms  server CPU {_fmt(run.server_cpu_ms or 0, 3)} ms/req  "
        f"redis CPU {_fmt(run.redis_cpu_ms or 0, 3)} ms/req  load {loadavg[0]:.2f}"
        + (f"  scripts/req {run.scripts:.2f}" if fbu and run.scripts is not None else "")
        + (f"  AOF rewrites {forks}" if forks else "")
        + (f"  steal {steal:.0%}" if steal is not None and steal >= 0.01 else ""),
        flush=True,
    )
    if not r.clean:
        print(f"bench_rest: {server.name} log, last problems:\n{server.log_problems()}", file=sys.stderr)
        raise BenchFailed(
            f"{target} {label[1]} round {label[0]}",
            {"good": r.good, "bad": r.bad, "socket errors": r.socket_errors, "ran out of requests": r.exhausted},
        )
    return run


def wrk_batch(fastest: float, seconds: float, floor: int = 4000) -> int:
    """Unique FBUs for one wrk phase: three times what the fastest FBU phase so far would send in ``seconds``
    (wrk reuses the last one when it runs out, and a reused FBU is a replay), at least ``floor``."""
    return max(floor, math.ceil(fastest * seconds * 3))


def cpu_steal() -> tuple[int, int] | None:
    """(steal, all) CPU ticks of the machine so far (``/proc/stat``), None where there is no such file. Steal is
    time a virtual machine's CPUs were ready to run but the hypervisor ran someone else: a phase with much of it
    measured the neighbours as well."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            ticks = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (ticks[7], sum(ticks)) if len(ticks) > 7 else None


def steal_share(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def wrk_summary(runs: Sequence[WrkRun]) -> dict[str, Any]:
    """Medians per (load, target) and the ratios of the issue's targets (service over baseline)."""
    out: dict[str, Any] = {}
    for load in ("closed", "one connection"):
        med: dict[str, dict[str, float]] = {}
        for target in ("baseline", "fbu-verify"):
            rs = [r for r in runs if r.load == load and r.target == target]
            if not rs:
                continue
            med[target] = {
                "throughput": _median([r.result.throughput for r in rs]),
                "p50_ms": _median([r.result.p50 * 1000 for r in rs]),
                "p99_ms": _median([r.result.p99 * 1000 for r in rs]),
                "server_cpu_ms": _median([r.server_cpu_ms or 0.0 for r in rs]),
                "redis_cpu_ms": _median([r.redis_cpu_ms or 0.0 for r in rs]),
                "scripts": _median([r.scripts or 0.0 for r in rs]),
            }
        if len(med) == 2:
            b, f = med["baseline"], med["fbu-verify"]
            med["ratio"] = {
                "throughput": f["throughput"] / b["throughput"],
                "p50": f["p50_ms"] / b["p50_ms"],
                "p99": f["p99_ms"] / b["p99_ms"],
                "server_cpu": f["server_cpu_ms"] / b["server_cpu_ms"] if b["server_cpu_ms"] else float("nan"),
            }
        out[load] = med
    return out


def measure_wrk(args: argparse.Namespace, workdir: Path, runs: list[WrkRun], extra: dict[str, Any]) -> None:
    with deployment(workdir, args.log_level, args.workers, args.cluster) as (redis, service, baseline, tokens):
        runner = Runner(args, redis)
        nodes, ingested = ingest(runner, service, tokens["aaa"], args.sessions, min(args.connections, 8))
        print(f"  ingested {len(nodes)} sessions ({ingested.result.throughput:,.0f}/s)", flush=True)
        factory = FbuFactory(nodes, service.port, tokens["ar"])
        fbu_headers = (("Authorization", f"Bearer {tokens['ar']}"), ("Content-Type", "application/json"))

        # warm-up (not reported), which also sizes the FBU batches: three times what the service answered per second
        warm = min(3.0, args.seconds)
        _wrk_run(
            args,
            workdir,
            redis,
            baseline,
            target="baseline",
            bodies=[b""],
            headers=(),
            connections=args.connections,
            seconds=warm,
            label=(0, "closed"),
        )
        first = _wrk_run(
            args,
            workdir,
            redis,
            service,
            target="fbu-verify",
            bodies=factory.bodies(20_000),
            headers=fbu_headers,
            connections=args.connections,
            seconds=warm,
            label=(0, "closed"),
        )
        fastest = first.result.throughput  # FBU batches are sized by the fastest FBU phase so far, three times over
        for rnd in range(1, args.rounds + 1):
            for load, conns in (("closed", args.connections), ("one connection", 1)):
                runs.append(
                    _wrk_run(
                        args,
                        workdir,
                        redis,
                        baseline,
                        target="baseline",
                        bodies=[b""],
                        headers=(),
                        connections=conns,
                        seconds=args.seconds,
                        label=(rnd, load),
                    )
                )
                bodies = factory.bodies(wrk_batch(fastest, args.seconds))
                runs.append(
                    _wrk_run(
                        args,
                        workdir,
                        redis,
                        service,
                        target="fbu-verify",
                        bodies=bodies,
                        headers=fbu_headers,
                        connections=conns,
                        seconds=args.seconds,
                        label=(rnd, load),
                    )
                )
                fastest = max(fastest, runs[-1].result.throughput)
        replays = replay_check(service, tokens, nodes[: min(200, len(nodes))])
        extra["replay_check"] = replays
        print(f"  retransmissions and replays: {replays}", flush=True)
        revocation = revocation_latency(service, tokens, nodes[-min(200, len(nodes)) :])
        extra["revocation"] = revocation
        print(f"  revocation -> first rejected FBU: {revocation}", flush=True)


def _fbu_json(node: MobileNode, sequence: int | None = None) -> bytes:
    """An FBU of ``node``: its next sequence number, or ``sequence`` (an old one: a replay)."""
    assert node.hk is not None
    if sequence is None:
        sequence = node.next_sequence
        node.next_sequence += 1
    mh = mn.build_fbu(
        node.hk, sequence=sequence, lifetime_seconds=FBU_LIFETIME_SECONDS, pcoa=node.pcoa, ncoa=node.ncoa, par=PAR
    )
    return json.dumps({"source": str(node.pcoa), "destination": str(PAR), "mh": mh.hex()}).encode()


def replay_check(service: Server, tokens: dict[str, str], nodes: Sequence[MobileNode]) -> dict[str, int]:
    """For each node: a new FBU (accepted), the same FBU again (a retransmission), and an FBU with the sequence
    number before it, validly authenticated (a replay): BenchFailed on any other verdict."""
    conn = http.client.HTTPConnection(HOST, service.port, timeout=10)
    headers = {"Authorization": f"Bearer {tokens['ar']}", "Content-Type": "application/json"}
    seen: Counter[str] = Counter()

    def verify(body: bytes) -> str:
        conn.request("POST", "/v1/fbu/verify", body=body, headers=headers)
        answer = json.loads(conn.getresponse().read())
        return str(answer.get("verdict") or answer.get("reason"))

    try:
        for node in nodes:
            fresh = _fbu_json(node)
            got = (verify(fresh), verify(fresh), verify(_fbu_json(node, node.next_sequence - 2)))
            if got != ("accepted", "retransmission", "replay"):
                raise BenchFailed(f"replay check: session {node.index} answered {got}")
            seen.update(got)
    finally:
        conn.close()
    return dict(seen)


def revocation_latency(service: Server, tokens: dict[str, str], nodes: Sequence[MobileNode]) -> dict[str, Any]:
    """For each node: an FBU (accepted: the session is now cached by the worker that answered), then the
    revocation through ``POST /v1/sessions/revoke`` on another connection, then FBUs until one is rejected. The
    time from the revocation's answer to the first rejected FBU's answer, and how many FBUs were accepted in
    between (it must be none)."""
    fbu_conn = http.client.HTTPConnection(HOST, service.port, timeout=10)
    aaa_conn = http.client.HTTPConnection(HOST, service.port, timeout=10)
    fbu_headers = {"Authorization": f"Bearer {tokens['ar']}", "Content-Type": "application/json"}
    aaa_headers = {"Authorization": f"Bearer {tokens['aaa']}", "Content-Type": "application/json"}

    def verify(node: MobileNode) -> dict[str, Any]:
        fbu_conn.request("POST", "/v1/fbu/verify", body=_fbu_json(node), headers=fbu_headers)
        answer = fbu_conn.getresponse()
        out: dict[str, Any] = json.loads(answer.read())
        return out

    waits: list[float] = []
    accepted_after = 0
    try:
        for node in nodes:
            if verify(node).get("verdict") != "accepted":
                raise BenchFailed("revocation: an FBU before the revocation was not accepted")
            mac = "02-00-" + "-".join(f"{b:02x}" for b in node.index.to_bytes(4, "big"))
            aaa_conn.request(
                "POST", "/v1/sessions/revoke", body=json.dumps({"calling_station_id": mac}), headers=aaa_headers
            )
            answer = aaa_conn.getresponse()
            body = json.loads(answer.read())
            revoked_at = time.perf_counter()
            if answer.status != 200 or body.get("revoked") != 1:
                raise BenchFailed(f"revocation: answer {answer.status} {body}")
            for _ in range(100):
                verdict = verify(node)
                if verdict.get("valid") is False and verdict.get("reason") == "revoked":
                    waits.append(time.perf_counter() - revoked_at)
                    break
                accepted_after += 1
            else:
                raise BenchFailed("revocation: 100 FBUs after the revocation were not rejected")
    finally:
        fbu_conn.close()
        aaa_conn.close()
    return {
        "revocations": len(waits),
        "accepted_after_revocation": accepted_after,
        "first_rejection_after_ms": {
            "p50": round(loadgen.percentile(waits, 50) * 1000, 3),
            "p99": round(loadgen.percentile(waits, 99) * 1000, 3),
            "max": round(max(waits) * 1000, 3),
        },
    }


def main_wrk(args: argparse.Namespace, info: dict[str, Any]) -> int:
    runs: list[WrkRun] = []
    extra: dict[str, Any] = {}
    failure: BenchFailed | None = None
    try:
        with tempfile.TemporaryDirectory(prefix="aaa-fmip-bench-") as tmp:
            measure_wrk(args, Path(tmp), runs, extra)
    except BenchFailed as exc:
        failure = exc
    except RuntimeError as exc:
        failure = BenchFailed(str(exc))
    summary = wrk_summary(runs)
    for load, med in summary.items():
        ratio = med.get("ratio")
        if ratio:
            print(
                f"medians, {load}: baseline {med['baseline']['throughput']:,.0f}/s vs fbu {med['fbu-verify']['throughput']:,.0f}/s"  # noqa: E501
                f" = {ratio['throughput']:.2f}x; p50 {ratio['p50']:.2f}x, p99 {ratio['p99']:.2f}x, server CPU "
                f"{med['baseline']['server_cpu_ms']:.3f} vs {med['fbu-verify']['server_cpu_ms']:.3f} ms = "
                f"{ratio['server_cpu']:.2f}x; {med['fbu-verify']['scripts']:.2f} scripts/FBU"
            )
    doc = {"benchmark": "bench_rest (wrk)", "machine": info, "runs": [r.row() for r in runs], "medians": summary}
    return finish(args, failure, {**doc, **extra})


if __name__ == "__main__":
    raise SystemExit(main())

"""A/B of two versions of the service on ``POST /v1/fbu/verify``: which one costs less, measured side by side.

``bench_rest`` compares the service with a baseline app; a change to the service is judged by running it twice,
before and after, and the machine's drift between those runs (other tenants, steal time) is often larger than
the change. Here both versions run at once, against one redis-server (or one 3-node Cluster) holding the same
sessions, and wrk measures them alternately, round after round (A B, then B A, ...), so drift lands on both.

What it does, all on 127.0.0.1 and with every wait bounded:

1. ``--b REV`` is a git revision of this repository (default ``HEAD``), checked out into a temporary worktree
   (or a directory holding another checkout); A is this checkout as it is on disk unless ``--a`` names another.
   Each version runs as its own ``python -m aaa_fmip.cli serve`` (one worker) with the same generated
   configuration and KEK, its code taken from its own tree;
2. ingests ``--sessions`` sessions through a third service process (stopped before the two start, so that
   neither begins with the other's history) and checks every SPI against the mobile node's derivation;
3. warms both up, then for ``--rounds`` rounds runs wrk for ``--seconds`` against each version in turn, with
   ``--connections`` connections (1: one FBU at a time, the latency case), every FBU unique and checked to come
   back accepted (the versions share the sessions' replay state, so each FBU goes to one version only);
4. prints each phase (throughput, p50, p99, service and Redis CPU per FBU, the CPU time the hypervisor stole),
   the medians per version over the rounds with less than ``--max-steal`` steal, the ratios B/A and in how
   many of the kept rounds A used less CPU than B. Nothing is asserted; ``--json`` writes it all.

Exit status 1 when an FBU is not accepted or a server fails; 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import math
import secrets
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from bench import bench_rest as rest
from tests.support.redis_server import RedisServer

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
VERSIONS: Final = ("A", "B")
ON_REQUEST: Final = True  # a tool: ``python -m bench`` without names leaves it out (bench/__main__.py)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench bench_ab",
        description=__doc__.split("\n\n", 1)[0] if __doc__ else None,
        epilog="Example: python -m bench bench_ab --b HEAD~1 --rounds 10 (is the last commit cheaper?)",
    )
    parser.add_argument(
        "--b",
        default="HEAD",
        metavar="REV|DIR",
        help="version B: a git revision, or a checkout (default HEAD: what the uncommitted change does; with none, "
        "A and B are the same code and the run shows the noise)",
    )
    parser.add_argument("--a", metavar="REV|DIR", help="version A (default: this checkout, as it is on disk)")
    parser.add_argument("--rounds", type=int, default=8, help="rounds, each measuring A and B once (default 8)")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds of each phase (default 4)")
    parser.add_argument("--connections", type=int, default=1, help="wrk connections (default 1)")
    parser.add_argument("--sessions", type=int, default=2000, help="EAP sessions ingested (default 2000)")
    parser.add_argument("--cluster", action="store_true", help="a 3-node Redis Cluster instead of one redis-server")
    parser.add_argument(
        "--max-steal",
        type=float,
        default=0.05,
        help="rounds in which the hypervisor stole more than this share of CPU time are left out (default 0.05)",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds allowed per answer (default 10)")
    parser.add_argument("--json", metavar="FILE", help="also write the phases and medians as JSON ('-': stdout)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.seconds <= 0 or args.connections < 1 or args.timeout <= 0:
        parser.error("--rounds and --connections must be at least 1; --seconds and --timeout positive")
    if args.sessions < args.connections or not 0 < args.max_steal <= 1:
        parser.error("--sessions must be at least --connections; --max-steal in (0, 1]")
    return args


@contextmanager
def checkout(spec: str | None, workdir: Path, name: str) -> Iterator[Path]:
    """The tree of one version: this checkout (None), a directory, or a revision in a temporary worktree."""
    if spec is None:
        yield REPO_ROOT
        return
    if Path(spec).is_dir():
        yield Path(spec).resolve()
        return
    tree = workdir / f"tree-{name}"
    git = ["git", "-C", str(REPO_ROOT)]
    added = subprocess.run(
        [*git, "worktree", "add", "--detach", str(tree), spec], capture_output=True, text=True, timeout=120
    )
    if added.returncode != 0:
        raise rest.BenchFailed(f"version {name}: cannot check out {spec!r}: {added.stderr.strip()[:300]}")
    try:
        yield tree
    finally:
        subprocess.run([*git, "worktree", "remove", "--force", str(tree)], capture_output=True, timeout=120)


def measure(args: argparse.Namespace, workdir: Path, trees: dict[str, Path], runs: list[rest.WrkRun]) -> None:
    redis: rest.AnyRedis = rest.ClusterRedis(workdir / "cluster") if args.cluster else RedisServer(workdir / "r")
    redis.start()
    services: dict[str, rest.ServiceServer] = {}
    try:
        tokens = {"ar": secrets.token_urlsafe(32), "aaa": secrets.token_urlsafe(32)}
        kek = secrets.token_hex(32)

        def start(name: str, tree: Path) -> rest.ServiceServer:
            service = rest.service_server(workdir / f"service-{name}", redis.url, tokens, kek=kek, tree=tree)
            service.start(timeout=rest.STARTUP_TIMEOUT)
            return service

        # The sessions go in through a third process, stopped before the versions start: a version that had
        # taken the ingest would start with another heap and cache than the other (a bias seen in the A/B runs).
        ingester = start("ingest", REPO_ROOT)
        try:
            runner = rest.Runner(rest.parse_args(["--loadgen", "wrk", "--timeout", str(args.timeout)]), redis)
            nodes, _ = rest.ingest(runner, ingester, tokens["aaa"], args.sessions, min(args.sessions, 8))
        finally:
            ingester.stop()
        print(f"  ingested {len(nodes)} sessions", flush=True)
        for name, tree in trees.items():
            services[name] = start(name, tree)
            print(f"  {name}: {tree} on {rest.HOST}:{services[name].port} (pid {services[name].pid})", flush=True)
        headers = (("Authorization", f"Bearer {tokens['ar']}"), ("Content-Type", "application/json"))
        factories = {name: rest.FbuFactory(nodes, s.port, tokens["ar"]) for name, s in services.items()}

        def phase(name: str, label: tuple[int, str], seconds: float, count: int) -> rest.WrkRun:
            return rest._wrk_run(
                args,
                workdir,
                redis,
                services[name],
                target="fbu-verify",
                bodies=factories[name].bodies(count),
                headers=headers,
                connections=args.connections,
                seconds=seconds,
                label=label,
            )

        fastest = 0.0
        for name in VERSIONS:  # warm-up, not reported; sizes the batches (three times the fastest rate seen)
            fastest = max(fastest, phase(name, (0, name), min(2.0, args.seconds), 6000).result.throughput)
        for rnd in range(1, args.rounds + 1):
            for name in VERSIONS if rnd % 2 else VERSIONS[::-1]:
                runs.append(phase(name, (rnd, name), args.seconds, rest.wrk_batch(fastest, args.seconds, 2000)))
                fastest = max(fastest, runs[-1].result.throughput)
    finally:
        for service in services.values():
            service.stop()
        redis.stop()


def summary(runs: Sequence[rest.WrkRun], max_steal: float) -> dict[str, Any]:
    """Medians per version over the rounds whose two phases both had less steal than ``max_steal``."""
    by_round: dict[int, dict[str, rest.WrkRun]] = {}
    for run in runs:
        by_round.setdefault(run.round, {})[run.load] = run
    kept = [r for r in by_round.values() if len(r) == 2 and all((x.steal or 0) < max_steal for x in r.values())]

    def median(name: str, value: Callable[[rest.WrkRun], float | None]) -> float | None:
        values = [v for v in (value(r[name]) for r in kept) if v is not None]
        return statistics.median(values) if values else None

    out: dict[str, Any] = {"rounds_kept": len(kept), "rounds": len(by_round)}
    for name in VERSIONS:
        out[name] = {
            "throughput": median(name, lambda x: x.result.throughput),
            "p50_ms": median(name, lambda x: x.result.p50 * 1000),
            "p99_ms": median(name, lambda x: x.result.p99 * 1000),
            "server_cpu_ms": median(name, lambda x: x.server_cpu_ms),
            "redis_cpu_ms": median(name, lambda x: x.redis_cpu_ms),
        }
    out["a_used_less_cpu"] = sum(
        1 for r in kept if (r["A"].server_cpu_ms or math.inf) < (r["B"].server_cpu_ms or math.inf)
    )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print("bench_ab: two versions of the service, side by side, on POST /v1/fbu/verify", flush=True)
    runs: list[rest.WrkRun] = []
    failure: rest.BenchFailed | None = None
    try:
        with tempfile.TemporaryDirectory(prefix="aaa-fmip-ab-") as tmp:
            workdir = Path(tmp)
            with checkout(args.a, workdir, "A") as tree_a, checkout(args.b, workdir, "B") as tree_b:
                measure(args, workdir, {"A": tree_a, "B": tree_b}, runs)
    except rest.BenchFailed as exc:
        failure = exc
    except RuntimeError as exc:  # a server did not start; the message says why
        failure = rest.BenchFailed(str(exc))
    result = summary(runs, args.max_steal)
    a, b = result["A"], result["B"]
    print(f"rounds kept (steal under {args.max_steal:.0%}): {result['rounds_kept']} of {result['rounds']}")
    for name, m in (("A", a), ("B", b)):
        if m["throughput"] is not None:
            print(
                f"  {name}: {m['throughput']:,.0f}/s  p50 {m['p50_ms']:.3f} ms  p99 {m['p99_ms']:.3f} ms  "
                f"service CPU {m['server_cpu_ms'] or 0:.3f} ms/FBU  Redis CPU {m['redis_cpu_ms'] or 0:.4f} ms/FBU"
            )
    if a["server_cpu_ms"] and b["server_cpu_ms"] and a["p50_ms"] and b["p50_ms"]:
        print(
            f"  B/A: CPU {b['server_cpu_ms'] / a['server_cpu_ms']:.3f}, p50 {b['p50_ms'] / a['p50_ms']:.3f}; "
            f"A used less CPU in {result['a_used_less_cpu']} of {result['rounds_kept']} rounds"
        )
    doc = {"benchmark": "bench_ab", "runs": [run.row() | {"version": run.load} for run in runs], "summary": result}
    return rest.finish(args, failure, doc)


if __name__ == "__main__":
    sys.exit(main())

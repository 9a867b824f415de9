"""EAP-TLS authentication time through real FreeRADIUS 3.2, without and with the aaa-fmip module, in one run.

Two FreeRADIUS servers (threaded, as in production) run side by side from the same distribution configuration;
one has the aaa-fmip rlm_python3 module in post-auth and accounting, storing every session in a real
redis-server. eapol_test authenticates against them alternately, so drift on the machine affects both equally.
Each time is one whole eapol_test run (process start, EAP-TLS handshake, 7-9 RADIUS round trips), which is what
a NAS-side observer sees; the difference of the medians is the module's cost per authentication.

A third server, again without the module ("control"), takes its turn in the same alternation: how far two
identical servers drift apart in one run (at the median, p95 and p99) is the noise floor against which the
module's figures are to be read. --no-control leaves it out.

    python -m bench.bench_freeradius [--rounds 200] [--parallel 8] [--no-control]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.radius._stack import AR_NAS_IDENTIFIER, StackConfig, next_mac  # noqa: E402
from tests.support.freeradius import FreeRadius, make_pki, run_eapol_test  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402


def _percentile(samples: list[float], q: float) -> float:
    ms = sorted(samples)
    return ms[min(len(ms) - 1, int(len(ms) * q))]


def _summary(name: str, samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    return (
        f"{name:<22} n={len(ms):<4} median {statistics.median(ms):7.2f} ms   mean {statistics.fmean(ms):7.2f} ms   "
        f"p95 {_percentile(ms, 0.95):7.2f} ms   p99 {_percentile(ms, 0.99):7.2f} ms   max {ms[-1]:7.2f} ms"
    )


CONTROL = "control (no module)"


def _added(label: str, samples: list[float], base: list[float]) -> str:
    """``samples`` minus ``base`` at the median, p95 and p99, in ms."""
    median = (statistics.median(samples) - statistics.median(base)) * 1000
    p95, p99 = ((_percentile(samples, q) - _percentile(base, q)) * 1000 for q in (0.95, 0.99))
    return f"{label} median {median:+.2f} ms   p95 {p95:+.2f} ms   p99 {p99:+.2f} ms"


def _sequential(servers: dict[str, FreeRadius], rounds: int, work: Path) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in servers}
    for i in range(rounds):
        order = list(servers.items()) if i % 2 == 0 else list(reversed(servers.items()))
        for name, server in order:
            result = run_eapol_test(
                "TLS", server.pki, port=server.auth_port, work_dir=work, mac=next_mac(),
                nas_identifier=AR_NAS_IDENTIFIER,
            )  # fmt: skip
            if not result.success:
                raise SystemExit(f"authentication against {name} failed:\n{result.output[-2000:]}")
            times[name].append(result.seconds)
    return times


def _parallel(server: FreeRadius, loops: int, rounds: int, work: Path) -> tuple[float, int]:
    ok = [0]
    lock = threading.Lock()

    def loop(n: int) -> None:
        for _ in range(rounds):
            result = run_eapol_test(
                "TLS", server.pki, port=server.auth_port, work_dir=work / f"p{n}", mac=next_mac(),
                nas_identifier=AR_NAS_IDENTIFIER,
            )  # fmt: skip
            if result.success:
                with lock:
                    ok[0] += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=loop, args=(n,)) for n in range(loops)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start, ok[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=200, help="sequential authentications per server")
    parser.add_argument("--parallel", type=int, default=8, help="concurrent eapol_test loops in the parallel phase")
    parser.add_argument("--parallel-rounds", type=int, default=25, help="authentications per parallel loop")
    parser.add_argument(
        "--no-control", action="store_true", help="no second server without the module (no noise floor printed)"
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-freeradius-") as tmp:
        base = Path(tmp)
        pki = make_pki(base / "pki")
        redis = RedisServer(base / "redis")
        redis.start()
        config = StackConfig(base / "config", redis.url).write()
        servers = {
            "without module": FreeRadius(base / "plain", pki, mode=None),
            "with aaa-fmip module": FreeRadius(base / "module", pki, aaa_config=config),
        }
        if not args.no_control:
            servers[CONTROL] = FreeRadius(base / "control", pki, mode=None)
        try:
            for server in servers.values():
                server.start()
            _sequential(servers, 10, base / "warmup")
            times = _sequential(servers, args.rounds, base / "seq")
            print(f"EAP-TLS through FreeRADIUS 3.2 (threaded), {args.rounds} sequential authentications per server")
            for name, samples in times.items():
                print(_summary(name, samples))
            plain = statistics.median(times["without module"])
            module = statistics.median(times["with aaa-fmip module"])
            print(
                f"ratio of medians (with / without): {module / plain:.3f}   "
                f"added per authentication: {(module - plain) * 1000:+.2f} ms"
            )
            print(_added("added at", times["with aaa-fmip module"], times["without module"]))
            if CONTROL in times:
                print(_added("noise floor (control - without):", times[CONTROL], times["without module"]))
            print(f"\nparallel: {args.parallel} loops x {args.parallel_rounds} authentications")
            for name, server in servers.items():
                seconds, ok = _parallel(server, args.parallel, args.parallel_rounds, base / "par" / name[:4])
                print(f"{name:<22} {ok} ok in {seconds:6.2f} s = {ok / seconds:7.1f} authentications/s")
        finally:
            for server in servers.values():
                server.stop()
            redis.stop()
        print("\n" + servers["with aaa-fmip module"].log().splitlines()[-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())

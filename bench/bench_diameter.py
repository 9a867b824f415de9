"""Handover-key queries per second and latency over Diameter, next to the same query over REST, in one run.

One ``aaa-fmip serve`` process (REST and Diameter, as in production) stores its sessions in a real redis-server.
The benchmark ingests ``--sessions`` sessions, then asks for their HKs (one AR, selected by SPI) ``--requests``
times over each interface, alternating the order of the two runs each round so that drift on the machine
affects both equally:

* Diameter: one AR node (python-diameter, one TCP connection, as a Diameter peer has) with ``--concurrency``
  requests in flight; latency from handing the request to the node to its answer;
* REST: ``--concurrency`` HTTP/1.1 keep-alive connections (bench.loadgen, closed loop), one request in flight
  on each; latency from the first byte written to the last byte read.

Both numbers include the same service work (one SPI lookup, one HK derivation, one audit entry in Redis).

    python -m bench.bench_diameter [--requests 2000] [--concurrency 8] [--rounds 2]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from aaa_fmip import keys  # noqa: E402
from aaa_fmip.diameter.client import HandoverKeyClient  # noqa: E402
from aaa_fmip.diameter.dictionary import load_dictionary  # noqa: E402
from bench.loadgen import encode_request, percentile, run_closed  # noqa: E402
from tests.support.redis_server import RedisServer, free_port  # noqa: E402
from tests.support.service_proc import Credential, ServiceProcess, random_kek, render_config  # noqa: E402

PAR = ipaddress.IPv6Address("2001:db8:1::1")
AR_IDENTITY = "ar1.fmip.test"
SERVICE = "keys.fmip.test"
REALM = "fmip.test"


@dataclass
class Run:
    interface: str
    latencies: list[float]  # seconds
    elapsed: float  # seconds
    errors: int

    def line(self) -> str:
        ms = sorted(x * 1000 for x in self.latencies)
        rate = len(ms) / self.elapsed if self.elapsed else 0.0
        return (
            f"{self.interface:<9} n={len(ms):<6} {rate:8.0f} req/s   p50 {statistics.median(ms):6.2f} ms   "
            f"p99 {percentile(ms, 99):6.2f} ms   max {ms[-1]:6.2f} ms   errors {self.errors}"
        )


def diameter_run(client: HandoverKeyClient, spis: Sequence[int], requests: int, concurrency: int) -> Run:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    counter = iter(range(requests))

    def worker() -> None:
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            t0 = time.perf_counter()
            try:
                ok = client.handover_key(PAR, spi=spis[i % len(spis)]).ok
            except Exception:  # a timeout counts as an error, the run goes on
                ok = False
            dt = time.perf_counter() - t0
            with lock:
                latencies.append(dt)
                errors[0] += 0 if ok else 1

    threads = [threading.Thread(target=worker, name=f"bench-diameter-{n}") for n in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return Run("diameter", latencies, time.perf_counter() - start, errors[0])


def rest_run(port: int, token: str, spis: Sequence[int], requests: int, concurrency: int) -> Run:
    headers = [("Authorization", f"Bearer {token}"), ("Content-Type", "application/json")]
    bodies = [
        encode_request(
            "POST",
            "/v1/handover-keys",
            host=f"127.0.0.1:{port}",
            body=json.dumps({"ar_address": str(PAR), "spi": spis[i % len(spis)]}).encode(),
            headers=headers,
        )
        for i in range(requests)
    ]
    result = run_closed("127.0.0.1", port, bodies, connections=concurrency, timeout=10.0, max_seconds=600.0)
    errors = result.requests - result.statuses.get(200, 0)
    return Run("rest", list(result.latencies), result.elapsed, errors)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="HK queries per interface per round")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    # python-diameter warns on every non-blocking connect ("socket not yet ready"); keep the report readable.
    logging.getLogger("diameter").setLevel(logging.ERROR)

    with tempfile.TemporaryDirectory(prefix="bench-diameter-") as tmp:
        work = Path(tmp)
        redis = RedisServer(work / "redis")
        redis.start()
        ar = Credential.new("ar", "ar1", [str(PAR)], diameter_identity=AR_IDENTITY)
        aaa = Credential.new("aaa", "bench-aaa")
        diameter_port = free_port()
        extra = "\n".join(
            [
                "[diameter]",
                f'listen = "127.0.0.1:{diameter_port}"',
                f'origin_host = "{SERVICE}"',
                f'origin_realm = "{REALM}"',
                f"application_id = {load_dictionary().application_id}",
                "[[diameter.peers]]",
                f'identity = "{AR_IDENTITY}"',
                'role = "ar"',
            ]
        )
        config = render_config(store_url=redis.url, prefix="bench", credentials=[ar, aaa], extra=extra)
        service = ServiceProcess(work / "service", config=config, env={"AAA_FMIP_KEK": random_kek()})
        client: HandoverKeyClient | None = None
        try:
            service.start()
            with service.client(aaa) as http:
                spis = []
                for n in range(args.sessions):
                    dsrk, emsk_name = os.urandom(64), os.urandom(8)
                    body = {"dsrk": dsrk.hex(), "emsk_name": emsk_name.hex(), "user_name": f"mn{n}", "lifetime": 3600}
                    response = http.post("/v1/sessions", json=body)
                    response.raise_for_status()
                    spis.append(response.json()["spi"])
                    assert spis[-1] == keys.derive_hmk_visited(dsrk, emsk_name).spi
            client = HandoverKeyClient(
                origin_host=AR_IDENTITY, origin_realm=REALM, peer=SERVICE, host="127.0.0.1", port=diameter_port
            ).start()
            # Warm both paths (connections, imports, Redis scripts) before measuring.
            diameter_run(client, spis, 200, args.concurrency)
            rest_run(service.port, ar.token, spis, 200, args.concurrency)

            runs: dict[str, list[Run]] = {"diameter": [], "rest": []}
            for r in range(args.rounds):
                order = ("diameter", "rest") if r % 2 == 0 else ("rest", "diameter")
                for name in order:
                    if name == "diameter":
                        runs[name].append(diameter_run(client, spis, args.requests, args.concurrency))
                    else:
                        runs[name].append(rest_run(service.port, ar.token, spis, args.requests, args.concurrency))
            print(f"HK query by SPI, {args.sessions} sessions, {args.concurrency} in flight, {args.rounds} rounds:")
            for name, done in runs.items():
                merged = Run(
                    name,
                    [x for run in done for x in run.latencies],
                    sum(run.elapsed for run in done),
                    sum(run.errors for run in done),
                )
                print("  " + merged.line())
            failed = sum(run.errors for done in runs.values() for run in done)
            return 1 if failed else 0
        finally:
            if client is not None:
                client.stop()
            service.stop()
            redis.stop()


if __name__ == "__main__":
    sys.exit(main())

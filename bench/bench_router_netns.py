"""Handover signalling in network namespaces: FBU sent → FBack received at the node, p50 and p99.

    sudo python -m bench.bench_router_netns [--handovers 200] [--json FILE]

Builds the topology of the end-to-end tests (tests/router/_netns.py: a node, two routers with bridged access
links and a backbone, ``aaa-fmip serve`` on a real redis-server in the root namespace), runs ``aaa-fmip
router`` in both router namespaces and times, at the node (raw sockets, ``time.perf_counter``), the predictive
FBU until its FBack arrives (verification, HI/HAck with the NAR, FBack), in three modes side by side:

* ``warm``: the PAR holds the node's key (one session, FBUs with rising sequence numbers after the first);
* ``cold``: a new session for every FBU: the PAR fetches the key by SPI once (``POST /v1/handover-keys``);
* ``service``: the PAR holds no keys and asks ``POST /v1/fbu/verify`` for every FBU (the FBack's
  authenticator from ``POST /v1/fback/authenticator``);
* ``revocation``: the PAR holds a session's key, the session is revoked at the service; the time from the
  revocation to the first FBU refused with FBack 129 (FBUs every 20 ms): the revocation feed at work.

Needs root (network namespaces). Every FBack is checked (status 0, and the BADF for the modes with a key).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from ipaddress import IPv6Address
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aaa_fmip import mn
from aaa_fmip.wire import mh as mhwire
from tests.router._netns import NAR, PAR, Agent, MobileNode, NsService, Topology, router_config
from tests.support.redis_server import RedisServer
from tests.support.service_proc import Credential, random_kek, render_config

NCOA_PREFIX = IPv6Address("2001:db8:2::").packed[:8]
PCOA_POOL = 32


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_router_netns", description=__doc__.split("\n\n")[0])
    parser.add_argument("--handovers", type=int, default=200, help="FBUs per mode")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--workdir", type=Path, help="keep configurations and logs here (default: a temporary one)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_router_netns: needs root (network namespaces); skipped", file=sys.stderr)
        return 0
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        return _run(args.workdir, args.handovers, args.json)
    with tempfile.TemporaryDirectory(prefix="bench-router-netns-") as tmp:
        return _run(Path(tmp), args.handovers, args.json)


def _run(workdir: Path, count: int, json_path: Path | None) -> int:
    redis = RedisServer(workdir / "redis")
    redis.start()
    topo = Topology().up()
    agents: list[Agent] = []
    service: NsService | None = None
    node: MobileNode | None = None
    try:
        creds = {
            "par": Credential.new("ar", "par", [str(PAR)]),
            "nar": Credential.new("ar", "nar", [str(NAR)]),
            "aaa": Credential.new("aaa", "radius1"),
        }
        config = render_config(store_url=redis.url, prefix="b" + secrets.token_hex(4), credentials=list(creds.values()))
        service = NsService(workdir / "service", topo.service_host, config=config, env={"AAA_FMIP_KEK": random_kek()})
        service.start()
        for name, ns in (("par", topo.par), ("nar", topo.nar)):
            path = router_config(workdir, name, service.url)
            env = {"AAA_FMIP_ROUTER_SERVICE__TOKEN": creds[name].token, "AAA_FMIP_ROUTER_LOG__LEVEL": "INFO"}
            agents.append(Agent(topo, ns, path, env).start())
        node = MobileNode(topo)
        par = agents[0]
        client = service.client(creds["aaa"])
        index = 0
        last_mac = [""]

        def session() -> tuple[mn.HandoverKey, IPv6Address]:
            nonlocal index
            index += 1
            emsk, sid = secrets.token_bytes(64), b"\x0d" + secrets.token_bytes(64)
            mac = f"02-00-00-20-{index >> 8:02X}-{index & 0xFF:02X}"
            last_mac[0] = mac
            body = {"emsk": emsk.hex(), "eap_session_id": sid.hex(), "user_name": f"b{index}@example.net"}
            response = client.post("/v1/sessions", json={**body, "calling_station_id": mac, "lifetime": 3600})
            if response.status_code not in (200, 201):
                raise RuntimeError(f"ingest failed: {response.status_code} {response.text}")
            # A pool of PCoAs, configured once: a cold handover is about the key (a new session each time), and
            # an address configured a moment before may still be unknown to neighbour discovery.
            pcoa = IPv6Address(f"2001:db8:1::2:0:0:{index % PCOA_POOL + 1:x}")
            if index <= PCOA_POOL:
                topo.add_address(pcoa)
            return mn.derive_handover_key(mn.derive_master_key(emsk=emsk, eap_session_id=sid), PAR), pcoa

        def handover(hk: mn.HandoverKey, pcoa: IPv6Address, sequence: int, check: bool) -> float:
            packet = mn.build_fbu_packet(
                hk,
                sequence=sequence,
                lifetime_seconds=40,
                pcoa=pcoa,
                ncoa=IPv6Address(NCOA_PREFIX + pcoa.packed[8:]),  # one NCoA per node: the NAR checks ownership
                par=PAR,
                home_address_option=True,
            )
            assert node is not None
            node.drain()
            started = time.perf_counter()
            node.send_fbu(packet)
            answer = node.fback(sequence, timeout=5.0)
            elapsed = time.perf_counter() - started
            if answer is None:
                raise RuntimeError(f"no FBack for sequence {sequence}")
            fback: object
            if check:
                fback = mn.verify_fback(hk, answer[1], par=PAR, destination=pcoa)
            else:
                fback = mhwire.decode_mh(answer[1], source=PAR, destination=pcoa)
            if getattr(fback, "status", None) != 0:
                raise RuntimeError(f"FBack status {getattr(fback, 'status', None)}")
            return elapsed

        def revocation_to_reject(hk: mn.HandoverKey, pcoa: IPv6Address, mac: str) -> float:
            """Revoke a session whose key the PAR holds; FBUs every 20 ms until one gets FBack 129."""
            assert node is not None
            ncoa = IPv6Address(NCOA_PREFIX + pcoa.packed[8:])
            handover(hk, pcoa, 1, True)
            response = client.post("/v1/sessions/revoke", json={"calling_station_id": mac})
            if response.status_code != 200 or response.json()["revoked"] != 1:
                raise RuntimeError(f"revoke failed: {response.text}")
            started = time.perf_counter()
            for sequence in range(2, 500):
                packet = mn.build_fbu_packet(
                    hk, sequence=sequence, lifetime_seconds=40, pcoa=pcoa, ncoa=ncoa, par=PAR, home_address_option=True
                )
                node.drain()
                node.send_fbu(packet)
                answer = node.fback(sequence, timeout=2.0)
                if answer is not None and answer[1][6] == 129:
                    return time.perf_counter() - started
                time.sleep(0.02)
            raise RuntimeError("the revoked session was never refused")

        results: dict[str, list[float]] = {"warm": [], "cold": [], "service": [], "revocation": []}
        hk, pcoa = session()
        handover(hk, pcoa, 1, True)  # fetch once
        for i in range(count):
            results["warm"].append(handover(hk, pcoa, 2 + i, True))
        for _ in range(count):
            hk, pcoa = session()
            results["cold"].append(handover(hk, pcoa, 1, True))
        for _ in range(max(10, count // 10)):
            hk, pcoa = session()
            results["revocation"].append(revocation_to_reject(hk, pcoa, last_mac[0]))
        par.stop()
        par.env = {**par.env, "AAA_FMIP_ROUTER_KEYS__MODE": "service"}
        par.start()
        hk, pcoa = session()
        for i in range(count):
            results["service"].append(handover(hk, pcoa, 1 + i, True))
        client.close()
    finally:
        if node is not None:
            node.close()
        for agent in agents:
            agent.stop()
        if service is not None:
            service.stop()
        topo.down()
        redis.stop()

    summary = {
        mode: {
            "handovers": len(values),
            "p50_ms": round(statistics.median(values) * 1000, 3),
            "p99_ms": round(_percentile(values, 0.99) * 1000, 3),
            "max_ms": round(max(values) * 1000, 3),
        }
        for mode, values in results.items()
    }
    print(f"FBU sent -> FBack received at the node, {count} handovers per mode (revocation: revoke -> FBack 129)")
    for mode, row in summary.items():
        print(f"  {mode:<8} p50 {row['p50_ms']:8.3f} ms   p99 {row['p99_ms']:8.3f} ms   max {row['max_ms']:8.3f} ms")
    if json_path is not None:
        json_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

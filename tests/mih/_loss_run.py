"""Run inside a network namespace by test_loss.py: an MIH server and a UDP client on its loopback, N requests,
the outcome as one JSON line on stdout. Timers are shortened (the RFC 5677 defaults of 3 s / 2 retries are
checked by the sans-IO tests); everything else is the production code path."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from aaa_fmip.mih.client import UdpClient
from aaa_fmip.mih.information import InformationServer, neighbours_from_response
from aaa_fmip.mih.neighbours import NeighbourTable
from aaa_fmip.mih.server import MIHServer
from aaa_fmip.wire import mih
from tests.mih.test_information import TABLE

MN = b"mn1@example.org"
MOS = b"mos.example.org"
TIMERS: dict[str, Any] = {"initial_rto": 0.3, "min_rto": 0.2, "max_rto": 2.0, "retries": 8}


async def main(port: int, requests: int) -> dict[str, object]:
    info = InformationServer(MOS, NeighbourTable.from_toml(TABLE), clock=time.monotonic)
    server = MIHServer(MOS, info.handle_frame, **TIMERS)
    await server.start("127.0.0.1", port)
    client = await UdpClient.open(MN, "127.0.0.1", port, **TIMERS)
    ok = failed = 0
    try:
        for tid in range(1, requests + 1):
            query = mih.GetInformationRequest(
                source=MN,
                destination=MOS,
                transaction_id=tid,
                queries=(mih.IQBinData(querier_link_address=mih.LinkAddress.mac("02:00:00:00:00:01")),),
            )
            try:
                answer = mih.decode_message(
                    await client.request(mih.decode_frame(mih.encode_message(query)), timeout=60)
                )
            except TimeoutError:
                failed += 1
                continue
            assert isinstance(answer, mih.GetInformationResponse)
            routers = [str(a) for c in neighbours_from_response(answer)[0] for a in c.ip_addresses]
            ok += routers == ["2001:db8:2::1", "2001:db8:3::1"]
        # keep answering the server's retransmitted responses until it has its ACKs (bounded)
        deadline = time.monotonic() + 20
        while server.udp.pending and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        await client.close()
        await server.close()
    return {
        "ok": ok,
        "failed": failed,
        "client": client.core.counters,
        "server": server.udp.counters,
        "server_pending": server.udp.pending,
        "handled": info.counters.get("get-information", 0),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.port, args.requests))))
    sys.exit(0)

"""MIH_Get_Information round trips per second over TCP and over UDP (RFC 5677), side by side in one run.

    python -m bench bench_mih [--requests 2000] [--clients 1 8] [--neighbours 2] [--host 127.0.0.1]

The MoS is ``aaa-fmip mih`` in its own process (as an operator runs it), with a neighbour table in which every
point of attachment has ``--neighbours`` neighbours; each answer carries that many IE_CONTAINER_POA. The clients
run in this process, on one asyncio loop: ``--clients`` concurrent clients, each with its own TCP connection
or UDP socket, one outstanding request each, ``--requests`` requests in total per row.

* TCP: one frame each way per round trip (no MIH ACKs over TCP, TCP_NODELAY on both ends).
The MoS's per-source UDP token bucket (default 1000 datagrams/s) is raised out of the way: one benchmark
client sends more than that on its own.

* UDP: four datagrams per round trip: the request (ACK-Req), the MoS's ACK, the response (ACK-Req) and the
  client's ACK of it. A round trip ends when the response arrives; the client's ACK goes out right after.
  Retransmissions are counted (on loopback there should be none).

Reported: round trips per second, latency p50/p99/max in ms, and errors (requests without a Success answer).
The secured (DTLS/TLS-PSK) rows belong to the transport-security layer and are added by it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from aaa_fmip.mih.transport import TcpClient, UdpClient
from aaa_fmip.wire import mih

REPO_ROOT = Path(__file__).resolve().parent.parent
MN = b"bench-mn@example.org"
MOS = b"mos.example.org"


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        with socket.socket(family, socket.SOCK_STREAM) as tcp, socket.socket(family, socket.SOCK_DGRAM) as udp:
            tcp.bind((host, 0))
            port = int(tcp.getsockname()[1])
            try:
                udp.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no port free on both TCP and UDP")


def _config(directory: Path, host: str, port: int, neighbours: int) -> Path:
    count = neighbours + 1
    lines = [
        '[mih]\nmihf_id = "mos.example.org"\nudp_rate = 1000000\nudp_burst = 1000000\n',
        f'listen = "{"[" + host + "]" if ":" in host else host}:{port}"\n',
    ]
    for i in range(count):
        others = ", ".join(f'"ap{j}"' for j in range(count) if j != i)
        lines.append(
            f'\n[[poa]]\nname = "ap{i}"\nlink_address = "02:00:00:00:{i >> 8:02x}:{i & 0xFF:02x}"\n'
            f'router = "2001:db8:{i:x}::1"\nprefix = "2001:db8:{i:x}::/64"\nneighbours = [{others}]\n'
        )
    path = directory / "mos.toml"
    path.write_text("".join(lines), "utf-8")
    return path


def _request(tid: int) -> mih.Frame:
    msg = mih.GetInformationRequest(
        source=MN,
        destination=MOS,
        transaction_id=tid,
        queries=(mih.IQBinData(querier_link_address=mih.LinkAddress.mac("02:00:00:00:00:00")),),
    )
    return mih.decode_frame(mih.encode_message(msg))


def _ok(frame: mih.Frame, neighbours: int) -> bool:
    msg = mih.decode_message(frame)
    return (
        isinstance(msg, mih.GetInformationResponse)
        and msg.status == mih.Status.SUCCESS
        and msg.results is not None
        and len(msg.results[0]) == neighbours
    )


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(-(-p * len(ordered) // 100)) - 1))]


async def _row(transport: str, host: str, port: int, clients: int, total: int, neighbours: int) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    retransmissions = 0
    per_client = [total // clients + (1 if i < total % clients else 0) for i in range(clients)]

    async def one(count: int) -> None:
        nonlocal errors, retransmissions
        client: TcpClient | UdpClient
        if transport == "tcp":
            client = await TcpClient.connect(MN, host, port)
        else:
            client = await UdpClient.open(MN, host, port)
        try:
            for _ in range(count):
                frame = _request(client.next_transaction_id())
                start = time.perf_counter()
                try:
                    answer = await client.request(frame, timeout=60)
                except (TimeoutError, ConnectionError):
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - start)
                errors += not _ok(answer, neighbours)
        finally:
            if isinstance(client, UdpClient):
                await asyncio.sleep(0.01)  # let the last ACK leave
                retransmissions += client.core.counters.get("retransmissions", 0)
            await client.close()

    began = time.perf_counter()
    await asyncio.gather(*(one(n) for n in per_client))
    elapsed = time.perf_counter() - began
    return {
        "n": len(latencies),
        "rate": len(latencies) / elapsed if elapsed else 0.0,
        "p50": _percentile(latencies, 50) * 1000 if latencies else 0.0,
        "p99": _percentile(latencies, 99) * 1000 if latencies else 0.0,
        "max": max(latencies) * 1000 if latencies else 0.0,
        "errors": errors,
        "retransmissions": retransmissions,
    }


async def _wait_ready(host: str, port: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            client = await TcpClient.connect(MN, host, port)
            await client.close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the MoS did not start") from None
            await asyncio.sleep(0.1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_mih", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per row (default 2000)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8], help="concurrent clients (default 1 8)")
    parser.add_argument("--neighbours", type=int, default=2, help="neighbours in each answer (default 2)")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-mih-") as tmp:
        port = _free_port(args.host)
        config = _config(Path(tmp), args.host, port, args.neighbours)
        proc = subprocess.Popen(
            [sys.executable, "-m", "aaa_fmip.cli", "mih", "--config", str(config), "--log-level", "warning"],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            asyncio.run(_wait_ready(args.host, port, proc))
            rows = []
            for transport in ("tcp", "udp"):
                for clients in args.clients:
                    result = asyncio.run(_row(transport, args.host, port, clients, args.requests, args.neighbours))
                    rows.append((transport, clients, result))
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate(timeout=5)

    print(
        f"MIH_Get_Information round trips, aaa-fmip mih on {args.host} (own process), {args.neighbours} neighbours "
        f"per answer; Python {platform.python_version()}, {os.cpu_count()} CPUs"
    )
    print(
        f"{'transport':<10}{'clients':>8}{'n':>8}{'rt/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}"
        f"{'errors':>8}{'retx':>6}"
    )
    status = 0
    for transport, clients, r in rows:
        print(
            f"{transport:<10}{clients:>8}{int(r['n']):>8}{r['rate']:>10.0f}{r['p50']:>10.2f}{r['p99']:>10.2f}"
            f"{r['max']:>10.2f}{int(r['errors']):>8}{int(r['retransmissions']):>6}"
        )
        status = status or (1 if r["errors"] else 0)
    return status


if __name__ == "__main__":
    sys.exit(main())

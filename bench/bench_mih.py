"""MIH_Get_Information round trips per second over TCP and UDP (RFC 5677) and over TLS/DTLS 1.2-PSK, side by side
in one run, and the time to the first answer of a fresh session (handshake included).

    python -m bench bench_mih [--requests 2000] [--clients 1 8] [--neighbours 2] [--first 20] [--host 127.0.0.1]

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

* TLS-PSK / DTLS-PSK: a second ``aaa-fmip mih`` with a ``[mih.psk]`` table, keyed by a real key service
  (``aaa-fmip serve`` on a redis-server of its own, started here); each client is a node with its own AAA
  session (``POST /v1/sessions``) and derives its PSK itself (:func:`aaa_fmip.mih.secure.open_session`). The
  same frames as TCP/UDP, inside TLS records (TCP) or DTLS records with MIH ACKs (UDP).

Reported: round trips per second, latency p50/p99/max in ms, and errors (requests without a Success answer);
then, over ``--first`` fresh sessions one after the other, the time from opening the session (TCP connect /
UDP socket, plus the (D)TLS handshake, in which the MoS fetches the key from the key service) to the first
answer, p50 and max; and, as ``key-fetch``, the MoS's share of that: one ``POST /v1/mih/psk`` as
:class:`~aaa_fmip.mih.psk.RestKeySource` makes it (on a kept-alive connection), timed from this process.
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
from typing import Literal

from aaa_fmip import mn
from aaa_fmip.keys import MihPsk
from aaa_fmip.mih.client import TcpClient, UdpClient
from aaa_fmip.mih.psk import RestKeySource
from aaa_fmip.mih.secure import SecureMIHClient, open_session
from aaa_fmip.wire import mih

REPO_ROOT = Path(__file__).resolve().parent.parent
MN = b"bench-mn@example.org"
MOS = b"mos1.example.net"  # the MIHF-ID the key service binds the mos1 token to (tests/mih_sec/_stack)


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


def _config(directory: Path, host: str, port: int, neighbours: int, psk: str = "", name: str = "mos.toml") -> Path:
    count = neighbours + 1
    lines = [
        f'[mih]\nmihf_id = "{MOS.decode()}"\nudp_rate = 1000000\nudp_burst = 1000000\n',
        f'listen = "{"[" + host + "]" if ":" in host else host}:{port}"\n',
        psk,
    ]
    for i in range(count):
        others = ", ".join(f'"ap{j}"' for j in range(count) if j != i)
        lines.append(
            f'\n[[poa]]\nname = "ap{i}"\nlink_address = "02:00:00:00:{i >> 8:02x}:{i & 0xFF:02x}"\n'
            f'router = "2001:db8:{i:x}::1"\nprefix = "2001:db8:{i:x}::/64"\nneighbours = [{others}]\n'
        )
    path = directory / name
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


Client = TcpClient | UdpClient | SecureMIHClient


async def _open(transport: str, host: str, port: int, key: MihPsk | None) -> Client:
    if transport == "tcp":
        return await TcpClient.connect(MN, host, port)
    if transport == "udp":
        return await UdpClient.open(MN, host, port)
    assert key is not None
    kind: Literal["tcp", "udp"] = "tcp" if transport == "tls-psk" else "udp"
    return await open_session(key, key.mihf_id, host, port, transport=kind, node_mihf_id=MN)


def _retransmissions(client: Client) -> int:
    if isinstance(client, UdpClient):
        return client.core.counters.get("retransmissions", 0)
    if isinstance(client, SecureMIHClient) and client._session.udp is not None:
        return client._session.udp.counters.get("retransmissions", 0)
    return 0


async def _row(
    transport: str, host: str, port: int, clients: int, total: int, neighbours: int, keys: Sequence[MihPsk] = ()
) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    retransmissions = 0
    per_client = [total // clients + (1 if i < total % clients else 0) for i in range(clients)]

    async def one(index: int, count: int) -> None:
        nonlocal errors, retransmissions
        client = await _open(transport, host, port, keys[index] if keys else None)
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
            if transport in ("udp", "dtls-psk"):
                await asyncio.sleep(0.01)  # let the last ACK leave
            retransmissions += _retransmissions(client)
            await client.close()

    began = time.perf_counter()
    await asyncio.gather(*(one(i, n) for i, n in enumerate(per_client)))
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


async def _first_answers(transport: str, host: str, port: int, count: int, key: MihPsk | None) -> list[float]:
    """Seconds from opening a fresh session to its first answer, ``count`` sessions one after the other."""
    times = []
    for _ in range(count):
        start = time.perf_counter()
        client = await _open(transport, host, port, key)
        try:
            await client.request(_request(client.next_transaction_id()), timeout=60)
            times.append(time.perf_counter() - start)
        finally:
            if transport in ("udp", "dtls-psk"):
                await asyncio.sleep(0.005)  # let the last ACK leave
            await client.close()
    return times


async def _key_fetches(source: RestKeySource, key: MihPsk, count: int) -> list[float]:
    times = []
    await source(key.identity)  # the MoS's client is warm after its first handshake; so is this one then
    for _ in range(count):
        start = time.perf_counter()
        got = await source(key.identity)
        times.append(time.perf_counter() - start)
        if got != key.psk.reveal():
            raise RuntimeError("the key service handed out another key than the node derived")
    return times


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


def _start_mos(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "aaa_fmip.cli", "mih", "--config", str(config), "--log-level", "warning"],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=5)


def main(argv: Sequence[str] | None = None) -> int:
    from tests.mih_sec._stack import ingest, start_stack
    from tests.support.redis_server import RedisServer

    parser = argparse.ArgumentParser(prog="bench_mih", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per row (default 2000)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8], help="concurrent clients (default 1 8)")
    parser.add_argument("--neighbours", type=int, default=2, help="neighbours in each answer (default 2)")
    parser.add_argument("--first", type=int, default=20, help="fresh sessions timed to their first answer")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)

    rows = []
    first: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-mih-") as tmp:
        directory = Path(tmp)
        port, secure_port = _free_port(args.host), _free_port(args.host)
        redis = RedisServer(directory / "redis")
        redis.start()
        procs: list[subprocess.Popen[str]] = []
        stack = None
        try:
            stack = start_stack(directory / "service", redis.url)
            (directory / "mos.token").write_text(stack.mos1.token, "utf-8")
            psk = f'\n[mih.psk]\nservice_url = "{stack.service.url}"\ntoken_file = "mos.token"\n'
            secure_config = _config(directory, args.host, secure_port, args.neighbours, psk, "secure.toml")
            procs.append(_start_mos(_config(directory, args.host, port, args.neighbours)))
            procs.append(_start_mos(secure_config))
            sessions = [ingest(stack) for _ in range(max(args.clients))]
            keys = [mn.derive_mih_psk(s.master, MOS.decode()) for s in sessions]
            asyncio.run(_wait_ready(args.host, port, procs[0]))
            asyncio.run(_wait_ready(args.host, secure_port, procs[1]))
            for transport, at in (("tcp", port), ("udp", port), ("tls-psk", secure_port), ("dtls-psk", secure_port)):
                for clients in args.clients:
                    result = asyncio.run(_row(transport, args.host, at, clients, args.requests, args.neighbours, keys))
                    rows.append((transport, clients, result))
            for transport, at in (("tcp", port), ("udp", port), ("tls-psk", secure_port), ("dtls-psk", secure_port)):
                first[transport] = asyncio.run(_first_answers(transport, args.host, at, args.first, keys[0]))
            # what the secured MoS does inside each handshake: one POST /v1/mih/psk to the key service
            source = RestKeySource(stack.service.url, stack.mos1.token, MOS.decode())
            first["key-fetch"] = asyncio.run(_key_fetches(source, keys[0], args.first))
        finally:
            for proc in procs:
                _stop(proc)
            if stack is not None:
                stack.service.stop()
            redis.stop()

    print(
        f"MIH_Get_Information round trips, aaa-fmip mih on {args.host} (own process, plain and [mih.psk]), "
        f"{args.neighbours} neighbours per answer; Python {platform.python_version()}, {os.cpu_count()} CPUs"
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
    print()
    print(f"time to the first answer of a fresh session ({args.first} sessions, one after the other)")
    print(f"{'session':<10}{'n':>8}{'p50 ms':>10}{'max ms':>10}")
    for transport, times in first.items():
        p50, worst = _percentile(times, 50) * 1000, max(times) * 1000
        print(f"{transport:<10}{len(times):>8}{p50:>10.2f}{worst:>10.2f}")
    return status


if __name__ == "__main__":
    sys.exit(main())

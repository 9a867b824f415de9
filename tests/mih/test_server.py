"""The asyncio MIH server on real loopback sockets: TCP and UDP on one port, the Information Server behind it,
malformed input, and tshark decoding a live capture of the exchange."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from aaa_fmip.mih.client import TcpClient, UdpClient
from aaa_fmip.mih.information import InformationServer, neighbours_from_response
from aaa_fmip.mih.neighbours import NeighbourTable
from aaa_fmip.mih.server import MIHServer
from aaa_fmip.wire import mih
from tests.mih.test_information import TABLE
from tests.support.pcap import tshark_binary, tshark_fields

MN = b"mn1@example.org"
MOS = b"mos.example.org"
HOST = "127.0.0.1"


def run(body: Callable[[MIHServer], Awaitable[Any]], **options: Any) -> Any:
    async def main() -> Any:
        info = InformationServer(MOS, NeighbourTable.from_toml(TABLE), clock=time.monotonic)
        server = MIHServer(MOS, info.handle_frame, **options)
        await server.start(HOST, 0)
        try:
            async with asyncio.timeout(60):
                return await body(server)
        finally:
            await server.close()

    return asyncio.run(main())


def get_information(tid: int) -> mih.Frame:
    msg = mih.GetInformationRequest(
        source=MN,
        destination=MOS,
        transaction_id=tid,
        queries=(mih.IQBinData(querier_link_address=mih.LinkAddress.mac("02:00:00:00:00:01")),),
    )
    return mih.decode_frame(mih.encode_message(msg))


def neighbour_routers(frame: mih.Frame) -> list[str]:
    msg = mih.decode_message(frame)
    assert isinstance(msg, mih.GetInformationResponse) and msg.status == mih.Status.SUCCESS
    (result,) = neighbours_from_response(msg)
    return [str(a) for c in result for a in c.ip_addresses]


async def exchange(server: MIHServer) -> None:
    tcp = await TcpClient.connect(MN, HOST, server.port)
    try:
        discover = mih.CapabilityDiscoverRequest(source=MN, destination=MOS, transaction_id=1)
        answer = mih.decode_message(await tcp.request(mih.decode_frame(mih.encode_message(discover))))
        assert isinstance(answer, mih.CapabilityDiscoverResponse) and answer.transports == 0xC000
        assert neighbour_routers(await tcp.request(get_information(2))) == ["2001:db8:2::1", "2001:db8:3::1"]
    finally:
        await tcp.close()
    udp = await UdpClient.open(MN, HOST, server.port)
    try:
        assert neighbour_routers(await udp.request(get_information(3))) == ["2001:db8:2::1", "2001:db8:3::1"]
        # let the client's ACK of the response reach the server
        for _ in range(100):
            if server.udp.pending == 0:
                break
            await asyncio.sleep(0.01)
    finally:
        await udp.close()


def test_tcp_and_udp_on_one_port() -> None:
    async def body(server: MIHServer) -> dict[str, int]:
        await exchange(server)
        return dict(server.udp.counters)

    counters = run(body)
    assert counters["acks-sent"] == 1  # our request asked for an ACK
    assert counters["acked"] == 1  # the server's response was acknowledged by the client
    assert counters.get("retransmissions", 0) == 0


def test_malformed_input_does_not_stop_the_server() -> None:
    async def body(server: MIHServer) -> dict[str, int]:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for junk in (b"", b"\x10", b"\x10\x00\x44\x01\x00\x01\x00\x05\x01\x09", os.urandom(64), bytes(1500)):
                sock.sendto(junk, (HOST, server.port))
        finally:
            sock.close()
        reader, writer = await asyncio.open_connection(HOST, server.port)
        writer.write(b"\x10\x00\x44\x01\x00\x01\x00\x03\x01\x09\x00")  # TLV overruns its frame
        writer.write(mih.encode_frame(get_information(5)))
        await writer.drain()
        data = await reader.readexactly(8)
        length = mih.frame_length(data)
        assert length is not None
        data += await reader.readexactly(length - 8)
        assert neighbour_routers(mih.decode_frame(data)) == ["2001:db8:2::1", "2001:db8:3::1"]
        writer.close()
        await writer.wait_closed()
        await loop.run_in_executor(None, time.sleep, 0.05)
        await exchange(server)  # and everything still works
        return {**server.udp.counters, **server.counters}

    counters = run(body)
    assert counters["malformed"] >= 4
    assert counters["udp-malformed-frame"] >= 4
    assert counters["tcp-malformed-frame"] == 1


def test_a_udp_flood_from_one_source_gives_bounded_work_and_state() -> None:
    async def body(server: MIHServer) -> tuple[int, float, int, int, list[str]]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        began = time.monotonic()
        try:
            for i in range(3000):
                with contextlib.suppress(BlockingIOError):
                    sock.sendto(mih.encode_frame(get_information(i % 4096)), (HOST, server.port))
                if i % 200 == 0:
                    await asyncio.sleep(0)  # let the server read
            await loop.run_in_executor(None, time.sleep, 0.2)
        finally:
            sock.close()
        elapsed = time.monotonic() - began
        info = server.handler.__self__  # type: ignore[attr-defined]
        handled = info.counters.get("get-information", 0)
        state = (server.udp.sources, server.udp.seen_entries())
        # another node is still served
        udp = await UdpClient.open(b"mn2@example.org", HOST, server.port)
        try:
            routers = neighbour_routers(await udp.request(get_information(7)))
        finally:
            await udp.close()
        return handled, elapsed, state[0], state[1], routers

    handled, elapsed, sources, seen, routers = run(body, rate=100.0, burst=50.0, max_seen_per_source=32)
    assert handled <= 50 + 100 * elapsed + 1  # the token bucket bounds the work one source causes
    assert sources == 1 and seen <= 32
    assert routers == ["2001:db8:2::1", "2001:db8:3::1"]


def test_idle_tcp_connections_are_closed() -> None:
    async def body(server: MIHServer) -> bytes:
        reader, writer = await asyncio.open_connection(HOST, server.port)
        try:
            return await reader.read(10)  # the server closes: EOF
        finally:
            writer.close()

    assert run(body, tcp_idle_timeout=0.2) == b""


def test_response_too_large_for_udp_is_not_sent_but_tcp_gets_it() -> None:
    big = TABLE + "".join(
        f'\n[[poa]]\nname = "x{i}"\nlink_address = "02:00:00:00:10:{i:02x}"\nrouter = "2001:db8:10:{i:x}::1"\n'
        f'prefix = "2001:db8:10:{i:x}::/64"\n'
        for i in range(40)
    )

    async def main() -> tuple[int, int]:
        info = InformationServer(MOS, NeighbourTable.from_toml(big), clock=time.monotonic)
        server = MIHServer(MOS, info.handle_frame)
        await server.start(HOST, 0)
        try:
            everything = mih.GetInformationRequest(
                source=MN, destination=MOS, transaction_id=9, queries=(mih.IQBinData(),)
            )
            frame = mih.decode_frame(mih.encode_message(everything))
            udp = await UdpClient.open(MN, HOST, server.port)
            tcp = await TcpClient.connect(MN, HOST, server.port)
            try:
                over_udp = await udp.request(frame)
                over_tcp = await tcp.request(frame)
            finally:
                await udp.close()
                await tcp.close()
            return len(mih.encode_frame(over_udp)), len(neighbour_routers_all(over_tcp))
        finally:
            await server.close()

    udp_size, tcp_count = asyncio.run(main())
    assert udp_size <= 1232  # trimmed to the IPv6 minimum path MTU
    assert tcp_count == 43


def neighbour_routers_all(frame: mih.Frame) -> list[str]:
    msg = mih.decode_message(frame)
    assert isinstance(msg, mih.GetInformationResponse)
    return [str(a) for result in neighbours_from_response(msg) for c in result for a in c.ip_addresses]


@pytest.mark.slow
def test_tshark_decodes_a_live_capture() -> None:
    with tempfile.TemporaryDirectory(prefix="mih-capture-") as tmp:
        pcap = Path(tmp) / "live.pcap"

        async def body(server: MIHServer) -> int:
            port = server.port
            env = {**os.environ, "WIRESHARK_CONFIG_DIR": tmp, "LC_ALL": "C"}
            capture = subprocess.Popen(
                [tshark_binary(), "-n", "-i", "lo", "-f", f"port {port}", "-w", str(pcap)],
                stderr=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                env=env,
                text=True,
            )
            try:
                assert capture.stderr is not None
                deadline = time.monotonic() + 30
                loop = asyncio.get_running_loop()
                while time.monotonic() < deadline:
                    line = await loop.run_in_executor(None, capture.stderr.readline)
                    if "Capture started" in line or not line:  # printed once the capture really runs
                        break
                await exchange(server)
                await asyncio.sleep(0.5)
            finally:
                capture.terminate()
                try:
                    capture.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    capture.kill()
                    capture.wait(timeout=5)
            return port

        port = run(body)
        # the test's port is not 4551: tell tshark to decode it as MIH
        rows = tshark_fields(
            pcap,
            ["udp.srcport", "tcp.srcport", "mih.service_id", "mih.opcode", "mih.tid", "mih.acq_req", "mih.acq_resp"],
            display_filter="mih",
            extra_args=["-d", f"udp.port=={port},mih", "-d", f"tcp.port=={port},mih"],
        )
    seen = {
        (
            "udp" if r["udp.srcport"] else "tcp",
            int(r["mih.service_id"][0], 0),
            int(r["mih.opcode"][0], 0),
            int(r["mih.tid"][0]),
            r["mih.acq_req"][0],
            r["mih.acq_resp"][0],
        )
        for r in rows
    }
    assert ("tcp", 1, 1, 1, "0", "0") in seen  # Capability_Discover.request, no ACK bits over TCP
    assert ("tcp", 1, 2, 1, "0", "0") in seen
    assert ("tcp", 4, 1, 2, "0", "0") in seen  # Get_Information.request
    assert ("tcp", 4, 2, 2, "0", "0") in seen
    assert ("udp", 4, 1, 3, "1", "0") in seen  # the request asks for an ACK
    assert ("udp", 4, 1, 3, "0", "1") in seen  # the server's ACK
    assert ("udp", 4, 2, 3, "1", "0") in seen  # the response asks for one too
    assert ("udp", 4, 2, 3, "0", "1") in seen  # and the client acknowledges it

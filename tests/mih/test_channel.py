"""The ByteChannel plug-in point: a channel that transforms every octet sits between the sockets and the MIH
cores on UDP and TCP, and a channel that reports ``closed`` ends its TCP connection. (The transform is a
stand-in to test the contract of the seam; the DTLS/TLS-PSK channels are tested with openssl as their peer.)"""

from __future__ import annotations

import asyncio
import socket
import time

from aaa_fmip.mih.information import InformationServer
from aaa_fmip.mih.neighbours import NeighbourTable
from aaa_fmip.mih.server import ByteChannel, MIHServer
from aaa_fmip.mih.transport import Peer, Transport
from aaa_fmip.wire import mih
from tests.mih.test_information import TABLE
from tests.mih.test_server import get_information, neighbour_routers

MOS = b"mos.example.org"
HOST = "127.0.0.1"


def xor(data: bytes) -> bytes:
    return bytes(b ^ 0x5A for b in data)


class XorChannel:
    def __init__(self, close_after: int | None) -> None:
        self._out: list[bytes] = []
        self.payloads = 0
        self.close_after = close_after

    def receive(self, data: bytes) -> list[bytes]:
        self.payloads += 1
        return [xor(data)]

    def send(self, payload: bytes) -> None:
        self._out.append(xor(payload))

    def data_to_send(self) -> list[bytes]:
        out, self._out = self._out, []
        return out

    @property
    def closed(self) -> bool:
        return self.close_after is not None and self.payloads >= self.close_after


def test_a_channel_wraps_udp_and_tcp_and_can_close() -> None:
    made: list[tuple[Transport, Peer]] = []

    def factory(transport: Transport, peer: Peer) -> ByteChannel:
        made.append((transport, peer))
        return XorChannel(close_after=1 if transport == "tcp" else None)

    async def main() -> tuple[list[str], list[str], bytes, dict[str, int]]:
        info = InformationServer(MOS, NeighbourTable.from_toml(TABLE), clock=time.monotonic)
        server = MIHServer(MOS, info.handle_frame, channels=factory)
        await server.start(HOST, 0)
        loop = asyncio.get_running_loop()
        try:
            # UDP: the request goes out transformed; the ACK and the response come back transformed
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.connect((HOST, server.port))
            await loop.sock_sendall(sock, mih.encode_frame(get_information(1)))  # plain: not understood
            request = get_information(2)
            request = mih.Frame(mih.Header(**{**request.header.__dict__, "ack_req": True}), request.tlvs)
            await loop.sock_sendall(sock, xor(mih.encode_frame(request)))
            frames: list[mih.Frame] = []
            async with asyncio.timeout(10):
                while len(frames) < 2:
                    frames.append(mih.decode_frame(xor(await loop.sock_recv(sock, 2048))))
            sock.close()
            ack = next(f for f in frames if f.header.ack_rsp)
            response = next(f for f in frames if not f.header.ack_rsp)
            assert ack.header.transaction_id == 2
            over_udp = neighbour_routers(response)
            # TCP: transformed both ways; the channel closes after one payload, and so does the connection
            reader, writer = await asyncio.open_connection(HOST, server.port)
            writer.write(xor(mih.encode_frame(get_information(3))))
            await writer.drain()
            async with asyncio.timeout(10):
                data = xor(await reader.read(65536))
                rest = await reader.read(10)
            writer.close()
            over_tcp = neighbour_routers(mih.decode_frame(data))
            return over_udp, over_tcp, rest, {**server.counters}
        finally:
            await server.close()

    over_udp, over_tcp, rest, counters = asyncio.run(main())
    assert over_udp == over_tcp == ["2001:db8:2::1", "2001:db8:3::1"]
    assert rest == b""  # closed by the server once the channel said so
    assert counters["udp-malformed-frame"] == 1  # the untransformed datagram
    assert [t for t, _ in made] == ["udp", "tcp"]  # one UDP channel per peer, one per TCP connection

"""MIH clients over TCP (the RFC 5677 default) and UDP (MIH ACKs, retransmission by :class:`DatagramCore`): for
tests, benchmarks, and nodes that query a MoS."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable
from typing import Any

from aaa_fmip.mih.transport import DatagramCore, Event, MessageReceived, Peer, StreamCore, TransactionFailed
from aaa_fmip.wire.mih import (
    MIH_PORT,
    Frame,
)

# --- clients (tests, benchmarks, and nodes that query a MoS) ------------------------------------------------


class _ClientBase:
    def __init__(self, mihf_id: bytes) -> None:
        self.mihf_id = mihf_id
        self._next_tid = 1

    def next_transaction_id(self) -> int:
        tid = self._next_tid
        self._next_tid = tid % 0xFFF + 1
        return tid


class TcpClient(_ClientBase):
    """Requests over one TCP connection (the RFC 5677 default), one outstanding transaction at a time."""

    def __init__(self, mihf_id: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        super().__init__(mihf_id)
        self._reader, self._writer = reader, writer
        self._core = StreamCore(writer.get_extra_info("peername"))
        self._ready: list[Frame] = []

    @classmethod
    async def connect(cls, mihf_id: bytes, host: str, port: int = MIH_PORT) -> TcpClient:
        reader, writer = await asyncio.open_connection(host, port)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(mihf_id, reader, writer)

    async def request(self, frame: Frame, *, timeout: float = 10.0) -> Frame:
        self._writer.write(StreamCore.encode(frame))
        await self._writer.drain()
        tid = frame.header.transaction_id
        async with asyncio.timeout(timeout):
            while True:
                for i, got in enumerate(self._ready):
                    if got.header.transaction_id == tid:
                        return self._ready.pop(i)
                data = await self._reader.read(65536)
                if not data:
                    raise ConnectionError("the MIH peer closed the connection")
                for event in self._core.receive(data):
                    if isinstance(event, MessageReceived):
                        self._ready.append(event.frame)

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()


class _UdpClientProtocol(asyncio.DatagramProtocol):
    def __init__(self, client: UdpClient) -> None:
        self.client = client

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.client._input(data, addr)


class UdpClient(_ClientBase):
    """Requests over UDP with MIH ACKs and RFC 2988 retransmission (RFC 5677 §6), via :class:`DatagramCore`."""

    def __init__(self, mihf_id: bytes, server: Peer, clock: Callable[[], float] = time.monotonic, **options: Any):
        super().__init__(mihf_id)
        self.server = server
        self.clock = clock
        # a client talks to servers it chose: no per-source rate limit unless asked for
        options.setdefault("rate", 1e9)
        options.setdefault("burst", 1e9)
        self.core = DatagramCore(mihf_id, **options)
        self._transport: asyncio.DatagramTransport | None = None
        self._waiters: dict[int, asyncio.Future[Frame]] = {}
        self._timer: asyncio.TimerHandle | None = None

    @classmethod
    async def open(cls, mihf_id: bytes, host: str, port: int = MIH_PORT, **options: Any) -> UdpClient:
        loop = asyncio.get_running_loop()
        client = cls(mihf_id, (host, port), **options)
        transport, _ = await loop.create_datagram_endpoint(lambda: _UdpClientProtocol(client), remote_addr=(host, port))
        client._transport = transport
        client.server = transport.get_extra_info("peername")
        return client

    def _input(self, data: bytes, addr: Peer) -> None:
        now = self.clock()
        for event in self.core.receive(data, addr, now):
            self._event(event)
        self._flush()

    def _event(self, event: Event) -> None:
        if isinstance(event, MessageReceived):
            waiter = self._waiters.pop(event.frame.header.transaction_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(event.frame)
        elif isinstance(event, TransactionFailed):
            waiter = self._waiters.pop(event.transaction_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_exception(TimeoutError(f"no MIH ACK for TID {event.transaction_id} after retransmissions"))

    def _flush(self) -> None:
        assert self._transport is not None
        for data, _peer in self.core.datagrams_to_send():
            self._transport.sendto(data)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.core.next_timer()
        if deadline is not None:
            self._timer = asyncio.get_running_loop().call_later(max(0.0, deadline - self.clock()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        for event in self.core.handle_timer(self.clock()):
            self._event(event)
        self._flush()

    async def request(self, frame: Frame, *, timeout: float = 120.0) -> Frame:
        waiter: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._waiters[frame.header.transaction_id] = waiter
        self.core.send(frame, self.server, self.clock())
        self._flush()
        try:
            async with asyncio.timeout(timeout):
                return await waiter
        finally:
            self._waiters.pop(frame.header.transaction_id, None)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._transport is not None:
            self._transport.close()

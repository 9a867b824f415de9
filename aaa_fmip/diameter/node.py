"""python-diameter's Node and Application, adapted to stop promptly and to tell handlers who sent a request.

python-diameter 0.9.0 runs every peer connection on two non-daemon threads that poll their queues every 5 s,
its socket loop wakes every ``wakeup_interval`` (6 s), its statistics thread sleeps 2 s at a time, and
``Node.stop`` polls the peer table once a second: a stop takes about 9 s and an exception before ``stop``
leaves the process hanging. :class:`Node` here keeps the library's protocol handling (CER/CEA, DWR/DWA,
DPR/DPA, 3010 for unknown peers) and replaces only the waiting: every thread it or its connections start is
woken on stop and joined within a bounded time. :class:`PooledApplication` runs request handlers on a
``ThreadPoolExecutor`` that is shut down (and joined) with the node.

Requests are dispatched by Application-Id *and* the peer the request arrived from: an application only sees
requests from the peers it was registered for, others are answered 3007 DIAMETER_APPLICATION_UNSUPPORTED.
The handler learns the sending peer from :func:`received_from`.

Conformance fixes over the library (RFC 6733): every answer with a 3xxx Result-Code carries the E bit, the CEA
with 3010 included (§7.1.3); a request missing a required base AVP gets 5005 with the AVP zero-filled to its
minimum length in Failed-AVP (§7.5); an answer no request waits for (one arriving after its request timed out)
is dropped, logged and counted (§6.2.1); applications in ``vendor_applications`` are advertised in CER/CEA as
Vendor-Specific-Application-Id (§6.11, §5.3). And each received message keeps the octets it arrived as
(:func:`wire_avps`): python-diameter rebuilds the AVPs it knows from attributes, with its own M bits and order,
which a relaying agent must not do. The library offers no hook for the octets, so its connection reader's
``Message`` is replaced by a subclass that only records them (python-diameter is pinned to 0.9.0).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

from diameter.message import Message, MessageHeader
from diameter.message import constants as c
from diameter.message.avp.grouped import FailedAvp, VendorSpecificApplicationId
from diameter.node import Node as _LibNode
from diameter.node import peer as _lib_peer
from diameter.node._helpers import validate_message_avps
from diameter.node.application import Application as _LibApplication
from diameter.node.application import WaitingMessage
from diameter.node.peer import PEER_READY_STATES

from aaa_fmip.diameter.avps import WireAvp, missing_library_avp, split_avps
from aaa_fmip.diameter.results import APPLICATION_UNSUPPORTED, MISSING_AVP, UNABLE_TO_COMPLY, is_protocol_error

log = logging.getLogger("aaa_fmip.diameter")

_RECEIVED_FROM: Final = "_aaa_fmip_received_from"
_ROUTE_TO: Final = "_aaa_fmip_route_to"
_WIRE: Final = "_aaa_fmip_wire"

DEFAULT_WAKEUP_INTERVAL: Final = 0.5  # s; bounds timer checks (watchdog, CER/CEA, reconnect) and nothing else


class NotRoutable(Exception):
    """No ready connection to the peer a request must go to."""


def received_from(message: Any) -> str:
    """The DiameterIdentity of the peer connection a request arrived on ("" if unknown)."""
    return str(getattr(message, _RECEIVED_FROM, ""))


def route_to(message: Any, identity: str) -> None:
    """Mark an outgoing request to be sent to that peer, whatever its Destination-Realm."""
    setattr(message, _ROUTE_TO, identity.lower())


class _WireMessage(Message):  # type: ignore[misc]
    """What python-diameter's connection reader parses with: ``Message`` that also keeps the octets it parsed."""

    @classmethod
    def from_bytes(cls, msg_data: bytes, plain_msg: bool = False) -> Any:
        message = Message.from_bytes(msg_data, plain_msg)
        setattr(message, _WIRE, bytes(msg_data))
        return message


if _lib_peer.Message is Message:  # once per process; the reader calls ``Message.from_bytes`` and nothing else
    _lib_peer.Message = _WireMessage


def wire_bytes(message: Any) -> bytes | None:
    """The octets a received message arrived as (None for a message built here)."""
    data = getattr(message, _WIRE, None)
    return data if isinstance(data, bytes) else None


def wire_avps(message: Any) -> list[WireAvp]:
    """The AVPs of a message as they arrived (order, flags, Vendor-Ids, octets); for a message built here, as
    they would be sent."""
    data = wire_bytes(message)
    if data is None:
        return [WireAvp(avp, avp.as_bytes()) for avp in message.avps]
    return split_avps(data)


class VerbatimMessage(Message):  # type: ignore[misc]
    """A message sent with AVPs given as octets (a relayed message: nothing re-encoded)."""

    def __init__(self, header: MessageHeader, raw_avps: list[bytes]) -> None:
        super().__init__(header, [])
        self.raw_avps = raw_avps

    def as_bytes(self) -> bytes:
        body = b"".join(self.raw_avps)
        self.header.length = 20 + len(body)
        return bytes(self.header.as_bytes()) + body


class _WakeMessage:
    """Put on a connection's write queue to wake its thread; encodes to nothing."""

    name = "wake"

    def as_bytes(self) -> bytes:
        return b""


class Node(_LibNode):  # type: ignore[misc]
    """A python-diameter node that stops in well under a second and leaves no thread behind."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.wakeup_interval = DEFAULT_WAKEUP_INTERVAL
        self.dpr_timeout: float = 1.0  # s to wait for DPAs on stop (RFC 6733 §5.4)
        self._all_connections: list[Any] = []
        self._connections_lock = threading.Lock()
        self._app_peers: dict[int, tuple[Any, frozenset[str]]] = {}
        self._stopped = False
        # Application-Id → Vendor-Id: advertised as Vendor-Specific-Application-Id (RFC 6733 §6.11).
        self.vendor_applications: dict[int, int] = {}
        # Called with each answer dropped because no request waits for it (e.g. to count it).
        self.on_unmatched_answer: Callable[[Any], None] | None = None
        # Our own check (below) replaces the library's: it puts the missing AVPs in Failed-AVP zero-filled.
        self._check_required_avps = True
        self.validate_received_request_avps = False

    # ------------------------------------------------------------------------------------------ registration

    def serve(self, app: Any, peers: Iterable[str], *, application_ids: Iterable[int] = ()) -> None:
        """Register ``app`` for requests with its Application-Id (and ``application_ids``) from ``peers``."""
        allowed = frozenset(p.lower() for p in peers)
        for app_id in (app.application_id, *application_ids):
            self._app_peers[app_id] = (app, allowed)

    # ------------------------------------------------------------------------------------------ library hooks

    def _add_peer_connection(self, conn: Any, peer_socket: Any, proto: int) -> Any:
        with self._connections_lock:
            self._all_connections = [x for x in self._all_connections if _threads_alive(x)]
            self._all_connections.append(conn)
        return super()._add_peer_connection(conn, peer_socket, proto)

    def _collect_stats(self, _thread: Any) -> None:
        # The library samples statistics every 60 s with 2 s sleeps; we export our own metrics instead.
        _thread._stop_event.wait()

    def send_message(self, conn: Any, message: Any) -> None:
        header = message.header
        if not header.is_request:
            result_code = getattr(message, "result_code", None)  # absent on relayed (verbatim) answers
            if isinstance(result_code, int) and is_protocol_error(result_code):
                header.is_error = True  # RFC 6733 §7.1.3, also for the library's own CEA 3010 and 3007
        if header.command_code == c.CMD_CAPABILITIES_EXCHANGE and self.vendor_applications:
            self._advertise_vendor_applications(message)
        super().send_message(conn, message)

    def _advertise_vendor_applications(self, message: Any) -> None:
        # RFC 6733 §6.11: a vendor-specific application is advertised in a Vendor-Specific-Application-Id
        # {Vendor-Id, Auth-Application-Id}, not in a bare Auth-Application-Id.
        ids = list(message.auth_application_id or [])
        ours = [i for i in ids if i in self.vendor_applications]
        if not ours:
            return
        message.auth_application_id = [i for i in ids if i not in self.vendor_applications]
        message.vendor_specific_application_id = [
            *(message.vendor_specific_application_id or []),
            *(VendorSpecificApplicationId(vendor_id=self.vendor_applications[i], auth_application_id=i) for i in ours),
        ]

    def _receive_message(self, conn: Any, msg: Any) -> None:
        if msg.header.is_request and self._check_required_avps:
            missing = validate_message_avps(msg)
            if missing:
                log.warning(
                    "diameter request refused: required AVP missing",
                    extra={"peer": conn.host_identity, "avps": [a.code for a in missing]},
                )
                err = self._generate_answer(conn, msg)
                err.result_code = MISSING_AVP
                err.error_message = "A required AVP is missing"
                # RFC 6733 §7.5: the missing AVP's code and Vendor-Id with a zero-filled minimum-length value.
                err.failed_avp = FailedAvp(additional_avps=[missing_library_avp(a.code, a.vendor_id) for a in missing])
                self.send_message(conn, err)
                return
        super()._receive_message(conn, msg)
        if not msg.header.is_request:
            # The library records every message with an Origin-Host as awaiting an answer, answers included,
            # and never forgets them.
            self._origin_waiting_answer.pop(
                f"{msg.header.hop_by_hop_identifier}:{msg.header.end_to_end_identifier}", None
            )

    def _receive_app_request(self, conn: Any, message: Any) -> None:
        identity = (conn.host_identity or "").lower()
        entry = self._app_peers.get(message.header.application_id)
        if entry is None or identity not in entry[1]:
            log.warning(
                "diameter request refused: application not offered to this peer",
                extra={"peer": identity, "application_id": message.header.application_id},
            )
            err = self._generate_answer(conn, message)
            err.result_code = APPLICATION_UNSUPPORTED
            err.header.is_error = True  # RFC 6733 §7.1.3: protocol errors set the E bit
            self.send_message(conn, err)
            return
        setattr(message, _RECEIVED_FROM, identity)
        waiting = self._peer_waiting_answer.setdefault(conn.host_identity, {})
        waiting[message.header.hop_by_hop_identifier] = time.time()
        entry[0].receive_request(message)

    def _receive_app_answer(self, conn: Any, message: Any) -> None:
        message_id = f"{message.header.hop_by_hop_identifier}:{message.header.end_to_end_identifier}"
        if message_id not in self._app_waiting_answer:
            # RFC 6733 §6.2.1: an answer whose Hop-by-Hop Identifier matches no pending request is discarded.
            # The usual cause: it came after its request timed out and the requester was already answered.
            log.warning(
                "diameter answer dropped: no request is waiting for it (late or unknown)",
                extra={
                    "peer": conn.host_identity,
                    "command_code": message.header.command_code,
                    "hop_by_hop": f"{message.header.hop_by_hop_identifier:#x}",
                    "result_code": getattr(message, "result_code", None),
                },
            )
            if self.on_unmatched_answer is not None:
                self.on_unmatched_answer(message)
            return
        super()._receive_app_answer(conn, message)
        # The library keeps this entry forever; one per request we sent.
        self._app_waiting_answer.pop(message_id, None)

    def route_answer(self, message: Any) -> tuple[Any, Any]:
        # The library's version iterates live dicts that the reader and socket threads change concurrently
        # ("dictionary changed size during iteration" loses the answer); this one works on snapshots.
        hop_by_hop = message.header.hop_by_hop_identifier
        identity = next(
            (host for host, waiting in list(self._peer_waiting_answer.items()) if hop_by_hop in waiting), None
        )
        if identity is None:
            raise NotRoutable(f"no peer is waiting for an answer with Hop-by-Hop {hop_by_hop:#x}")
        self._peer_waiting_answer[identity].pop(hop_by_hop, None)
        conn = next((x for x in list(self.connections.values()) if x.host_identity == identity), None)
        if conn is None or conn.state not in PEER_READY_STATES:
            raise NotRoutable(f"the connection to {identity} is gone")
        return conn, message

    def route_request(self, app: Any, message: Any) -> tuple[Any, Any]:
        target = getattr(message, _ROUTE_TO, None)
        if target is None:
            routed: tuple[Any, Any] = super().route_request(app, message)
            return routed
        conn = next(
            (
                x
                for x in list(self.connections.values())
                if x.host_identity.lower() == target and x.state in PEER_READY_STATES
            ),
            None,
        )
        if conn is None:
            raise NotRoutable(f"no open connection to {target}")
        if not message.header.hop_by_hop_identifier:
            message.header.hop_by_hop_identifier = conn.hop_by_hop_seq.next_sequence()
        message_id = f"{message.header.hop_by_hop_identifier}:{message.header.end_to_end_identifier}"
        self._app_waiting_answer[message_id] = app
        return conn, message

    # ------------------------------------------------------------------------------------------------- state

    def peer_ready(self, identity: str) -> bool:
        lowered = identity.lower()
        return any(
            x.host_identity.lower() == lowered and x.state in PEER_READY_STATES for x in list(self.connections.values())
        )

    def wait_for_peer(self, identity: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.peer_ready(identity):
                return True
            time.sleep(0.02)
        return self.peer_ready(identity)

    def wait_for_peer_closed(self, identity: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.peer_ready(identity):
                return True
            time.sleep(0.02)
        return not self.peer_ready(identity)

    # -------------------------------------------------------------------------------------------------- stop

    def stop(self, wait_timeout: float | None = None, force: bool = False) -> None:
        """DPR to every open peer, wait for the DPAs (bounded), then stop and join every thread."""
        if self._stopped:
            return
        if not self._started:
            self._stopped = True
            self._close_interrupt_pipe()
            return
        self._stopped = True
        self._stopping = True
        dpr_timeout = self.dpr_timeout if wait_timeout is None else wait_timeout
        if not force:
            for conn in list(self.connections.values()):
                if conn.state in PEER_READY_STATES:
                    with contextlib.suppress(Exception):
                        self.send_dpr(conn)
            deadline = time.monotonic() + dpr_timeout
            while self.connections and time.monotonic() < deadline:
                time.sleep(0.01)

        self._connection_thread.stop()
        self._wake_socket_loop()
        _join(self._connection_thread)
        self._stat_collect_thread.stop()
        _join(self._stat_collect_thread)

        for listener in [*self.tcp_sockets, *self.sctp_sockets]:
            with contextlib.suppress(OSError):
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            listener.close()

        for app in self.applications:
            app.stop()

        with self._connections_lock:
            connections = list(self._all_connections)
        for conn in connections:
            conn.close(signal_node=False)
            conn._read_buffer_queue.put(b"")
            conn._write_msg_queue.put(_WakeMessage())
        for conn in connections:
            _join(conn._read_thread)
            _join(conn._write_thread)
        self._close_interrupt_pipe()
        leftover = [t.name for t in self.threads() if t.is_alive()]
        if leftover:  # pragma: no cover - would mean a library change; reported, never hidden
            log.error("diameter threads still alive after stop", extra={"threads": leftover})

    def _close_interrupt_pipe(self) -> None:
        for fd in (self.interrupt_read, self.interrupt_write):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _wake_socket_loop(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self.interrupt_write, b"\xff" * 6)

    def threads(self) -> list[threading.Thread]:
        """Every thread this node started (for tests and diagnostics)."""
        threads: list[threading.Thread] = [self._connection_thread, self._stat_collect_thread]
        with self._connections_lock:
            for conn in self._all_connections:
                threads += [conn._read_thread, conn._write_thread]
        for app in self.applications:
            threads += list(getattr(app, "threads", lambda: [])())
        return threads


def _join(thread: threading.Thread, timeout: float = 5.0) -> None:
    if thread.ident is not None:  # started (a failed start() leaves threads that never ran)
        thread.join(timeout)


def _threads_alive(conn: Any) -> bool:
    return bool(conn._read_thread.is_alive() or conn._write_thread.is_alive())


Handler = Callable[[Any], Any]


class PooledApplication(_LibApplication):  # type: ignore[misc]
    """An auth application whose requests run on a bounded thread pool; ``handler(request) -> answer | None``."""

    def __init__(self, application_id: int, handler: Handler, *, workers: int = 16, name: str = "diameter") -> None:
        super().__init__(application_id, is_auth_application=True)
        self._handler = handler
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"aaa-fmip-{name}")
        self._send_lock = threading.Lock()
        self._request_lock = threading.Lock()
        self._stopped = False

    def receive_request(self, message: Any) -> None:
        # Called on the connection's reader thread: hand over and return at once.
        try:
            self._pool.submit(self._process, message)
        except RuntimeError:  # shut down: the peer will see the connection close
            log.debug("diameter request dropped during shutdown")

    def _process(self, message: Any) -> None:
        try:
            answer = self._handler(message)
        except Exception:
            log.exception("diameter request handler failed")
            answer = self.generate_answer(message, result_code=UNABLE_TO_COMPLY)
        if answer is not None:
            self.send_answer(answer)

    def send_answer(self, message: Any) -> None:
        try:
            with self._send_lock:  # the library's answer routing tables are not thread-safe
                super().send_answer(message)
        except Exception as exc:  # the peer went away while we worked: nothing to answer to
            log.info("diameter answer not sent", extra={"reason": str(exc)})

    def request_to(self, message: Any, peer: str, timeout: float) -> Any:
        """Send ``message`` to the connected peer ``peer`` and wait for its answer.

        Unlike the library's ``send_request`` this never rewrites the header (a forwarded STR keeps
        Application-Id 0) and routes by peer, not by Destination-Realm. Raises :class:`NotRoutable` when the
        peer is not connected or we are stopping, :class:`TimeoutError` when no answer comes in time.
        """
        if self._stopped:
            raise NotRoutable("stopping")
        if not message.header.end_to_end_identifier:
            message.header.end_to_end_identifier = self.node.end_to_end_seq.next_sequence()
        route_to(message, peer)
        waiting = WaitingMessage()
        with self._request_lock:  # the library's Hop-by-Hop counter is not thread-safe
            conn, _ = self.node.route_request(self, message)
            hop_by_hop = message.header.hop_by_hop_identifier
            self._answer_waiting[hop_by_hop] = waiting
        try:
            self.node.send_message(conn, message)
            if not waiting.event.wait(timeout):
                raise TimeoutError(f"no answer from {peer} within {timeout:g} s")
            if waiting.answer is None:
                raise NotRoutable("stopping")
            return waiting.answer
        finally:
            self._answer_waiting.pop(hop_by_hop, None)
            # An answer after this point matches no request: the node drops and counts it.
            self.node._app_waiting_answer.pop(f"{hop_by_hop}:{message.header.end_to_end_identifier}", None)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        super().stop()  # releases every send_request() still waiting for an answer
        self._pool.shutdown(wait=True, cancel_futures=True)

    def threads(self) -> list[threading.Thread]:
        return list(getattr(self._pool, "_threads", ()))

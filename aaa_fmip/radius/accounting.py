"""Revocation on RADIUS accounting, and a pyrad-based accounting listener for deployments whose accounting
does not pass through our FreeRADIUS module (``aaa-fmip radius-accounting``).

Which sessions a Stop revokes (docs/freeradius.md, "Revocation"):

1. the sessions named by our ``Class`` value(s) — ``aaa-fmip:<token>``, which the module put in the
   Access-Accept and the NAS echoes in every Accounting-Request of that session (RFC 2865 §5.25,
   RFC 2866 §5.1) — exactly the session that stopped;
2. only when no Class of ours is present (a NAS that drops Class, or a session whose ingest failed): every
   session of that Calling-Station-Id (the MN's MAC);
3. never by User-Name alone: one user may hold sessions on several devices.

An Accounting-On or Accounting-Off (RFC 2866 §5.1, Acct-Status-Type 7 and 8: the NAS has just started, or is
about to stop, so none of the sessions it carried is still up) revokes every session ingested through that NAS:
those carrying :func:`aaa_fmip.service.nas_external_id` of its NAS-Identifier, else of its address (the same
:meth:`NasIdentity.label` that ingest recorded).

The listener: pyrad decodes and verifies; this module only moves datagrams and calls the service. Requests
from addresses outside ``radius.accounting.clients`` and requests whose Request Authenticator (RFC 2866 §3)
or Message-Authenticator (RFC 3579 §3.2) does not verify with the shared secret are dropped and logged,
without an answer. An Accounting-Response is sent only once the request has been acted on (RFC 2866 §4.1:
"MUST NOT transmit any Accounting-Response reply if it is unable to successfully record"); a Stop that could
not be processed (store down) is left unanswered so that the NAS retransmits it. What it did is counted in the
runtime's Prometheus metrics (``aaa_fmip_radius_events_total{interface="radius-accounting"}``, with the
FreeRADIUS module's names where the event is the same: ``accounting_stop``, ``sessions_revoked``, ...).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol, cast

from aaa_fmip.metrics import Metrics
from aaa_fmip.model import Caller, NasIdentity
from aaa_fmip.radius.attributes import AccountingInput
from aaa_fmip.service import nas_external_id

EXTERNAL_ID_PREFIX: Final = "radius-class:"
INTERFACE: Final = "radius-accounting"  # the metrics ``interface`` label of the listener
REVOKE_CAUSE: Final = "accounting-stop"
_NAS_RESTART_ROUNDS: Final = 1_000  # x up to 256 sessions a round (the store's limit per external id)

if TYPE_CHECKING:
    from aaa_fmip.bootstrap import Runtime

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ServicePort(Protocol):
    def revoke_matching(
        self,
        caller: Caller,
        *,
        calling_station_id: str | None = None,
        external_id: str | None = None,
        cause: str = "accounting-stop",
    ) -> int: ...


def revoke_for_stop(service: ServicePort, caller: Caller, request: AccountingInput) -> int:
    """Revoke what one Accounting Stop ends (rules in the module docstring); returns how many sessions."""
    if not request.is_stop:
        return 0
    tokens = request.our_class_tokens()
    if tokens:
        return sum(
            service.revoke_matching(caller, external_id=EXTERNAL_ID_PREFIX + token, cause=REVOKE_CAUSE)
            for token in tokens
        )
    if request.calling_station_id:
        return service.revoke_matching(caller, calling_station_id=request.calling_station_id, cause=REVOKE_CAUSE)
    return 0


def revoke_for_nas_restart(service: ServicePort, caller: Caller, request: AccountingInput) -> int:
    """Revoke every session of the NAS that sent an Accounting-On/Off (module docstring); returns how many."""
    cause, label = request.nas_restart, request.nas.label()
    if cause is None or label is None:
        return 0
    total = 0
    for _ in range(_NAS_RESTART_ROUNDS):  # each round takes the longest-lived sessions left, up to 256
        revoked = service.revoke_matching(caller, external_id=nas_external_id(label), cause=cause)
        total += revoked
        if not revoked:
            break
    return total


def revoke_for_accounting(service: ServicePort, caller: Caller, request: AccountingInput) -> int | None:
    """What an Accounting-Request revokes: a Stop, or an Accounting-On/Off; None for any other request."""
    if request.is_stop:
        return revoke_for_stop(service, caller, request)
    if request.nas_restart is not None:
        return revoke_for_nas_restart(service, caller, request)
    return None


def accounting_kind(request: AccountingInput) -> str:
    """The request's kind for logs and counters: "stop", "accounting-on", "accounting-off" or "other"."""
    return "stop" if request.is_stop else request.nas_restart or "other"


# ------------------------------------------------------------------------------------------------ listener


def accounting_input_from_pyrad(pkt: Any) -> AccountingInput:
    """An :class:`AccountingInput` from a decoded :class:`pyrad.packet.AcctPacket`."""

    def first(name: str) -> Any:
        try:
            values = pkt[name]
        except KeyError:
            return None
        return values[0] if values else None

    def text(name: str) -> str | None:
        value = first(name)
        if value is None:
            return None
        return value if isinstance(value, str) else str(value)

    classes = tuple(bytes(v) for v in (pkt.get("Class") or ()))
    v4 = first("NAS-IP-Address")
    v6 = first("NAS-IPv6-Address")
    status = first("Acct-Status-Type")
    return AccountingInput(
        status_type=str(status) if status is not None else None,
        user_name=text("User-Name"),
        calling_station_id=text("Calling-Station-Id"),
        classes=classes,
        acct_session_id=text("Acct-Session-Id"),
        nas=NasIdentity(
            nas_identifier=text("NAS-Identifier"),
            nas_ip_address=ipaddress.IPv4Address(v4) if v4 else None,
            nas_ipv6_address=ipaddress.IPv6Address(v6) if v6 else None,
        ),
    )


@dataclass(frozen=True)
class Outcome:
    answer: bool
    revoked: int = 0


class AccountingListener(asyncio.DatagramProtocol):
    """One UDP socket receiving Accounting-Requests (RFC 2866). Start with :meth:`start`."""

    def __init__(
        self,
        service: ServicePort,
        *,
        secret: bytes,
        clients: Iterable[IPNetwork],
        dictionary: Any,
        caller: Caller,
        metrics: Metrics,
        timeout: float = 2.0,
        logger: logging.Logger | None = None,
    ) -> None:
        if not secret:
            raise ValueError("the RADIUS shared secret must not be empty")
        self.service = service
        self._secret = secret
        self.clients = tuple(clients)
        self.dictionary = dictionary
        self.caller = caller
        self.timeout = timeout
        self.log = logger or logging.getLogger("aaa_fmip.radius.accounting")
        self.metrics = metrics
        self.transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def count(self, event: str, amount: int = 1) -> None:
        self.metrics.count_radius(INTERFACE, event, amount)

    @property
    def counts(self) -> dict[str, int]:
        """The listener's counters that are not zero, by name (read back from the metrics)."""
        return self.metrics.radius_counts(INTERFACE)

    # -- lifecycle --------------------------------------------------------------------------------------

    async def start(self, host: str, port: int) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(host, port))
        self.transport = transport
        sockname = transport.get_extra_info("sockname")
        return str(sockname[0]), int(sockname[1])

    async def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # CPython's selector datagram transport does not inherit from asyncio.DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    # -- receiving --------------------------------------------------------------------------------------

    def _allowed(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.clients)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        from pyrad.packet import AccountingRequest, AcctPacket

        host = str(addr[0])
        if not self._allowed(host):
            self.count("unknown_client")
            self.log.warning("accounting request from %s dropped: not a configured client", host)
            return
        try:
            pkt = AcctPacket(secret=self._secret, dict=self.dictionary, packet=data)
        except Exception as exc:  # pyrad raises PacketError and others on malformed input
            self.count("malformed")
            self.log.warning("malformed accounting request from %s dropped: %s", host, type(exc).__name__)
            return
        if pkt.code != AccountingRequest:
            self.count("not_accounting")
            self.log.warning("RADIUS code %d from %s dropped: not an Accounting-Request", pkt.code, host)
            return
        if not pkt.VerifyAcctRequest():
            self.count("bad_authenticator")
            self.log.warning(
                "accounting request from %s dropped: Request Authenticator does not verify (wrong shared secret?)",
                host,
            )
            return
        if pkt.message_authenticator and not pkt.verify_message_authenticator():
            self.count("bad_message_authenticator")
            self.log.warning("accounting request from %s dropped: Message-Authenticator does not verify", host)
            return
        task = asyncio.ensure_future(self._handle(pkt, addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, pkt: Any, addr: tuple[Any, ...]) -> None:
        host = str(addr[0])
        try:
            request = accounting_input_from_pyrad(pkt)
        except Exception as exc:
            self.count("malformed")
            self.log.warning("accounting request from %s dropped: %s", host, type(exc).__name__)
            return
        outcome = Outcome(answer=True)
        if request.is_stop or request.nas_restart is not None:
            outcome = await self._revoke(request, host)
        if not outcome.answer:
            return
        reply = pkt.CreateReply()
        if self.transport is not None:
            self.transport.sendto(reply.ReplyPacket(), addr)
            self.count("answered")

    async def _revoke(self, request: AccountingInput, host: str) -> Outcome:
        loop = asyncio.get_running_loop()
        kind = accounting_kind(request)
        what = "accounting stop" if kind == "stop" else kind  # for the log: "accounting stop", "accounting-on"
        try:
            revoked = await asyncio.wait_for(
                loop.run_in_executor(None, revoke_for_accounting, self.service, self.caller, request), self.timeout
            )
        except TimeoutError:  # the revocation goes on in its thread; a retransmission finds less (or nothing) left
            self.count("revoke_timeout")
            self.log.error("%s from %s not processed within %g s; left for retransmission", what, host, self.timeout)
            return Outcome(answer=False)
        except Exception as exc:
            self.count("revoke_error")
            self.log.error("%s from %s not processed (%s); left for retransmission", what, host, type(exc).__name__)
            return Outcome(answer=False)
        revoked = revoked or 0
        self.count("accounting_" + kind.removeprefix("accounting-"))  # accounting_stop, _on, _off (as the module)
        if revoked:
            self.count("sessions_revoked", revoked)
        self.log.info("%s from %s: %d session(s) revoked", what, host, revoked)
        return Outcome(answer=True, revoked=revoked)


# ---------------------------------------------------------------------------------- in another process' thread


class ListenerThread:
    """An :class:`AccountingListener` on its own event loop in a daemon thread, for processes that are not
    asyncio-based, such as a program embedding the listener beside blocking code (``aaa-fmip radius-accounting``
    runs the listener on its own event loop instead; ``aaa-fmip serve`` does not start one)."""

    def __init__(self, listener: AccountingListener, host: str, port: int) -> None:
        self.listener = listener
        self.address: tuple[str, int] | None = None
        self._host, self._port = host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="radius-accounting", daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            try:
                self.address = await self.listener.start(self._host, self._port)
            except BaseException as exc:
                self._error = exc
                self._ready.set()
                return
            self._ready.set()
            try:
                await self._stop.wait()
            finally:
                await self.listener.close()

        asyncio.run(main())

    def start(self, timeout: float = 10.0) -> ListenerThread:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"the RADIUS accounting listener did not start within {timeout} s")
        if self._error is not None:
            raise self._error
        return self

    def stop(self, timeout: float = 5.0) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        self._thread.join(timeout)


def build_listener(runtime: Runtime, *, logger: logging.Logger | None = None) -> AccountingListener:
    """The listener ``runtime.settings.radius.accounting`` describes (ConfigError if that section is absent)."""
    from aaa_fmip.errors import ConfigError
    from aaa_fmip.radius.dictionary import pyrad_dictionary

    settings = runtime.settings
    accounting = settings.radius.accounting
    if accounting is None:
        raise ConfigError("the [radius.accounting] section (listen, secret, clients) is required", key="radius")
    return AccountingListener(
        runtime.service,
        secret=accounting.secret.reveal(),
        clients=accounting.clients,
        dictionary=pyrad_dictionary(settings.radius.vendor_id),
        caller=Caller(name="radius-accounting", role="aaa"),
        metrics=runtime.metrics,
        timeout=max(settings.store.timeout * 4, 1.0),
        logger=logger,
    )


def start(runtime: Runtime) -> ListenerThread:
    """Start the accounting listener of ``runtime``'s settings in a thread; ``.stop()`` ends it."""
    accounting = runtime.settings.radius.accounting
    listener = build_listener(runtime)
    assert accounting is not None  # build_listener checked
    return ListenerThread(listener, accounting.listen.host, accounting.listen.port).start()

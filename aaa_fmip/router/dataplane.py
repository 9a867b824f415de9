"""The FMIPv6 handover data plane, sans-IO: what to tunnel, deliver, buffer, flush and drop (RFC 5568 §5.4).

:class:`DataPlane` is the forwarding state of one router, PAR for nodes leaving and NAR for nodes arriving. It
does no IO and reads no clock: the adapter (:mod:`aaa_fmip.router.dataplane_driver`) hands it the signalling
outcomes of :class:`~aaa_fmip.router.core.RouterCore` (an accepted FBU, an accepted HI), the packets it
captured or received, the node's arrival, and the time; it answers with effects.

PAR (RFC 5568 §3.1, §5.4): once the FBU is accepted (the FBack sent), packets addressed to the PCoA are
captured (:class:`AddCapture`: a host route into the forwarder) and tunnelled to the NAR, IPv6 in IPv6 as
RFC 2473 frames it (:class:`Encapsulate`: outer source the PAR's address, destination the NAR's, Next Header
41, the inner packet unchanged; the kernel already decremented its Hop Limit when it forwarded it into the
capture). The binding lasts the FBack's lifetime (RFC 5568 §5.6: "tens of seconds", the FBU's lifetime), a
later FBU for the same PCoA replaces it, an FBU with lifetime 0 (the node came back) ends it; the capture is
removed when it ends (:class:`RemoveCapture`).

NAR: an accepted HI (HAck code < 128) creates a binding for the PCoA it names, scoped to the PAR that sent it:
tunnelled packets from any other source, or for a PCoA no HI named, are dropped (the NAR is no open relay).
The decapsulated packet still carries the PCoA as its destination; the NAR forwards it to the node on its link
(:class:`Deliver`: to the node's link-layer address from the HI's MN-LLA option, or the UNA's Target LLA),
decrementing its Hop Limit as for any hop (RFC 2473 §3.2: the exit point forwards the original packet; one
that would leave with Hop Limit 0 is dropped, counted as ``hop-limit``). RFC 5568 §3.1 ends the tunnel at the
NCoA instead; ending it at the NAR spares the node a tunnel endpoint and the NAR a proxy neighbour entry
(docs/router.md §10).

Buffering (HI U=1, RFC 5568 §6.2.1.1): until the node is attached the NAR queues what arrives, bounded by
packets per node, packets in all, and seconds a packet may wait; what does not fit or waits too long is
dropped and counted (:class:`Dropped`). *Attached* means: the node's Unsolicited Neighbor Advertisement
(RFC 5568 §6.3) for the NCoA arrived. That is the signal the RFC defines for exactly this moment: the node
sends it first thing on the new link, it names the NCoA and carries the node's link-layer address, and it needs
no sniffing of the node's traffic (the "first packet from the node" alternative) nor waiting for neighbour
unreachability detection to confirm reachability (a probe round trip later). A reactive HI (Code 1) means the
node is there already (its FBU came through this router). An UNA that came before the HI (reactive mode) is
remembered for a while. A node that never sends an UNA loses its buffered packets to the seconds limit.

Flush (RFC 5568 §5.4: "the NAR ... forward[s] buffered packets" and should not overwhelm the new link): the
first ``drain_burst`` packets (default 5) back to back, the rest paced at ``drain_factor`` times the rate at
which they arrived. The RFC suggests the arrival rate itself; with a flow still arriving at that rate the
backlog would never shrink, so the default is twice that (the backlog is gone after as long as it took to
build). Packets arriving while a backlog drains join its tail: the order of the flow is kept.

Hand-written: no library models FMIPv6 forwarding state; the IPv6 header is only read (Version and
Destination, RFC 8200 §3), never rewritten.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from ipaddress import IPv6Address
from typing import Final, TypeAlias

from aaa_fmip.router.core import HandoverFinished, HiAccepted, Notice

__all__ = [
    "AddCapture",
    "DataPlane",
    "DataPlaneEffect",
    "DataPlaneLimits",
    "Deliver",
    "Dropped",
    "Encapsulate",
    "RemoveCapture",
]

_IPV6_HEADER: Final = 40  # RFC 8200 §3
_REMEMBER_UNA: Final = 10.0  # seconds an UNA without a binding is kept for a reactive HI that follows it
_MAX_REMEMBERED_UNAS: Final = 4096


@dataclass(frozen=True)
class DataPlaneLimits:
    """Bounds of the NAR's buffers and the pace of a flush (``[dataplane]`` in the router configuration)."""

    buffer_packets: int = 1000  # per node
    total_buffer_packets: int = 20_000  # all nodes together
    buffer_seconds: float = 2.0  # longest a packet waits for its node
    drain_burst: int = 5  # RFC 5568 §5.4: packets sent back to back when the node attaches
    drain_factor: float = 2.0  # the rest at this multiple of the rate they arrived at (0: no pacing)
    nar_lifetime: float = 30.0  # seconds a NAR binding lives after its HI or its last tunnelled packet

    def __post_init__(self) -> None:
        if self.buffer_packets < 0 or self.total_buffer_packets < 0 or self.drain_burst < 1:
            raise ValueError("buffer sizes must be >= 0 and drain_burst >= 1")
        if self.buffer_seconds <= 0 or self.nar_lifetime <= 0 or self.drain_factor < 0:
            raise ValueError("buffer_seconds and nar_lifetime must be > 0, drain_factor >= 0")


# --- effects -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AddCapture:
    """PAR: send packets addressed to ``pcoa`` into the forwarder (a host route), from now on."""

    pcoa: IPv6Address


@dataclass(frozen=True)
class RemoveCapture:
    """PAR: the binding of ``pcoa`` ended: packets for it take the normal route again."""

    pcoa: IPv6Address


@dataclass(frozen=True)
class Encapsulate:
    """PAR: send ``packet`` (a whole IPv6 packet) IPv6-in-IPv6 from ``source`` to ``destination`` (RFC 2473)."""

    source: IPv6Address
    destination: IPv6Address
    packet: bytes


@dataclass(frozen=True)
class Deliver:
    """NAR: put ``packet`` on the node's link, to its link-layer address. ``interface`` is where its UNA came in;
    None: the interface of the route to ``ncoa``."""

    mn_lla: bytes
    ncoa: IPv6Address
    interface: int | None
    packet: bytes


@dataclass(frozen=True)
class Dropped:
    """Packets dropped, by reason: ``no-binding``, ``not-neighbour``, ``malformed``, ``buffer-full``,
    ``buffer-expired``, ``binding-ended``, ``no-lla``, ``hop-limit``."""

    reason: str
    count: int = 1


DataPlaneEffect: TypeAlias = AddCapture | RemoveCapture | Encapsulate | Deliver | Dropped | Notice


# --- state -------------------------------------------------------------------------------------------------------


@dataclass
class _ParBinding:
    pcoa: IPv6Address
    ncoa: IPv6Address
    nar: IPv6Address
    expires: float


@dataclass
class _NarBinding:
    par: IPv6Address
    pcoa: IPv6Address
    ncoa: IPv6Address
    mn_lla: bytes | None
    buffering: bool
    expires: float
    attached: bool = False
    interface: int | None = None
    queue: deque[tuple[float, bytes]] = field(default_factory=deque)  # (arrived, packet), oldest first
    next_release: float | None = None  # while a backlog drains: when the next packet goes
    interval: float = 0.0  # seconds between paced packets of this drain


def _destination(packet: bytes) -> IPv6Address | None:
    """The Destination Address of an IPv6 packet (RFC 8200 §3), None when it is not one."""
    if len(packet) < _IPV6_HEADER or packet[0] >> 4 != 6:
        return None
    return IPv6Address(packet[24:40])


def _deliver(binding: _NarBinding, packet: bytes) -> list[DataPlaneEffect]:
    """The packet to the node on its link, by its link-layer address (dropped when the NAR knows none)."""
    if not binding.mn_lla:
        return [Dropped("no-lla")]
    return [Deliver(binding.mn_lla, binding.ncoa, binding.interface, packet)]


def _drain_interval(queue: deque[tuple[float, bytes]], factor: float) -> float:
    """Seconds between the paced packets of a backlog: its arrival rate times ``factor`` (0: all at once)."""
    span = queue[-1][0] - queue[0][0]
    rate = (len(queue) - 1) / span if span > 0 and len(queue) > 1 else 0.0
    return 1.0 / (rate * factor) if rate > 0 and factor > 0 else 0.0


class DataPlane:
    """Forwarding and buffering state of one router (module docstring)."""

    def __init__(self, address: IPv6Address, limits: DataPlaneLimits | None = None) -> None:
        self.address = address  # the tunnel entry point (RFC 2473 §3): the PAR's own address
        self.limits = limits or DataPlaneLimits()
        self._par: dict[IPv6Address, _ParBinding] = {}
        self._nar: dict[IPv6Address, _NarBinding] = {}  # by PCoA (the inner destination)
        self._unas: dict[IPv6Address, tuple[bytes | None, int | None, float]] = {}  # NCoA → (LLA, ifindex, at)
        self._buffered = 0
        self.enqueued = 0  # packets ever put in a NAR buffer (a counter for metrics)

    # ---- bookkeeping

    @property
    def buffered(self) -> int:
        """Packets waiting in NAR buffers now."""
        return self._buffered

    def par_bindings(self) -> dict[IPv6Address, IPv6Address]:
        """PCoA → NAR of the PAR bindings."""
        return {b.pcoa: b.nar for b in self._par.values()}

    def nar_bindings(self) -> dict[IPv6Address, IPv6Address]:
        """PCoA → NCoA of the NAR bindings."""
        return {b.pcoa: b.ncoa for b in self._nar.values()}

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` has something to do (a scan: bindings are few, handovers are short)."""
        times = [b.expires for b in self._par.values()]
        for b in self._nar.values():
            times.append(b.expires)
            if b.next_release is not None:
                times.append(b.next_release)
            elif b.queue:
                times.append(b.queue[0][0] + self.limits.buffer_seconds)
        return min(times) if times else None

    # ---- signalling in (from RouterCore's effects)

    def observe(self, effect: object, now: float) -> list[DataPlaneEffect]:
        """Take the router core's effects that concern forwarding; ignore the others."""
        if isinstance(effect, HandoverFinished):
            return self.handover_finished(effect, now)
        if isinstance(effect, HiAccepted):
            return self.hi_accepted(effect, now)
        return []

    def handover_finished(self, done: HandoverFinished, now: float) -> list[DataPlaneEffect]:
        """PAR: an FBack was sent. Accepted (Status < 128) with a lifetime: forward the PCoA's packets to the NAR."""
        accepted = done.status is not None and done.status < 128 and done.nar is not None
        if not accepted:
            return []
        assert done.nar is not None
        pcoa = done.pcoa
        existing = self._par.get(pcoa)
        if done.lifetime <= 0:
            # RFC 5568 §5.6: an FBU with lifetime 0 (the node is back on this link) ends the forwarding
            if existing is None:
                return []
            del self._par[pcoa]
            return [RemoveCapture(pcoa), Notice("dataplane.par-unbound", {"pcoa": str(pcoa), "why": "lifetime-0"})]
        self._par[pcoa] = _ParBinding(pcoa, done.ncoa, done.nar, now + done.lifetime)
        fields: dict[str, str | int | float | None] = {
            "pcoa": str(pcoa),
            "ncoa": str(done.ncoa),
            "nar": str(done.nar),
            "lifetime": done.lifetime,
        }
        notice = Notice("dataplane.par-bound", fields)
        if existing is not None and existing.nar == done.nar:
            return [notice]
        return [AddCapture(pcoa), notice]  # again for another NAR: a kernel tunnel's route changes with it

    def hi_accepted(self, hi: HiAccepted, now: float) -> list[DataPlaneEffect]:
        """NAR: an HI was accepted: take tunnelled packets for its PCoA from its PAR."""
        existing = self._nar.get(hi.pcoa)
        binding = _NarBinding(hi.par, hi.pcoa, hi.ncoa, hi.mn_lla, hi.buffer, now + self.limits.nar_lifetime)
        if existing is not None and existing.par == hi.par and existing.ncoa == hi.ncoa:
            # an HI for the same move again (a retransmission or a fresh HI after an unsolicited HAck)
            existing.expires = binding.expires
            existing.buffering = existing.buffering or hi.buffer
            existing.mn_lla = existing.mn_lla or hi.mn_lla
            if hi.reactive and not existing.attached:  # the node's FBU came through this router: it is here
                return self._attach(existing, None, None, now)
            return []
        effects: list[DataPlaneEffect] = []
        if existing is not None:
            effects += self._end_nar(existing, "binding-ended")
        self._nar[hi.pcoa] = binding
        fields: dict[str, str | int | float | None] = {
            "pcoa": str(hi.pcoa),
            "ncoa": str(hi.ncoa),
            "par": str(hi.par),
            "buffer": hi.buffer,
            "reactive": hi.reactive,
        }
        effects.append(Notice("dataplane.nar-bound", fields))
        remembered = self._unas.pop(hi.ncoa, None)
        if hi.reactive or (remembered is not None and now - remembered[2] <= _REMEMBER_UNA):
            lla, interface, _at = remembered or (None, None, now)
            effects += self._attach(binding, lla, interface, now)
        return effects

    # ---- PAR: captured packets

    def captured(self, packet: bytes, now: float) -> list[DataPlaneEffect]:
        """A packet the capture route took (it is addressed to a PCoA, if the route was ours)."""
        destination = _destination(packet)
        if destination is None:
            return [Dropped("malformed")]
        if destination.is_multicast:
            return []  # the kernel's own MLD reports on the capture device: not a node's packet
        binding = self._par.get(destination)
        if binding is None or binding.expires <= now:
            return [Dropped("no-binding")]
        return [Encapsulate(self.address, binding.nar, packet)]

    # ---- NAR: tunnelled packets

    def tunnelled(self, source: IPv6Address, packet: bytes, now: float) -> list[DataPlaneEffect]:
        """The inner packet of an IPv6-in-IPv6 packet from ``source`` (the outer header's source)."""
        destination = _destination(packet)
        if destination is None:
            return [Dropped("malformed")]
        binding = self._nar.get(destination)
        if binding is None or binding.expires <= now:
            return [Dropped("no-binding")]
        if binding.par != source:
            return [Dropped("not-neighbour")]
        if packet[7] <= 1:  # RFC 8200 §3: a router decrements the Hop Limit and drops at zero
            return [Dropped("hop-limit")]
        packet = packet[:7] + bytes((packet[7] - 1,)) + packet[8:]
        binding.expires = max(binding.expires, now + self.limits.nar_lifetime)
        if binding.attached and not binding.queue:
            return _deliver(binding, packet)
        if not binding.attached and not binding.buffering:
            return _deliver(binding, packet)  # no buffering asked for: the node may not be there yet
        return self._enqueue(binding, packet, now)

    def _enqueue(self, binding: _NarBinding, packet: bytes, now: float) -> list[DataPlaneEffect]:
        if len(binding.queue) >= self.limits.buffer_packets or self._buffered >= self.limits.total_buffer_packets:
            return [Dropped("buffer-full")]
        binding.queue.append((now, packet))
        self._buffered += 1
        self.enqueued += 1
        return []

    # ---- NAR: the node arrives

    def node_attached(
        self, ncoa: IPv6Address, mn_lla: bytes | None, interface: int | None, now: float
    ) -> list[DataPlaneEffect]:
        """An UNA for ``ncoa`` (RFC 5568 §6.3) came in on ``interface`` with Target LLA ``mn_lla``."""
        bindings = [b for b in self._nar.values() if b.ncoa == ncoa]
        if not bindings:
            if len(self._unas) >= _MAX_REMEMBERED_UNAS:
                del self._unas[next(iter(self._unas))]
            self._unas[ncoa] = (mn_lla, interface, now)
            return []
        effects: list[DataPlaneEffect] = []
        for binding in bindings:
            if binding.mn_lla and mn_lla and binding.mn_lla != mn_lla:
                # another node claims this NCoA: the HI named the node's link-layer address (RFC 5568 §6.2.1.1)
                fields: dict[str, str | int | float | None] = {"ncoa": str(ncoa), "pcoa": str(binding.pcoa)}
                effects.append(Notice("dataplane.una-lla-mismatch", fields))
                continue
            effects += self._attach(binding, mn_lla, interface, now)
        return effects

    def _attach(
        self, binding: _NarBinding, mn_lla: bytes | None, interface: int | None, now: float
    ) -> list[DataPlaneEffect]:
        first = not binding.attached
        binding.attached = True
        binding.mn_lla = binding.mn_lla or mn_lla
        if interface is not None:
            binding.interface = interface
        effects: list[DataPlaneEffect] = []
        effects += self._expire_queue(binding, now)
        if first:
            fields: dict[str, str | int | float | None] = {
                "pcoa": str(binding.pcoa),
                "ncoa": str(binding.ncoa),
                "buffered": len(binding.queue),
            }
            effects.append(Notice("dataplane.node-attached", fields))
        if binding.queue and binding.next_release is None:
            binding.interval = _drain_interval(binding.queue, self.limits.drain_factor)
            effects += self._release(binding, self.limits.drain_burst, now)
        return effects

    def _release(self, binding: _NarBinding, count: int, now: float) -> list[DataPlaneEffect]:
        effects: list[DataPlaneEffect] = []
        while binding.queue and (count > 0 or binding.interval == 0.0):
            _arrived, packet = binding.queue.popleft()
            self._buffered -= 1
            effects += _deliver(binding, packet)
            count -= 1
        binding.next_release = now + binding.interval if binding.queue else None
        return effects

    # ---- time

    def handle_timer(self, now: float) -> list[DataPlaneEffect]:
        """End expired bindings, drop packets that waited too long, send the next paced packets."""
        effects: list[DataPlaneEffect] = []
        for pcoa in [p for p, b in self._par.items() if b.expires <= now]:
            del self._par[pcoa]
            effects += [RemoveCapture(pcoa), Notice("dataplane.par-unbound", {"pcoa": str(pcoa), "why": "expired"})]
        for binding in [b for b in self._nar.values() if b.expires <= now]:
            effects += self._end_nar(binding, "binding-ended")
        for binding in self._nar.values():
            if binding.next_release is not None and binding.next_release <= now:
                # as many as the pace allows since the last release (the timer may fire late)
                due = 1 + int((now - binding.next_release) / binding.interval + 1e-9) if binding.interval > 0 else 1
                effects += self._release(binding, due, now)
            elif binding.next_release is None:
                effects += self._expire_queue(binding, now)
        for ncoa in [n for n, (_l, _i, at) in self._unas.items() if now - at > _REMEMBER_UNA]:
            del self._unas[ncoa]
        return effects

    def _expire_queue(self, binding: _NarBinding, now: float) -> list[DataPlaneEffect]:
        expired = 0
        while binding.queue and binding.queue[0][0] + self.limits.buffer_seconds <= now:
            binding.queue.popleft()
            expired += 1
        self._buffered -= expired
        return [Dropped("buffer-expired", expired)] if expired else []

    def _end_nar(self, binding: _NarBinding, reason: str) -> list[DataPlaneEffect]:
        del self._nar[binding.pcoa]
        left = len(binding.queue)
        self._buffered -= left
        binding.queue.clear()
        effects: list[DataPlaneEffect] = [Notice("dataplane.nar-unbound", {"pcoa": str(binding.pcoa)})]
        if left:
            effects.append(Dropped(reason, left))
        return effects

    def close(self) -> list[DataPlaneEffect]:
        """Everything ends (the agent stops): remove every capture, drop every buffered packet."""
        effects: list[DataPlaneEffect] = [RemoveCapture(p) for p in self._par]
        self._par.clear()
        for binding in list(self._nar.values()):
            effects += self._end_nar(binding, "binding-ended")
        return effects

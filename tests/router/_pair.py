"""Two router cores (PAR and NAR) and a node's keys, wired together in memory for the sans-IO tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv6Address, IPv6Network

from aaa_fmip import mn
from aaa_fmip.keys import HandoverKey
from aaa_fmip.router import core
from aaa_fmip.router.neighbours import Neighbour, NeighbourTable
from aaa_fmip.router.verify import FbuVerdict, ReceivedMh, ReplayState, RouterKey, verify_with_key

PAR = IPv6Address("2001:db8:1::1")
NAR = IPv6Address("2001:db8:2::1")
PAR_PREFIX = IPv6Network("2001:db8:1::/64")
NAR_PREFIX = IPv6Network("2001:db8:2::/64")
PAR_AP = bytes.fromhex("02aa00000001")
NAR_AP = bytes.fromhex("02bb00000001")
MN_LLA = bytes.fromhex("020000000001")
PCOA = IPv6Address("2001:db8:1::1:0:0:100")
NCOA = IPv6Address("2001:db8:2::200")

EMSK = bytes(range(64))
SESSION_ID = b"\x0d" + bytes(range(64))


def node_key(par: IPv6Address = PAR) -> HandoverKey:
    return mn.derive_handover_key(mn.derive_master_key(emsk=EMSK, eap_session_id=SESSION_ID), par)


def router_key(par: IPv6Address = PAR, *, expires_at: float = 10_000.0) -> RouterKey:
    return router_key_of(node_key(par), par, expires_at=expires_at)


def router_key_of(hk: HandoverKey, par: IPv6Address = PAR, *, expires_at: float = 10_000.0) -> RouterKey:
    return RouterKey(hk.hk, hk.hk_name, hk.spi, par, expires_at, "configured")


def make_core(me: str, **overrides: object) -> core.RouterCore:
    table = NeighbourTable(
        [
            Neighbour(PAR_AP, PAR, PAR_PREFIX, bytes.fromhex("02cc00000001"), local=me == "par"),
            Neighbour(NAR_AP, NAR, NAR_PREFIX, bytes.fromhex("02cc00000002"), local=me == "nar"),
        ]
    )
    address, prefix = (PAR, PAR_PREFIX) if me == "par" else (NAR, NAR_PREFIX)
    params = core.RouterParameters(
        addresses=(address,),
        access_prefixes=(prefix,),
        neighbours=table,
        link_local=IPv6Address("fe80::1"),
        lla=bytes.fromhex("02cc00000001" if me == "par" else "02cc00000002"),
    )
    if overrides:
        from dataclasses import replace

        params = replace(params, **overrides)  # type: ignore[arg-type]
    return core.RouterCore(params, initial_hi_sequence=100 if me == "par" else 500)


@dataclass
class Pair:
    """PAR and NAR cores; ``run`` delivers MH effects between them and collects what goes to the node."""

    par: core.RouterCore = field(default_factory=lambda: make_core("par"))
    nar: core.RouterCore = field(default_factory=lambda: make_core("nar"))
    keys: list[RouterKey] = field(default_factory=lambda: [router_key()])
    replay: ReplayState = field(default_factory=ReplayState)
    to_node: list[core.SendMh] = field(default_factory=list)
    notices: list[core.Notice] = field(default_factory=list)
    finished: list[core.HandoverFinished] = field(default_factory=list)
    wire: list[core.SendMh] = field(default_factory=list)  # every MH between routers
    deliver_to_nar: bool = True
    verdict_override: FbuVerdict | None = None

    def run(self, effects: list[core.Effect], now: float) -> None:
        queue = list(effects)
        while queue:
            effect = queue.pop(0)
            if isinstance(effect, core.VerifyFbu):
                verdict = self.verdict_override or verify_with_key(effect.fbu, self.keys, self.replay, now=now)
                queue += self.par.fbu_verified(effect.token, verdict, now)
            elif isinstance(effect, core.SendMh):
                packet = ReceivedMh(effect.source, effect.destination, None, effect.mh)
                if effect.destination == NAR:
                    self.wire.append(effect)
                    if self.deliver_to_nar:
                        queue += self.nar.receive_mh(packet, now)
                elif effect.destination == PAR:
                    self.wire.append(effect)
                    queue += self.par.receive_mh(packet, now)
                else:
                    self.to_node.append(effect)
            elif isinstance(effect, core.Notice):
                self.notices.append(effect)
            elif isinstance(effect, core.HandoverFinished):
                self.finished.append(effect)

    def fbu(self, packet: mn.FbuPacket, now: float) -> None:
        self.run(
            self.par.receive_mh(ReceivedMh(packet.source, packet.destination, packet.home_address, packet.mh), now), now
        )


def predictive_fbu(sequence: int = 1, *, key: HandoverKey | None = None, **kwargs: object) -> mn.FbuPacket:
    return mn.build_fbu_packet(
        key or node_key(),
        sequence=sequence,
        lifetime_seconds=60,
        pcoa=PCOA,
        ncoa=NCOA,
        par=PAR,
        home_address_option=True,
        mh_lla=MN_LLA,
        **kwargs,  # type: ignore[arg-type]
    )


def reactive_fbu(sequence: int = 1) -> mn.FbuPacket:
    return mn.build_fbu_packet(
        node_key(),
        sequence=sequence,
        lifetime_seconds=60,
        pcoa=PCOA,
        ncoa=NCOA,
        par=PAR,
        alternate_coa=False,
        home_address_option=True,
    )

"""One PAR handover of the router core (aaa_fmip.router.core, RFC 5568 §6.2): its states and the only transitions
between them, the tables that turn a verdict or a HAck into an FBack Status, and the FBack itself.

Pure functions and values; :class:`~aaa_fmip.router.par.ParSide` drives them. Hand-written because FMIPv6
has no maintained Python implementation; the transition table is in the style of h11 (anything not listed is a
:class:`~aaa_fmip.router.effects.LocalProtocolError`)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network
from typing import Final

from aaa_fmip.crypto import badf
from aaa_fmip.router.effects import Effect, LocalProtocolError, Notice, SendMh
from aaa_fmip.router.neighbours import NeighbourTable
from aaa_fmip.router.verify import FbuVerdict, ParsedFbu, RouterKey
from aaa_fmip.wire import mh as mhwire
from aaa_fmip.wire.icmpv6 import IPAddressPrefixCode
from aaa_fmip.wire.mh import FBackStatus, HAckCode

__all__ = [
    "DONE_LIFETIME",
    "HACK_TO_FBACK",
    "REJECT_STATUS",
    "SILENT_REASONS",
    "ParEvent",
    "ParHandover",
    "ParState",
    "fback",
    "hack_to_fback",
    "par_key",
]

DONE_LIFETIME: Final = 30.0  # seconds a PAR remembers a finished handover's FBack (for FBU retransmissions)


class ParState(enum.Enum):
    VERIFYING = "verifying"
    AWAITING_HACK = "awaiting-hack"
    DONE = "done"


class ParEvent(enum.Enum):
    VERDICT_ACCEPTED = "verdict-accepted"
    VERDICT_REJECTED = "verdict-rejected"
    HACK = "hack"
    HI_TIMEOUT = "hi-timeout"
    HI_GIVE_UP = "hi-give-up"
    FBU_AGAIN = "fbu-again"
    UNSOLICITED_HACK = "unsolicited-hack"


# The only transitions there are (h11 style): anything else is a LocalProtocolError.
PAR_TRANSITIONS: Final[dict[tuple[ParState, ParEvent], ParState]] = {
    (ParState.VERIFYING, ParEvent.VERDICT_ACCEPTED): ParState.AWAITING_HACK,
    (ParState.VERIFYING, ParEvent.VERDICT_REJECTED): ParState.DONE,
    (ParState.VERIFYING, ParEvent.FBU_AGAIN): ParState.VERIFYING,
    (ParState.AWAITING_HACK, ParEvent.HACK): ParState.DONE,
    (ParState.AWAITING_HACK, ParEvent.HI_TIMEOUT): ParState.AWAITING_HACK,
    (ParState.AWAITING_HACK, ParEvent.HI_GIVE_UP): ParState.DONE,
    (ParState.AWAITING_HACK, ParEvent.FBU_AGAIN): ParState.AWAITING_HACK,
    (ParState.DONE, ParEvent.FBU_AGAIN): ParState.DONE,
    (ParState.DONE, ParEvent.UNSOLICITED_HACK): ParState.AWAITING_HACK,
}

# HAck Code → FBack Status (module docstring); codes 1 and 2 need the NAR's NCoA, 3 means the PCoA.
HACK_TO_FBACK: Final[dict[int, int]] = {
    HAckCode.ACCEPTED_NCOA_VALID: FBackStatus.ACCEPTED,
    HAckCode.ACCEPTED_NCOA_NOT_VALID: FBackStatus.ACCEPTED_NCOA_INVALID,
    HAckCode.ACCEPTED_NCOA_ASSIGNED: FBackStatus.ACCEPTED_NCOA_INVALID,
    HAckCode.ACCEPTED_USE_PCOA: FBackStatus.ACCEPTED_NCOA_INVALID,
    HAckCode.NOT_ACCEPTED: FBackStatus.REASON_UNSPECIFIED,
    HAckCode.ADMINISTRATIVELY_PROHIBITED: FBackStatus.ADMINISTRATIVELY_PROHIBITED,
    HAckCode.INSUFFICIENT_RESOURCES: FBackStatus.INSUFFICIENT_RESOURCES,
}

# Verdict reasons that still get an FBack (without a key it cannot carry a valid BADF: see fback).
REJECT_STATUS: Final[dict[str, int]] = {
    "unknown-spi": FBackStatus.REASON_UNSPECIFIED,
    "key-unavailable": FBackStatus.REASON_UNSPECIFIED,
    "expired": FBackStatus.REASON_UNSPECIFIED,
    "revoked": FBackStatus.ADMINISTRATIVELY_PROHIBITED,
    "unknown-nar": FBackStatus.REASON_UNSPECIFIED,
    "busy": FBackStatus.INSUFFICIENT_RESOURCES,
}
# RFC 6275 §9.5.1: an update failing authorization is silently discarded; a replay is not a request of the node.
SILENT_REASONS: Final = frozenset({"bad-authenticator", "replay", "bad-authenticator-length"})


@dataclass
class ParHandover:
    token: int
    fbu: ParsedFbu
    started: float
    state: ParState = ParState.VERIFYING
    verdict: FbuVerdict | None = None
    nar: IPv6Address | None = None
    hi_sequence: int = 0
    hi_mh: bytes = b""
    hi_sent: int = 0
    deadline: float | None = None
    fback: SendMh | None = None
    forget_at: float = 0.0

    def move(self, event: ParEvent) -> None:
        try:
            self.state = PAR_TRANSITIONS[(self.state, event)]
        except KeyError:
            raise LocalProtocolError(f"PAR handover in state {self.state.value} cannot take {event.value}") from None


def par_key(fbu: ParsedFbu) -> tuple[IPv6Address, int, int]:
    """A PAR handover is one (PCoA, SPI, Sequence Number): a node that authenticated again (a new session, a new
    SPI) may start its numbering afresh from the same PCoA."""
    return fbu.pcoa, fbu.auth.spi, fbu.fbu.sequence


def fback(
    handover: ParHandover, status: int, alternate: IPv6Address | None, lifetime: int, lifetime_unit: int
) -> SendMh:
    """The FBack to the node: to the PCoA when the FBU came from it (predictive, the node is still on this
    link), else to the NCoA (reactive, §6.2.3). Signed with the HK that verified the FBU; without one (the
    key could not be found) it carries no BADF, and the node may treat it only as a hint."""
    fbu = handover.fbu
    to = fbu.pcoa if fbu.predictive else fbu.packet.source
    options: list[mhwire.MobilityOption] = []
    if alternate is not None:
        options.append(mhwire.AlternateCareOfAddress(alternate))
    verdict = handover.verdict
    key: RouterKey | None = verdict.key if verdict else None
    units = min(0xFFFF, lifetime // lifetime_unit)
    par = fbu.packet.destination
    algorithm = badf.algorithm_for_length(len(fbu.auth.authenticator))

    def encode(authenticator: bytes) -> bytes:
        badf_option = mhwire.BindingAuthorizationDataForFMIPv6(fbu.auth.spi, authenticator)
        return mhwire.encode_mh(
            mhwire.FBack(status, fbu.fbu.sequence, units, (*options, badf_option)), source=par, destination=to
        )

    placeholder = encode(bytes(algorithm.authenticator_length))
    if key is None:
        if verdict is not None and verdict.valid and fbu.auth.spi != 0:
            return SendMh(par, to, placeholder, needs_authenticator=True)  # verified by the service
        message = mhwire.FBack(status, fbu.fbu.sequence, units, tuple(options))
        return SendMh(par, to, mhwire.encode_mh(message, source=par, destination=to))
    care_of = alternate if alternate is not None else to
    authenticator = badf.compute_authenticator(key.hk, care_of, par, mhwire.badf_input(placeholder).mh_data, algorithm)
    return SendMh(par, to, encode(authenticator))


def _ncoa_in_nar_prefix(
    handover: ParHandover, hack: mhwire.HAck, ncoa: IPv6Address, neighbours: NeighbourTable
) -> bool:
    """RFC 5568 §10 for a NAR-supplied NCoA: inside the prefix the NAR returned (MH option 34 code 4, per-node
    prefixes), which must itself lie in the NAR's prefix of the neighbour table (the aggregate); without a
    returned prefix, inside the neighbour table's prefix."""
    neighbour = neighbours.nar_for(handover.fbu.ncoa)
    if neighbour is None:
        return False
    returned = next(
        (
            IPv6Network((o.address, o.prefix_length), strict=False)
            for o in hack.options
            if isinstance(o, mhwire.MHIPv6AddressPrefix)
            and o.option_code == IPAddressPrefixCode.NEW_ACCESS_ROUTER_PREFIX
            and o.prefix_length <= 128
        ),
        None,
    )
    if returned is not None:
        return returned.subnet_of(neighbour.nar_prefix) and ncoa in returned
    return ncoa in neighbour.nar_prefix


def hack_to_fback(
    handover: ParHandover, source: IPv6Address, hack: mhwire.HAck, neighbours: NeighbourTable
) -> tuple[int, IPv6Address | None, str, list[Effect]]:
    """The FBack Status, Alternate CoA and outcome for the HAck from ``source`` that answered ``handover``'s HI
    (module docstring of aaa_fmip.router.core), with the notices to log."""
    supplied = next(
        (
            o.address
            for o in hack.options
            if isinstance(o, mhwire.MHIPv6AddressPrefix) and o.option_code == IPAddressPrefixCode.NEW_CARE_OF_ADDRESS
        ),
        None,
    )
    status = HACK_TO_FBACK.get(hack.code, FBackStatus.REASON_UNSPECIFIED)
    alternate: IPv6Address | None = None
    if (
        supplied is not None
        and hack.code != HAckCode.ACCEPTED_USE_PCOA
        and not _ncoa_in_nar_prefix(handover, hack, supplied, neighbours)
    ):
        # RFC 5568 §10: the PAR MUST verify that the NCoA belongs to the NAR's prefix (per-node: the one returned)
        notice = Notice("hack.ncoa-outside-prefix", {"source": str(source), "ncoa": str(supplied)})
        return FBackStatus.REASON_UNSPECIFIED, None, "ncoa-outside-prefix", [notice]
    if hack.code == HAckCode.ACCEPTED_USE_PCOA:
        alternate = handover.fbu.pcoa
    elif status == FBackStatus.ACCEPTED_NCOA_INVALID:
        if supplied is None:
            status = FBackStatus.REASON_UNSPECIFIED  # §6.2.3: Status 1 MUST carry the Alternate CoA
        else:
            alternate = supplied
    elif status == FBackStatus.ACCEPTED and supplied is not None and supplied != handover.fbu.ncoa:
        status, alternate = FBackStatus.ACCEPTED_NCOA_INVALID, supplied  # §5.2: a CoA in HAck goes in FBack
    return status, alternate, FBackStatus(status).name.lower(), []

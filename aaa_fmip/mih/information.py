"""The MIH Information Server (IEEE 802.21-2008 clause 6): what a node asks a MoS before a handover.

It answers, from the neighbour table (:mod:`aaa_fmip.mih.neighbours`, shared with the FMIPv6 router agent):

* MIH_Capability_Discover: UDP and TCP transports, binary IS queries, and the IEs below;
* MIH_Register / MIH_DeRegister: a bounded table of registered peer MIHF-IDs with a validity interval;
* MIH_Get_Information with binary queries (IQ_BIN_DATA): for the PoA named by the querier's LINK_ADDR, one
  IE_CONTAINER_POA per neighbour with IE_POA_LINK_ADDR, IE_POA_SUBNET_INFO (the prefix) and IE_POA_IP_ADDR
  (the access router's address) — the facts PrRtAdv carries. RPT_TEMPL restricts the IEs, RPT_LIMIT pages
  through the neighbours, MaxResponseSize and the transport's size limit trim the list. A query without a
  querier link address gets every PoA. Network-type, network-id and currency restrictions are not modelled
  (there is one access network) and are ignored. RDF queries are answered with Status Unspecified Failure.

Pure: no IO; the time is passed in. :meth:`InformationServer.handle_frame` is the transport handler.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aaa_fmip.errors import DecodeError
from aaa_fmip.mih.neighbours import NeighbourTable, PointOfAttachment
from aaa_fmip.mih.transport import MAX_UDP_PAYLOAD, PeerInfo
from aaa_fmip.wire import mih

__all__ = ["SUPPORTED_IES", "InformationServer"]

log = logging.getLogger("aaa_fmip.mih.information")

SUPPORTED_IES = (mih.IEType.POA_LINK_ADDR, mih.IEType.POA_SUBNET_INFO, mih.IEType.POA_IP_ADDR)
_QUERY_TYPES = mih.ISQueryType.bitmap(
    [
        mih.ISQueryType.BINARY_DATA,
        mih.ISQueryType.IE_POA_LINK_ADDR,
        mih.ISQueryType.IE_POA_SUBNET_INFO,
        mih.ISQueryType.IE_POA_IP_ADDR,
    ]
)
_MAX_FRAME = mih.HEADER_LENGTH + mih.MAX_PAYLOAD_LENGTH


@dataclass(frozen=True)
class _Ids:
    source: bytes
    destination: bytes
    transaction_id: int

    def kwargs(self) -> dict[str, Any]:
        return {"source": self.source, "destination": self.destination, "transaction_id": self.transaction_id}


@dataclass(frozen=True)
class _Registration:
    expires: float | None


class InformationServer:
    def __init__(
        self,
        mihf_id: bytes,
        table: NeighbourTable,
        *,
        clock: Callable[[], float],
        valid_time_interval: int = 3600,
        max_registrations: int = 10000,
        udp_limit: int = MAX_UDP_PAYLOAD,
    ) -> None:
        self.mihf_id = mihf_id
        self.table = table
        self.clock = clock
        self.valid_time_interval = valid_time_interval
        self.max_registrations = max_registrations
        self.udp_limit = udp_limit
        self._registrations: OrderedDict[bytes, _Registration] = OrderedDict()
        self.counters: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def is_registered(self, mihf_id: bytes) -> bool:
        entry = self._registrations.get(mihf_id)
        if entry is None:
            return False
        if entry.expires is not None and entry.expires <= self.clock():
            del self._registrations[mihf_id]
            return False
        return True

    # --- the transport handler ---

    def handle_frame(self, frame: mih.Frame, peer: PeerInfo) -> mih.Frame | None:
        limit = self.udp_limit if peer.transport == "udp" else _MAX_FRAME
        try:
            request = mih.decode_message(frame)
        except DecodeError as exc:
            self._count("malformed-message")
            log.info("mih request refused", extra={"reason": "malformed-message", "detail": str(exc)})
            return self._failure_for(frame)
        response = self.handle(request, max_size=limit)
        if response is None:
            return None
        return mih.decode_frame(mih.encode_message(response))

    def _failure_for(self, frame: mih.Frame) -> mih.Frame | None:
        """Status Unspecified Failure for a request we recognise but cannot read, when we know whom to tell."""
        h = frame.header
        cls = mih.message_class(mih.Header(h.service_id, mih.Opcode.RESPONSE, h.action_id, 0))
        source = frame.source
        if h.opcode != mih.Opcode.REQUEST or cls is None or source is None:
            return None
        response = cls(  # type: ignore[call-arg]
            source=self.mihf_id,
            destination=source,
            transaction_id=h.transaction_id,
            status=mih.Status.UNSPECIFIED_FAILURE,
        )
        return mih.decode_frame(mih.encode_message(response))

    # --- use cases ---

    def handle(self, request: mih.MIHMessage, *, max_size: int = _MAX_FRAME) -> mih.MIHMessage | None:
        if not isinstance(request, mih.CapabilityDiscoverRequest) and request.destination != self.mihf_id:
            self._count("wrong-destination")  # 802.21-2008 clause 8: only Capability_Discover may be broadcast
            return None
        common = _Ids(self.mihf_id, request.source, request.transaction_id)
        if isinstance(request, mih.CapabilityDiscoverRequest):
            self._count("capability-discover")
            return mih.CapabilityDiscoverResponse(
                **common.kwargs(),
                status=mih.Status.SUCCESS,
                transports=mih.TransportSupport.UDP | mih.TransportSupport.TCP,
                query_types=_QUERY_TYPES,
            )
        if isinstance(request, mih.RegisterRequest):
            return self._register(request, common)
        if isinstance(request, mih.DeRegisterRequest):
            known = self.is_registered(request.source)
            self._registrations.pop(request.source, None)
            self._count("deregister")
            status = mih.Status.SUCCESS if known else mih.Status.REJECTED
            return mih.DeRegisterResponse(**common.kwargs(), status=status)
        if isinstance(request, mih.GetInformationRequest):
            return self._get_information(request, common, max_size)
        self._count("unsupported-message")
        return None

    def _register(self, request: mih.RegisterRequest, common: _Ids) -> mih.MIHMessage:
        now = self.clock()
        if request.request_code == mih.RegisterRequestCode.RE_REGISTRATION and not self.is_registered(request.source):
            self._count("register-rejected")
            return mih.RegisterResponse(**common.kwargs(), status=mih.Status.REJECTED)
        expires = None if self.valid_time_interval == 0 else now + self.valid_time_interval
        self._registrations.pop(request.source, None)
        self._registrations[request.source] = _Registration(expires)
        while len(self._registrations) > self.max_registrations:
            self._registrations.popitem(last=False)  # oldest first: the table stays bounded
        self._count("register")
        return mih.RegisterResponse(
            **common.kwargs(),
            status=mih.Status.SUCCESS,
            valid_time_interval=self.valid_time_interval,
        )

    def _get_information(self, request: mih.GetInformationRequest, common: _Ids, max_size: int) -> mih.MIHMessage:
        self._count("get-information")
        if request.queries is None:  # RDF queries only: not offered (Capability_Discover says binary)
            return mih.GetInformationResponse(**common.kwargs(), status=mih.Status.UNSPECIFIED_FAILURE)
        limit = min(max_size, request.max_response_size or max_size)
        results = [list(self._answer(query)) for query in request.queries]
        response = mih.GetInformationResponse(
            **common.kwargs(),
            status=mih.Status.SUCCESS,
            results=tuple(tuple(r) for r in results),
        )
        size = len(mih.encode_message(response))
        while size > limit and any(results):
            # trim the last neighbour of the longest result until the answer fits (MaxResponseSize, path MTU)
            longest = max(results, key=len)
            dropped = longest.pop()
            size -= 4 + len(mih.encode_length(len(dropped.value))) + len(dropped.value)
            self._count("neighbours-trimmed")
        return mih.GetInformationResponse(
            **common.kwargs(),
            status=mih.Status.SUCCESS,
            results=tuple(tuple(r) for r in results),
        )

    def _answer(self, query: mih.IQBinData) -> tuple[mih.InformationElement, ...]:
        if query.querier_link_address is None:
            poas: tuple[PointOfAttachment, ...] = self.table.poas
        elif query.querier_link_address.kind != mih.LinkAddressKind.MAC:
            poas = ()
        else:
            current = self.table.by_link_address(query.querier_link_address.data)
            poas = () if current is None else self.table.neighbours_of(current)
        wanted = set(SUPPORTED_IES if query.report_template is None else query.report_template)
        if not wanted & set(SUPPORTED_IES):
            return ()
        if query.report_limit is not None:
            max_ies, start = query.report_limit
            poas = poas[start:]
            if max_ies:
                poas = poas[:max_ies]
        return tuple(_container(poa, wanted) for poa in poas)


def _container(poa: PointOfAttachment, wanted: set[mih.IEType]) -> mih.InformationElement:
    return mih.PoAContainer(
        link_address=mih.LinkAddress.mac(poa.link_address) if mih.IEType.POA_LINK_ADDR in wanted else None,
        subnets=(poa.prefix,) if mih.IEType.POA_SUBNET_INFO in wanted else (),
        ip_addresses=(poa.router,) if mih.IEType.POA_IP_ADDR in wanted else (),
    ).to_ie()


def neighbours_from_response(response: mih.GetInformationResponse) -> list[list[mih.PoAContainer]]:
    """The PoA containers of each result (a client-side helper; other IEs are skipped)."""
    out: list[list[mih.PoAContainer]] = []
    for result in response.results or ():
        out.append([mih.PoAContainer.from_ie(ie) for ie in result if ie.type == mih.IEType.CONTAINER_POA])
    return out

"""RFC 5679: the sans-IO NAPTR/SRV/AAAA-A resolution of a MoS, and :func:`resolve_mos` driving it with dnspython."""

from __future__ import annotations

import ipaddress
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from aaa_fmip.mih.discovery.types import DiscoveryError, IPAddress

# ------------------------------------------------------------------------------ RFC 5679 resolution

Service = Literal["MIHIS", "MIHES", "MIHCS"]
Transport = Literal["tcp", "udp"]
_APP_PROTOCOL: Final[dict[Transport, str]] = {"tcp": "M2T", "udp": "M2U"}  # RFC 5679 §3 (M2S: SCTP, not used)


@dataclass(frozen=True)
class Naptr:
    order: int
    preference: int
    flags: str
    service: str
    regexp: str
    replacement: str


@dataclass(frozen=True)
class Srv:
    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True)
class Query:
    """A DNS question the resolution needs answered: ``rdtype`` one of NAPTR, SRV, AAAA, A."""

    name: str
    rdtype: Literal["NAPTR", "SRV", "AAAA", "A"]


Answer = Sequence[Naptr] | Sequence[Srv] | Sequence[IPAddress]


@dataclass(frozen=True)
class MosEndpoint:
    """One way to reach a MoS: where to connect and over which transport (RFC 5677 §6)."""

    service: Service
    transport: Transport
    host: str
    port: int
    address: IPAddress
    via: Literal["naptr", "srv"]


def select_naptr(
    records: Iterable[Naptr], service: Service, transports: Sequence[Transport]
) -> list[tuple[Naptr, Transport]]:
    """RFC 5679 §3 / RFC 3958 §2.2: records for ``service`` over a transport we support, flags "s", empty
    regexp, in order then preference; others are ignored."""
    wanted = {f"{service}+{_APP_PROTOCOL[t]}".upper(): t for t in transports}
    chosen: list[tuple[Naptr, Transport]] = []
    for record in records:
        transport = wanted.get(record.service.upper())
        if transport is None or record.flags.lower() != "s" or record.regexp != "" or record.replacement in ("", "."):
            continue
        chosen.append((record, transport))
    rank = {t: i for i, t in enumerate(transports)}
    return sorted(chosen, key=lambda c: (c[0].order, c[0].preference, rank[c[1]]))


def order_srv(records: Iterable[Srv]) -> list[Srv]:
    """RFC 2782: lowest priority first; within one priority, heavier weight first (a deterministic stand-in for
    the weighted random choice); target "." means the service is not offered there."""
    return sorted((r for r in records if r.target not in ("", ".")), key=lambda r: (r.priority, -r.weight))


def resolution(
    domain: str, service: Service = "MIHIS", transports: Sequence[Transport] = ("tcp", "udp")
) -> Generator[Query, Answer, list[MosEndpoint]]:
    """RFC 5679 resolution of ``domain`` as a generator: it yields each :class:`Query` and is sent the answer
    (an empty sequence for NXDOMAIN / no data). Returns the endpoints in the order to try them.

    TCP is listed before UDP by default (RFC 5677 §6: TCP SHOULD be the default).
    """
    domain = domain.rstrip(".")
    naptrs = yield Query(domain, "NAPTR")
    selected = select_naptr([n for n in naptrs if isinstance(n, Naptr)], service, transports)
    plan: list[tuple[str, Transport, Literal["naptr", "srv"]]]
    if selected:
        plan = [(n.replacement.rstrip("."), t, "naptr") for n, t in selected]
    else:
        # RFC 5679 §3: without NAPTR records, SRV directly (RFC 2782 names)
        plan = [(f"_{service}._{t}.{domain}", t, "srv") for t in transports]
    endpoints: list[MosEndpoint] = []
    seen: set[tuple[Transport, str, int, IPAddress]] = set()
    for srv_name, transport, via in plan:
        srvs = yield Query(srv_name, "SRV")
        for srv in order_srv([s for s in srvs if isinstance(s, Srv)]):
            target = srv.target.rstrip(".")
            addresses: list[IPAddress] = []
            for rdtype in ("AAAA", "A"):
                answer = yield Query(target, rdtype)
                addresses += [a for a in answer if isinstance(a, ipaddress.IPv4Address | ipaddress.IPv6Address)]
            for address in addresses:
                key = (transport, target, srv.port, address)
                if key not in seen:
                    seen.add(key)
                    endpoints.append(MosEndpoint(service, transport, target, srv.port, address, via))
    return endpoints


async def resolve_mos(
    domain: str,
    service: Service = "MIHIS",
    transports: Sequence[Transport] = ("tcp", "udp"),
    *,
    nameservers: Sequence[str] | None = None,
    port: int = 53,
    timeout: float = 5.0,
) -> list[MosEndpoint]:
    """Run :func:`resolution` with dnspython's asyncio resolver (the system's, or ``nameservers``).

    NXDOMAIN and empty answers mean "not published" and let the resolution go on; any other DNS failure raises
    :class:`DiscoveryError`."""
    import dns.asyncresolver
    import dns.rdatatype
    import dns.resolver

    resolver = dns.asyncresolver.Resolver(configure=nameservers is None)
    if nameservers is not None:
        resolver.nameservers = list(nameservers)
        resolver.port = port
    resolver.lifetime = timeout

    async def ask(query: Query) -> Answer:
        try:
            answer = await resolver.resolve(query.name, query.rdtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.DNSException as exc:  # SERVFAIL/REFUSED from every server, timeouts
            raise DiscoveryError(f"{query.rdtype} {query.name}: {type(exc).__name__}") from None
        if query.rdtype == "NAPTR":
            return [
                Naptr(
                    r.order,
                    r.preference,
                    r.flags.decode("ascii", "replace"),
                    r.service.decode("ascii", "replace"),
                    r.regexp.decode("ascii", "replace"),
                    r.replacement.to_text(omit_final_dot=True),
                )
                for r in answer
            ]
        if query.rdtype == "SRV":
            return [Srv(r.priority, r.weight, r.port, r.target.to_text(omit_final_dot=True)) for r in answer]
        return [ipaddress.ip_address(r.address) for r in answer]

    flow = resolution(domain, service, transports)
    try:
        query = next(flow)
        while True:
            query = flow.send(await ask(query))
    except StopIteration as done:
        result: list[MosEndpoint] = done.value
        return result

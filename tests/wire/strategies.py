"""Hypothesis strategies for every wire value the codecs round-trip.

Each strategy stays inside the domain where decode(encode(m)) == m is promised (docs/protocol.md): link-layer
addresses of 6 octets (or none, for the wildcard LLA), RSA signatures of 8n octets, unknown option and message
types outside the decoded ones.
"""

from __future__ import annotations

from ipaddress import IPv6Address
from typing import Any

from hypothesis import strategies as st

from aaa_fmip.wire import icmpv6, mh
from aaa_fmip.wire.send import CGAParameters

u4 = st.integers(0, 15)
u8 = st.integers(0, 255)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
addresses = st.binary(min_size=16, max_size=16).map(IPv6Address)
macs = st.binary(min_size=6, max_size=6)


def _octets_8n_plus(extra: int, max_n: int) -> st.SearchStrategy[bytes]:
    return st.integers(0, max_n).flatmap(lambda n: st.binary(min_size=8 * n + extra, max_size=8 * n + extra))


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    if n < 0x100:
        return bytes((0x81, n))
    return bytes((0x82,)) + n.to_bytes(2, "big")


der_sequences = st.binary(max_size=300).map(lambda content: b"\x30" + _der_length(len(content)) + content)

cga_parameters = st.builds(
    CGAParameters,
    modifier=st.binary(min_size=16, max_size=16),
    subnet_prefix=st.binary(min_size=8, max_size=8),
    collision_count=u8,
    public_key=der_sequences,
    extensions=st.binary(max_size=64),
)

_DECODED_ND = {1, 2, 3, 11, 12, 13, 14, 17, 18, 19, 20, 27, 28}

nd_options: st.SearchStrategy[Any] = st.one_of(
    st.builds(icmpv6.SourceLinkLayerAddress, macs),
    st.builds(icmpv6.TargetLinkLayerAddress, macs),
    st.builds(icmpv6.PrefixInformation, u8, addresses, u32, u32, st.booleans(), st.booleans()),
    st.builds(icmpv6.IPAddressPrefix, u8, u8, addresses),
    st.builds(icmpv6.NewRouterPrefix, u8, u8, addresses),
    st.builds(icmpv6.LinkLayerAddress, u8, macs),
    st.builds(icmpv6.LinkLayerAddress, st.just(0), st.just(b"")),
    st.builds(icmpv6.NAACK, u8, st.none() | addresses, u8),
    st.builds(icmpv6.CGAOption, cga_parameters),
    st.builds(
        icmpv6.RSASignature,
        st.binary(min_size=16, max_size=16),
        st.integers(0, 64).flatmap(lambda n: st.binary(min_size=8 * n, max_size=8 * n)),
    ),
    st.builds(icmpv6.Timestamp, st.integers(0, 2**64 - 1)),
    st.builds(icmpv6.Nonce, _octets_8n_plus(6, 4)),
    st.builds(icmpv6.HandoverKeyRequest, u4, st.binary(max_size=400)),
    st.builds(icmpv6.HandoverKeyReply, u4, u16, st.binary(max_size=300)),
    st.builds(
        icmpv6.UnknownNDOption,
        st.integers(0, 255).filter(lambda t: t not in _DECODED_ND),
        _octets_8n_plus(6, 6),
    ),
)

nd_option_lists = st.lists(nd_options, max_size=6).map(tuple)

icmpv6_messages: st.SearchStrategy[Any] = st.one_of(
    st.builds(icmpv6.RtSolPr, u16, nd_option_lists),
    st.builds(icmpv6.PrRtAdv, u8, u16, nd_option_lists),
    st.builds(icmpv6.UnknownIcmpv6Message, u8.filter(lambda t: t != 154), u8, st.binary(max_size=64)),
    st.builds(
        icmpv6.UnknownIcmpv6Message,
        st.just(154),
        u8,
        st.tuples(u8.filter(lambda s: s not in (2, 3)), st.binary(max_size=32)).map(lambda t: bytes((t[0],)) + t[1]),
    ),
)

nd_messages: st.SearchStrategy[Any] = st.one_of(
    st.builds(icmpv6.RouterSolicitation, nd_option_lists),
    st.builds(icmpv6.RouterAdvertisement, u16, nd_option_lists, u8, st.booleans(), st.booleans(), u32, u32),
    st.builds(icmpv6.NeighborAdvertisement, addresses, nd_option_lists, st.booleans(), st.booleans(), st.booleans()),
)

_DECODED_MH_OPTIONS = {0, 1, 3, 7, 8, 21, 34}

mobility_options: st.SearchStrategy[Any] = st.one_of(
    st.builds(mh.AlternateCareOfAddress, addresses),
    st.builds(mh.MHLinkLayerAddress, u8, st.binary(max_size=254)),
    st.builds(mh.MobileNodeIdentifier, u8, st.binary(max_size=254)),
    st.builds(mh.MHIPv6AddressPrefix, u8, u8, addresses),
    st.builds(
        mh.UnknownMobilityOption,
        st.integers(0, 255).filter(lambda t: t not in _DECODED_MH_OPTIONS),
        st.binary(max_size=255),
    ),
)

badf_options = st.builds(mh.BADF, u32, st.sampled_from([12, 16]).flatmap(lambda n: st.binary(min_size=n, max_size=n)))
any_badf_options = st.builds(mh.BADF, u32, st.binary(max_size=249))


def _with_badf(badf: st.SearchStrategy[Any]) -> st.SearchStrategy[tuple[Any, ...]]:
    """Up to 4 options, then optionally a BADF (always last, RFC 5568 §6.4.5)."""
    return st.tuples(st.lists(mobility_options, max_size=4), st.none() | badf).map(
        lambda t: tuple(t[0]) + ((t[1],) if t[1] is not None else ())
    )


mobility_option_lists = _with_badf(st.one_of(badf_options, any_badf_options))

mobility_messages: st.SearchStrategy[Any] = st.one_of(
    st.builds(mh.FBU, u16, u16, mobility_option_lists, st.booleans(), st.booleans(), st.booleans(), st.booleans()),
    st.builds(mh.FBack, u8, u16, u16, mobility_option_lists, st.booleans()),
    st.builds(mh.HI, u16, u8, mobility_option_lists, st.booleans(), st.booleans()),
    st.builds(mh.HAck, u16, u8, mobility_option_lists),
    st.builds(
        mh.UnknownMobilityMessage,
        u8.filter(lambda t: t not in (8, 9, 14, 15)),
        st.integers(0, 16).flatmap(lambda n: st.binary(min_size=8 * n + 2, max_size=8 * n + 2)),
    ),
)

fbus_with_badf = st.builds(
    mh.FBU,
    u16,
    u16,
    st.tuples(st.lists(mobility_options, max_size=4), st.one_of(badf_options, any_badf_options)).map(
        lambda t: (*t[0], t[1])
    ),
)

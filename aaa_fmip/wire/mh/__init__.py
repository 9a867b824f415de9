"""Mobility Header messages of FMIPv6 (RFC 5568 §6.2) and their mobility options (RFC 6275 §6.2, RFC 5568 §6.4).

Mobility Header (IPv6 Next Header 135, RFC 6275 §6.1.1)::

    Payload Proto (59) | Header Len (8-octet units after the first 8) | MH Type | Reserved | Checksum | Data

The Checksum covers the IPv6 pseudo-header with Next Header 135, source = the Home Address option's address
(the PCoA) when the packet has one, else the IPv6 source, and destination = the PAR (architecture §3).

Options are laid out by the encoder: Pad1/PadN before each option that has an alignment requirement and at
the end so the header is a multiple of 8 octets; the decoder strips padding. Alternate Care-of Address at
8n+6 (RFC 6275 §6.2.5), MH IPv6 Address/Prefix at 8n+4 (RFC 5568 §6.4.2), and the Binding Authorization
Data for FMIPv6 option (BADF) last, with its Type octet at 8n+6 for a 12-octet authenticator and 8n+2 for a
16-octet one, so the SPI is 4-octet aligned and the header ends with the authenticator (architecture §3).
The BADF Option Length counts the authenticator only, not the SPI (RFC 5568 §6.4.5).
"""

from __future__ import annotations

from aaa_fmip.wire.mh.codes import (
    IPPROTO_NONE,
    MH_NEXT_HEADER,
    FBackStatus,
    HAckCode,
    HICode,
    MHType,
    MobileNodeIdentifierSubtype,
    MobilityOptionType,
)
from aaa_fmip.wire.mh.messages import (
    FBU,
    HI,
    BadfInput,
    FBack,
    HAck,
    MobilityMessage,
    UnknownMobilityMessage,
    badf_input,
    badf_input_of,
    decode_mh,
    encode_mh,
)
from aaa_fmip.wire.mh.options import (
    BADF,
    AlternateCareOfAddress,
    BindingAuthorizationDataForFMIPv6,
    MHIPv6AddressPrefix,
    MHLinkLayerAddress,
    MobileNodeIdentifier,
    MobilityOption,
    UnknownMobilityOption,
)

__all__ = [
    "BADF",
    "FBU",
    "HI",
    "IPPROTO_NONE",
    "MH_NEXT_HEADER",
    "AlternateCareOfAddress",
    "BadfInput",
    "BindingAuthorizationDataForFMIPv6",
    "FBack",
    "FBackStatus",
    "HAck",
    "HAckCode",
    "HICode",
    "MHIPv6AddressPrefix",
    "MHLinkLayerAddress",
    "MHType",
    "MobileNodeIdentifier",
    "MobileNodeIdentifierSubtype",
    "MobilityMessage",
    "MobilityOption",
    "MobilityOptionType",
    "UnknownMobilityMessage",
    "UnknownMobilityOption",
    "badf_input",
    "badf_input_of",
    "decode_mh",
    "encode_mh",
]

"""Mobility Header code points (RFC 6275 §6.1, RFC 5568 §6.2, §6.4): MH and option types, status and codes."""

from __future__ import annotations

from aaa_fmip.wire._buffer import OpenIntEnum

MH_NEXT_HEADER = 135  # RFC 6275 §6.1.1; also the pseudo-header's Next Header (RFC 3775 said 2; RFC 6275 corrected it)
IPPROTO_NONE = 59  # RFC 6275 §6.1.1 Payload Proto
_MH_UNIT = 8
_MH_HEADER = 6  # Payload Proto | Header Len | MH Type | Reserved | Checksum


class MHType(OpenIntEnum):
    """Mobility Header Type (IANA "Mobility Header Types")."""

    BINDING_REFRESH_REQUEST = 0  # RFC 6275 §6.1.2
    HOME_TEST_INIT = 1
    CARE_OF_TEST_INIT = 2
    HOME_TEST = 3
    CARE_OF_TEST = 4
    BINDING_UPDATE = 5  # RFC 6275 §6.1.7
    BINDING_ACKNOWLEDGEMENT = 6  # RFC 6275 §6.1.8
    BINDING_ERROR = 7  # RFC 6275 §6.1.9
    FAST_BINDING_UPDATE = 8  # RFC 5568 §6.2.2
    FAST_BINDING_ACKNOWLEDGMENT = 9  # RFC 5568 §6.2.3
    FAST_NEIGHBOR_ADVERTISEMENT = 10  # RFC 4068, deprecated by RFC 5568
    HANDOVER_INITIATE = 14  # RFC 5568 §6.2.1.1
    HANDOVER_ACKNOWLEDGE = 15  # RFC 5568 §6.2.1.2


class MobilityOptionType(OpenIntEnum):
    """Mobility option types (IANA "Mobility Options")."""

    PAD1 = 0  # RFC 6275 §6.2.2
    PADN = 1  # RFC 6275 §6.2.3
    BINDING_REFRESH_ADVICE = 2  # RFC 6275 §6.2.4
    ALTERNATE_CARE_OF_ADDRESS = 3  # RFC 6275 §6.2.5
    NONCE_INDICES = 4  # RFC 6275 §6.2.6
    BINDING_AUTHORIZATION_DATA = 5  # RFC 6275 §6.2.7
    MH_LINK_LAYER_ADDRESS = 7  # RFC 5568 §6.4.4
    MOBILE_NODE_IDENTIFIER = 8  # RFC 4283 §3
    BINDING_AUTHORIZATION_DATA_FOR_FMIPV6 = 21  # RFC 5568 §6.4.5
    MH_IPV6_ADDRESS_PREFIX = 34  # RFC 5568 §11 (its §6.4.2 says 17: that is the ND option's number)


class FBackStatus(OpenIntEnum):
    """FBack Status (RFC 5568 §6.2.3): below 128 accepted, from 128 rejected."""

    ACCEPTED = 0
    ACCEPTED_NCOA_INVALID = 1  # use the NCoA in the Alternate Care-of Address option
    REASON_UNSPECIFIED = 128
    ADMINISTRATIVELY_PROHIBITED = 129
    INSUFFICIENT_RESOURCES = 130
    INCORRECT_INTERFACE_IDENTIFIER_LENGTH = 131


class HICode(OpenIntEnum):
    """HI Code (RFC 5568 §6.2.1.1)."""

    FBU_FROM_PCOA = 0  # the PAR processed an FBU sent from the PCoA (predictive)
    FBU_NOT_FROM_PCOA = 1  # reactive


class HAckCode(OpenIntEnum):
    """HAck Code (RFC 5568 §6.2.1.2)."""

    ACCEPTED_NCOA_VALID = 0
    ACCEPTED_NCOA_NOT_VALID = 1
    ACCEPTED_NCOA_ASSIGNED = 2
    ACCEPTED_USE_PCOA = 3
    UNSOLICITED = 4
    NOT_ACCEPTED = 128
    ADMINISTRATIVELY_PROHIBITED = 129
    INSUFFICIENT_RESOURCES = 130


class MobileNodeIdentifierSubtype(OpenIntEnum):
    """Mobile Node Identifier option subtype (RFC 4283 §3)."""

    NAI = 1  # Network Access Identifier, RFC 4282

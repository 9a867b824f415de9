"""ICMPv6 and ND code points this project meets: types, the FMIPv6 subtypes and codes (RFC 5568 §6.1, §6.4)."""

from __future__ import annotations

from aaa_fmip.wire._buffer import OpenIntEnum


class Icmpv6Type(OpenIntEnum):
    """ICMPv6 types this project meets (IANA "ICMPv6 Type Numbers")."""

    ROUTER_SOLICITATION = 133  # RFC 4861 §4.1
    ROUTER_ADVERTISEMENT = 134  # RFC 4861 §4.2
    NEIGHBOR_SOLICITATION = 135  # RFC 4861 §4.3
    NEIGHBOR_ADVERTISEMENT = 136  # RFC 4861 §4.4
    REDIRECT = 137  # RFC 4861 §4.5
    CERTIFICATION_PATH_SOLICITATION = 148  # RFC 3971 §6.4.1
    CERTIFICATION_PATH_ADVERTISEMENT = 149  # RFC 3971 §6.4.2
    FMIPV6 = 154  # RFC 5568 §6.1


class FmipSubtype(OpenIntEnum):
    """Subtype of ICMPv6 type 154 (RFC 5568 §6.1, §11)."""

    RTSOLPR = 2  # RFC 5568 §6.1.1
    PRRTADV = 3  # RFC 5568 §6.1.2
    HI = 4  # RFC 5268 only; RFC 5568 moved HI to the Mobility Header
    HACK = 5  # RFC 5268 only; RFC 5568 moved HAck to the Mobility Header


class PrRtAdvCode(OpenIntEnum):
    """PrRtAdv Code (RFC 5568 §6.1.2)."""

    NEW_ROUTER_INFO = 0  # [AP-ID, AR-Info] tuples for movement detection and NCoA formation
    UNSOLICITED_HANDOVER_TRIGGER = 1  # network-initiated handover: send an FBU now
    NO_NEW_ROUTER_INFO = 2  # outcome per AP in each New Access Point LLA option's Option-Code
    PARTIAL_NEW_ROUTER_INFO = 3  # information for a subset of the requested APs
    UNSOLICITED_NEIGHBORHOOD_INFO = 4  # unsolicited, not a handover trigger
    USE_DHCP = 5  # use DHCP on the NAR link; forwarding to the PCoA only


class LinkLayerAddressCode(OpenIntEnum):
    """Option-Code of the LLA option (ND 19, RFC 5568 §6.4.3) and of the MH-LLA option (MH 7, §6.4.4)."""

    WILDCARD = 0  # all nearby access points
    NEW_ACCESS_POINT = 1
    MOBILE_NODE = 2
    NEW_ACCESS_ROUTER = 3  # the proxied originator
    SENDER = 4  # source of the RtSolPr or PrRtAdv
    SAME_ROUTER_INTERFACE = 5  # that AP is on the current router interface: no CoA change
    NO_PREFIX_INFO = 6
    NO_FAST_HANDOVER_SUPPORT = 7


class IPAddressPrefixCode(OpenIntEnum):
    """Option-Code of the IP Address/Prefix options (ND 17, RFC 5568 §6.4.1; MH 34, §6.4.2)."""

    OLD_CARE_OF_ADDRESS = 1
    NEW_CARE_OF_ADDRESS = 2
    NEW_ACCESS_ROUTER_ADDRESS = 3
    NEW_ACCESS_ROUTER_PREFIX = 4


class NAACKStatus(OpenIntEnum):
    """NAACK Status (RFC 5568 §6.4.6)."""

    NCOA_INVALID_CONFIGURE = 1  # perform address configuration
    NCOA_INVALID_USE_SUPPLIED = 2  # use the NCoA supplied in the option
    NCOA_INVALID_USE_NAR_ADDRESS = 3  # use the NAR's IP address as NCoA in the FBU
    PCOA_SUPPLIED = 4  # do not send an FBU
    LINK_LAYER_ADDRESS_UNRECOGNIZED = 128


class HandoverKeyAlgorithm(OpenIntEnum):
    """AT field of ND options 27/28 (RFC 5269 §4). No RFC assigns values: these are architecture.md §3's."""

    HMAC_SHA1_96 = 1  # RFC 5568 §6.4.5 default authenticator
    HMAC_SHA256_128 = 2

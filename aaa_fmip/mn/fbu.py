"""The mobile node's AAA-derived keys (architecture.md §2) and its Fast Binding Updates (RFC 5568 §6.2.2, §6.4.5)."""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from typing import Final

from aaa_fmip import keys
from aaa_fmip.crypto import badf
from aaa_fmip.crypto.badf import Algorithm
from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.errors import BadAuthenticator
from aaa_fmip.keys import HandoverKey, HandoverMasterKey, MihPsk
from aaa_fmip.wire import ipv6 as ipv6wire
from aaa_fmip.wire import mh as mhwire
from aaa_fmip.wire.icmpv6 import LinkLayerAddressCode

DEFAULT_LIFETIME_UNIT: Final = 4  # seconds per FBU Lifetime unit on the wire (architecture.md §3)
DEFAULT_HOP_LIMIT: Final = 64
_MAX_U16: Final = 0xFFFF


# --- AAA-derived keys (architecture.md §2) ---------------------------------------------------------------------


def derive_master_key(
    *,
    emsk: bytes | SecretBytes | None = None,
    eap_session_id: bytes | None = None,
    dsrk: bytes | SecretBytes | None = None,
    emsk_name: bytes | None = None,
) -> HandoverMasterKey:
    """The HMK, HMK-Name and SPI: from the EMSK and EAP Session-Id (home domain), or from the DSRK and EMSKName
    (visited domain, RFC 5295 §4). Exactly one of the two pairs must be given."""
    home = emsk is not None or eap_session_id is not None
    visited = dsrk is not None or emsk_name is not None
    if home == visited:
        raise ValueError("give either emsk and eap_session_id, or dsrk and emsk_name")
    if home:
        if emsk is None or eap_session_id is None:
            raise ValueError("emsk and eap_session_id must be given together")
        return keys.derive_hmk(emsk, eap_session_id)
    if dsrk is None or emsk_name is None:
        raise ValueError("dsrk and emsk_name must be given together")
    return keys.derive_hmk_visited(dsrk, emsk_name)


def derive_handover_key(master: HandoverMasterKey, par: ipaddress.IPv6Address) -> HandoverKey:
    """The HK for the PAR address the MN sends its FBU to (the AR-ID)."""
    return keys.derive_hk(master.hmk, master.hmk_name, par, master.spi)


def derive_mih_psk(master: HandoverMasterKey, mihf_id: str) -> MihPsk:
    """The DTLS/TLS pre-shared key and PSK identity for the MoS whose MIHF-ID is ``mihf_id`` (architecture.md
    §10): the node derives it itself, the MoS obtains the same key from the key service."""
    return keys.derive_mih_psk(master.hmk, master.hmk_name, mihf_id)


# --- Fast Binding Update (RFC 5568 §6.2.2) ---------------------------------------------------------------------


@dataclass(frozen=True)
class FbuPacket:
    """An FBU and the IPv6 packet fields it was authenticated for."""

    source: ipaddress.IPv6Address  # IPv6 source: the PCoA (predictive) or the NCoA (reactive)
    destination: ipaddress.IPv6Address  # the PAR address (also the authenticator's PAR and the AR-ID)
    home_address: ipaddress.IPv6Address | None  # address in the Home Address destination option, if any
    care_of: ipaddress.IPv6Address  # the CoA the authenticator covers: Alternate CoA, else the source
    mh: bytes  # the Mobility Header (IPv6 Next Header 135), checksum and BADF filled in

    def ipv6_packet(self, *, hop_limit: int = DEFAULT_HOP_LIMIT) -> bytes:
        """The whole IPv6 packet (with the Home Address destination option when there is one)."""
        return ipv6wire.build_ipv6_packet(
            self.source,
            self.destination,
            mhwire.MH_NEXT_HEADER,
            self.mh,
            hop_limit=hop_limit,
            home_address=self.home_address,
        )


def fbu_lifetime_units(lifetime_seconds: int, unit: int = DEFAULT_LIFETIME_UNIT) -> int:
    """The FBU Lifetime field for a lifetime in seconds: rounded up, so a non-zero lifetime never becomes 0."""
    if unit not in (1, 4):
        raise ValueError("the FBU Lifetime unit is 4 seconds (RFC 6275 §6.1.7) or 1 second (RFC 5568 §6.2.2)")
    if isinstance(lifetime_seconds, bool) or not isinstance(lifetime_seconds, int) or lifetime_seconds < 0:
        raise ValueError("FBU lifetime must be a non-negative number of seconds")
    units = math.ceil(lifetime_seconds / unit)
    if units > _MAX_U16:
        raise ValueError(f"FBU lifetime of {lifetime_seconds} s exceeds the {_MAX_U16 * unit} s the field can hold")
    return units


def build_fbu_packet(
    hk: HandoverKey,
    *,
    sequence: int,
    lifetime_seconds: int,
    pcoa: ipaddress.IPv6Address,
    ncoa: ipaddress.IPv6Address,
    par: ipaddress.IPv6Address,
    alternate_coa: bool = True,
    home_address_option: bool = False,
    mh_lla: bytes | None = None,
    algorithm: Algorithm = Algorithm.HMAC_SHA1_96,
    source: ipaddress.IPv6Address | None = None,
    lifetime_unit: int = DEFAULT_LIFETIME_UNIT,
) -> FbuPacket:
    """Build an authenticated FBU to ``par`` (RFC 5568 §6.2.2, BADF per §6.4.5 and architecture.md §3).

    * ``alternate_coa`` True (predictive mode, sent from the PAR link): IPv6 source = ``pcoa`` and the NCoA goes
      in an Alternate Care-of Address option. False (reactive mode): IPv6 source = ``ncoa``, no option.
      ``source`` overrides the IPv6 source for other cases.
    * ``home_address_option``: put ``pcoa`` in a Home Address destination option (RFC 5269 keys, SPI 0, are
      looked up by it); the MH checksum then uses it as the pseudo-header source.
    * ``mh_lla``: the MN's link-layer address, sent in an MH Link-Layer Address option (code 2).
    * ``lifetime_seconds`` is rounded up to the ``lifetime_unit`` (4 s by default) of the Lifetime field.
    * The authenticator covers the Alternate CoA if present, else the IPv6 source, then the PAR address and the
      MH with checksum 0 minus the authenticator octets; it is computed over the encoded header, then the
      header is re-encoded with it.
    """
    for name, value in (("pcoa", pcoa), ("ncoa", ncoa), ("par", par)):
        if not isinstance(value, ipaddress.IPv6Address):
            raise ValueError(f"{name} must be an IPv6Address")
    if isinstance(sequence, bool) or not isinstance(sequence, int) or not 0 <= sequence <= _MAX_U16:
        raise ValueError("FBU sequence number must be an integer in 0..65535")
    if not 0 <= hk.spi <= keys.MAX_SPI:
        raise ValueError("SPI must be a 32-bit value")
    alg = Algorithm(algorithm)
    lifetime = fbu_lifetime_units(lifetime_seconds, lifetime_unit)
    ip_source = source if source is not None else (pcoa if alternate_coa else ncoa)
    home_address = pcoa if home_address_option else None
    checksum_source = home_address if home_address is not None else ip_source
    care_of = ncoa if alternate_coa else ip_source

    options: list[mhwire.MobilityOption] = []
    if alternate_coa:
        options.append(mhwire.AlternateCareOfAddress(ncoa))
    if mh_lla is not None:
        options.append(mhwire.MHLinkLayerAddress(LinkLayerAddressCode.MOBILE_NODE, bytes(mh_lla)))

    def encode(authenticator: bytes) -> bytes:
        badf_option = mhwire.BindingAuthorizationDataForFMIPv6(hk.spi, authenticator)
        fbu = mhwire.FBU(sequence, lifetime, (*options, badf_option))
        return mhwire.encode_mh(fbu, source=checksum_source, destination=par)

    placeholder = encode(bytes(alg.authenticator_length))
    authenticator = badf.compute_authenticator(hk.hk, care_of, par, mhwire.badf_input(placeholder).mh_data, alg)
    return FbuPacket(ip_source, par, home_address, care_of, encode(authenticator))


def build_fbu(
    hk: HandoverKey,
    *,
    sequence: int,
    lifetime_seconds: int,
    pcoa: ipaddress.IPv6Address,
    ncoa: ipaddress.IPv6Address,
    par: ipaddress.IPv6Address,
    alternate_coa: bool = True,
    home_address_option: bool = False,
    mh_lla: bytes | None = None,
    algorithm: Algorithm = Algorithm.HMAC_SHA1_96,
    source: ipaddress.IPv6Address | None = None,
    lifetime_unit: int = DEFAULT_LIFETIME_UNIT,
) -> bytes:
    """The Mobility Header of :func:`build_fbu_packet` (same arguments). The IPv6 source is ``pcoa`` when
    ``alternate_coa`` is True, else ``ncoa``; the destination is ``par``; the home address ``pcoa`` when
    ``home_address_option`` is True."""
    return build_fbu_packet(
        hk,
        sequence=sequence,
        lifetime_seconds=lifetime_seconds,
        pcoa=pcoa,
        ncoa=ncoa,
        par=par,
        alternate_coa=alternate_coa,
        home_address_option=home_address_option,
        mh_lla=mh_lla,
        algorithm=algorithm,
        source=source,
        lifetime_unit=lifetime_unit,
    ).mh


def verify_fback(
    key: HandoverKey | SecretBytes | bytes,
    mh: bytes,
    *,
    par: ipaddress.IPv6Address,
    destination: ipaddress.IPv6Address,
) -> mhwire.FBack:
    """Check an FBack from ``par`` sent to ``destination`` (the NCoA, or the PCoA) and return it decoded.

    The PAR authenticates the FBack as the FBU (architecture.md §3): CoA = the Alternate CoA if present, else
    the IPv6 destination. Raises :class:`~aaa_fmip.errors.DecodeError` for a malformed header or checksum and
    :class:`~aaa_fmip.errors.BadAuthenticator` for a wrong authenticator or SPI.
    """
    message = mhwire.decode_mh(mh, source=par, destination=destination)
    if not isinstance(message, mhwire.FBack):
        raise ValueError("the Mobility Header is not a Fast Binding Acknowledgment")
    auth = mhwire.badf_input(mh)
    secret = key.hk if isinstance(key, HandoverKey) else key
    if isinstance(key, HandoverKey) and auth.spi != key.spi:
        raise BadAuthenticator(f"FBack SPI {auth.spi} is not the SPI of this handover key")
    care_of = next((o.address for o in message.options if isinstance(o, mhwire.AlternateCareOfAddress)), destination)
    badf.verify_authenticator(secret, care_of, par, auth.mh_data, auth.authenticator)
    return message

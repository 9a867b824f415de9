"""The handover key hierarchy (architecture.md §2): EMSK → HMK → per-AR HK, and the visited-domain variant.

Every key is an RFC 5295 KDF output (:func:`aaa_fmip.crypto.kdf.kdf`, HMAC-SHA-256 PRF+)::

    HMK      = KDF(EMSK,            LABEL_HMK | 0x00 | ""    | 64)   an RFC 5295 §3.1 USRK
    HMK-Name = KDF(EAP Session-Id,  LABEL_HMK | 0x00 | ""    | 8)    RFC 5295 §3.2 USRKName
    HMK (visited domain)  = KDF(DSRK,      LABEL_HMK | 0x00 | "" | 64)   RFC 5295 §4 DSUSRK
    HMK-Name (visited)    = KDF(EMSKName,  LABEL_HMK | 0x00 | "" | 8)    RFC 5295 §4 DSUSRKName
    SPI      = uint32(KDF(HMK,      LABEL_SPI | 0x00 | ""    | 4)), 0 replaced by 1
    HK       = KDF(HMK,             LABEL_HK  | 0x00 | AR-ID | 32)
    HK-Name  = KDF(HMK-Name,        LABEL_HK  | 0x00 | AR-ID | 8)
    MIH PSK  = KDF(HMK,             LABEL_MIH_PSK | 0x00 | MoS MIHF-ID | 32)   PSK identity = hex(HMK-Name)
    pair PSK = KDF(IRK,             LABEL_ROUTER_PAIR_PSK | 0x00 | min(AR-ID A, B) | max(AR-ID A, B)
                                    | uint32(epoch) | 32)

The MIH PSK keys DTLS/TLS-PSK between a mobile node and one Mobility Server (MoS, RFC 5677), bound to the
MoS's MIHF-ID (its ASCII octets, an FQDN or NAI as RFC 5677 §4.2 says); its PSK identity (RFC 4279 §5.1) is the
lowercase hex of the HMK-Name, so a MoS can ask the service for the key of the session that identity names.
The router-pair PSK keys IKEv2 between two access routers (RFC 5568 §10: HI/HAck under IPsec, IKEv2 with pre-shared
keys mandatory). Its root, the infrastructure root key (IRK), is 32 random octets the service generates and keeps
wrapped under the KEK; it is never derived from any EMSK, because a mobile node knows every key below its EMSK.
The two AR-IDs (the routers' IKE addresses) go in ascending octet order, so both routers of a pair get one key.
AR-ID is the 16-octet binary IPv6 address the MN sends its FBU to (the PAR address of the BADF authenticator).
All inputs are raw octets. The labels use the reserved specorg ``aaa-fmip.invalid`` because no FMIPv6 USRK label
was ever registered with IANA; they change only together, as one profile. Published vectors:
``docs/key-hierarchy.md`` (the same values as ``tests/vectors/key-hierarchy.json``).

Pure functions: no IO, no clock, no randomness. Invalid input raises :class:`ValueError` whose message names the
input but never contains key octets.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Final

from aaa_fmip.crypto.kdf import kdf
from aaa_fmip.crypto.secrets import SecretBytes

# architecture.md §2: the project's labels (RFC 5295 §3.1 form "label-string@specorg", specorg reserved by RFC 2606).
LABEL_HMK: Final = b"FMIPv6 Handover Master Key@aaa-fmip.invalid"
LABEL_SPI: Final = b"FMIPv6 SPI@aaa-fmip.invalid"
LABEL_HK: Final = b"FMIPv6 Handover Key@aaa-fmip.invalid"
LABEL_MIH_PSK: Final = b"MIH PSK@aaa-fmip.invalid"
LABEL_ROUTER_PAIR_PSK: Final = b"AR Pair IKE PSK@aaa-fmip.invalid"
# RFC 5295 §8.1 reserved labels: EMSKName (§3.2) and the DSRK (§4).
LABEL_EMSK_NAME: Final = b"EMSK"
LABEL_DSRK: Final = b"dsrk@ietf.org"

EMSK_MIN_LENGTH: Final = 64  # RFC 3748 §7.10 / RFC 5247 §2.1: the EMSK is at least 64 octets
DSRK_LENGTH: Final = 64  # architecture.md §2; RFC 5295 §3.1 root keys MUST be at least 64 octets
HMK_LENGTH: Final = 64  # an RFC 5295 USRK: at least 64 octets
HK_LENGTH: Final = 32
NAME_LENGTH: Final = 8  # RFC 5295 §3.2: EMSKName, USRKName and DSUSRKName are 8 octets
SPI_LENGTH: Final = 4
MIH_PSK_LENGTH: Final = 32  # architecture.md §2/§10: 32 octets, mbed TLS's MBEDTLS_PSK_MAX_LEN
IRK_LENGTH: Final = 32  # architecture.md §2: the infrastructure root key, random
ROUTER_PAIR_PSK_LENGTH: Final = 32
MAX_EPOCH: Final = 0xFFFFFFFF  # the epoch is a uint32 in the KDF input
MIHF_ID_MAX_LENGTH: Final = 253  # RFC 5677 §4.2: an FQDN (RFC 1035 §2.3.4, 253 characters as text) or an NAI
MAX_KDF_KEY_LENGTH: Final = 256  # RFC 5295 §3.1.2: the KDF must accept keys up to 256 octets
MAX_INPUT_LENGTH: Final = 2048  # bound on Session-Id and domain; RFC 5295 §3.1.2 accepts 2048 octets of data

SPI_RFC5269: Final = 0  # RFC 5568 §6.4.5 / architecture.md §3: SPI 0 means the RFC 5269 (SEND) handover key
MAX_SPI: Final = 0xFFFFFFFF
DEFAULT_MAX_LIFETIME: Final = 43200  # seconds; RFC 5269 §3.7 HK-LIFETIME (12 hours)


@dataclass(frozen=True)
class HandoverMasterKey:
    """The HMK of one EAP session, with its name and the SPI the MN puts in its BADF options."""

    hmk: SecretBytes = field(repr=False)
    hmk_name: bytes
    spi: int


@dataclass(frozen=True)
class HandoverKey:
    """The HK shared by the MN and one AR (for one AR-ID)."""

    hk: SecretBytes = field(repr=False)
    hk_name: bytes
    spi: int


def derive_hmk(emsk: bytes | SecretBytes, eap_session_id: bytes) -> HandoverMasterKey:
    """HMK, HMK-Name and SPI of a home-domain EAP session (RFC 5295 §3.1 USRK and §3.2 USRKName)."""
    k = _key_octets(emsk, "EMSK", min_length=EMSK_MIN_LENGTH)
    sid = _octets(eap_session_id, "EAP Session-Id", min_length=1, max_length=MAX_INPUT_LENGTH)
    hmk = kdf(k, LABEL_HMK, b"", HMK_LENGTH)
    return HandoverMasterKey(SecretBytes(hmk), kdf(sid, LABEL_HMK, b"", NAME_LENGTH), derive_spi(hmk))


def derive_hmk_visited(dsrk: bytes | SecretBytes, emsk_name: bytes) -> HandoverMasterKey:
    """HMK, HMK-Name and SPI in a visited domain that holds the DSRK (RFC 5295 §4 DSUSRK and DSUSRKName)."""
    k = _key_octets(dsrk, "DSRK", min_length=DSRK_LENGTH)
    name = _octets(emsk_name, "EMSKName", min_length=NAME_LENGTH, max_length=NAME_LENGTH)
    hmk = kdf(k, LABEL_HMK, b"", HMK_LENGTH)
    return HandoverMasterKey(SecretBytes(hmk), kdf(name, LABEL_HMK, b"", NAME_LENGTH), derive_spi(hmk))


def derive_spi(hmk: bytes | SecretBytes) -> int:
    """The BADF SPI of an HMK: the 4 KDF octets big-endian; 0 (reserved for RFC 5269 keys) becomes 1."""
    k = _key_octets(hmk, "HMK", min_length=HMK_LENGTH)
    spi = int.from_bytes(kdf(k, LABEL_SPI, b"", SPI_LENGTH), "big")
    return spi if spi != SPI_RFC5269 else 1


def derive_hk(hmk: SecretBytes | bytes, hmk_name: bytes, ar_address: ipaddress.IPv6Address, spi: int) -> HandoverKey:
    """The HK and HK-Name for the AR-ID ``ar_address``; ``spi`` (the HMK's) is carried along unchanged."""
    k = _key_octets(hmk, "HMK", min_length=HMK_LENGTH)
    name = _octets(hmk_name, "HMK-Name", min_length=NAME_LENGTH, max_length=NAME_LENGTH)
    ar_id = ar_id_octets(ar_address)
    if isinstance(spi, bool) or not isinstance(spi, int) or not 1 <= spi <= MAX_SPI:
        raise ValueError(f"SPI must be an integer in 1..{MAX_SPI} (SPI 0 is reserved for RFC 5269 keys)")
    return HandoverKey(SecretBytes(kdf(k, LABEL_HK, ar_id, HK_LENGTH)), kdf(name, LABEL_HK, ar_id, NAME_LENGTH), spi)


@dataclass(frozen=True)
class MihPsk:
    """The pre-shared key between a mobile node and one MoS (architecture.md §10), and its PSK identity."""

    psk: SecretBytes = field(repr=False)
    identity: str  # RFC 4279 §5.1 psk_identity: lowercase hex of the HMK-Name (16 ASCII characters)
    mihf_id: str


def derive_mih_psk(hmk: SecretBytes | bytes, hmk_name: bytes, mihf_id: str) -> MihPsk:
    """The MIH PSK for the MoS whose MIHF-ID is ``mihf_id`` (architecture.md §2), with its PSK identity.

    ``mihf_id`` is the MoS's MIHF-ID as text (RFC 5677 §4.2: an FQDN or NAI); its ASCII octets are the KDF's
    optional data, exactly as given (no case folding: the same MoS must be named the same way on both sides).
    """
    k = _key_octets(hmk, "HMK", min_length=HMK_LENGTH)
    name = _octets(hmk_name, "HMK-Name", min_length=NAME_LENGTH, max_length=NAME_LENGTH)
    data = mihf_id_octets(mihf_id)
    return MihPsk(SecretBytes(kdf(k, LABEL_MIH_PSK, data, MIH_PSK_LENGTH)), mih_psk_identity(name), mihf_id)


def mih_psk_identity(hmk_name: bytes) -> str:
    """The PSK identity of a session's MIH PSKs: the lowercase hex of its 8-octet HMK-Name."""
    return _octets(hmk_name, "HMK-Name", min_length=NAME_LENGTH, max_length=NAME_LENGTH).hex()


def hmk_name_of_identity(identity: str | bytes) -> bytes:
    """The HMK-Name a PSK identity names; ValueError unless it is exactly 16 lowercase hex digits."""
    text = identity.decode("ascii", "replace") if isinstance(identity, bytes | bytearray) else identity
    if not isinstance(text, str) or len(text) != 2 * NAME_LENGTH or any(c not in "0123456789abcdef" for c in text):
        raise ValueError(f"a PSK identity is {2 * NAME_LENGTH} lowercase hex digits (the HMK-Name)")
    return bytes.fromhex(text)


def mihf_id_octets(mihf_id: str) -> bytes:
    """The MIHF-ID KDF input: its ASCII octets, 1..253 of them, printable and without spaces."""
    if not isinstance(mihf_id, str):
        raise ValueError(f"MIHF-ID must be text, not {type(mihf_id).__name__}")
    if not 1 <= len(mihf_id) <= MIHF_ID_MAX_LENGTH or not mihf_id.isascii() or not mihf_id.isprintable():
        raise ValueError(f"MIHF-ID must be 1..{MIHF_ID_MAX_LENGTH} printable ASCII characters (an FQDN or NAI)")
    if " " in mihf_id:
        raise ValueError("MIHF-ID must not contain spaces (an FQDN or NAI)")
    return mihf_id.encode("ascii")


@dataclass(frozen=True)
class RouterPairPsk:
    """The IKEv2 pre-shared key of two access routers for one epoch (architecture.md §2 and §9)."""

    psk: SecretBytes = field(repr=False)
    epoch: int
    ar_ids: tuple[ipaddress.IPv6Address, ipaddress.IPv6Address]  # in KDF order: the lower address first


ROUTER_PAIR_PERIOD: Final = 86_400  # seconds per router-pair key epoch: one day (architecture.md §9)
ROUTER_PAIR_OVERLAP: Final = 14_400  # seconds either side of an epoch boundary in which both epochs' keys are given


def derive_router_pair_psk(
    irk: SecretBytes | bytes, ar_a: ipaddress.IPv6Address, ar_b: ipaddress.IPv6Address, epoch: int
) -> RouterPairPsk:
    """``KDF(IRK, LABEL_ROUTER_PAIR_PSK | 0x00 | min(A, B) | max(A, B) | uint32(epoch) | 32)``.

    ``ar_a`` and ``ar_b`` are the two routers' AR-IDs (16-octet addresses, compared as octet strings), in either
    order: the key is the same for both routers. They must differ (a pair is two routers).
    """
    k = _key_octets(irk, "IRK", min_length=IRK_LENGTH)
    a, b = ar_id_octets(ar_a), ar_id_octets(ar_b)
    if a == b:
        raise ValueError("a router pair needs two different AR-IDs")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch <= MAX_EPOCH:
        raise ValueError(f"epoch must be an integer in 0..{MAX_EPOCH}")
    low, high = sorted((a, b))
    data = low + high + epoch.to_bytes(4, "big")
    psk = kdf(k, LABEL_ROUTER_PAIR_PSK, data, ROUTER_PAIR_PSK_LENGTH)
    return RouterPairPsk(SecretBytes(psk), epoch, (ipaddress.IPv6Address(low), ipaddress.IPv6Address(high)))


def derive_dsrk(emsk: bytes | SecretBytes, domain: bytes) -> bytes:
    """RFC 5295 §4 DSRK = KDF(EMSK, "dsrk@ietf.org" | 0x00 | domain | 64); ``domain`` as ASCII octets."""
    k = _key_octets(emsk, "EMSK", min_length=EMSK_MIN_LENGTH)
    d = _octets(domain, "domain", min_length=1, max_length=MAX_INPUT_LENGTH)
    return kdf(k, LABEL_DSRK, d, DSRK_LENGTH)


def derive_emsk_name(eap_session_id: bytes) -> bytes:
    """RFC 5295 §3.2 EMSKName = KDF(EAP Session-Id, "EMSK" | 0x00 | 8)."""
    sid = _octets(eap_session_id, "EAP Session-Id", min_length=1, max_length=MAX_INPUT_LENGTH)
    return kdf(sid, LABEL_EMSK_NAME, b"", NAME_LENGTH)


def hmk_lifetime(aaa_lifetime: int | None, max_lifetime: int = DEFAULT_MAX_LIFETIME) -> int:
    """HMK lifetime in seconds: min(the AAA exchange's Session-Timeout or Key-Lifetime, ``max_lifetime``).

    ``aaa_lifetime`` None means the AAA exchange gave none, so the configured maximum applies. 0 (a key that is
    already expired) is returned as 0 for the caller to refuse; negative values are errors.
    """
    if isinstance(max_lifetime, bool) or not isinstance(max_lifetime, int) or max_lifetime <= 0:
        raise ValueError("maximum HMK lifetime must be a positive number of seconds")
    if aaa_lifetime is None:
        return max_lifetime
    if isinstance(aaa_lifetime, bool) or not isinstance(aaa_lifetime, int) or aaa_lifetime < 0:
        raise ValueError("AAA key lifetime must be a non-negative number of seconds")
    return min(aaa_lifetime, max_lifetime)


def ar_id_octets(ar_address: ipaddress.IPv6Address) -> bytes:
    """The AR-ID KDF input: the 16-octet address (architecture.md §2). Unspecified and multicast are refused."""
    if not isinstance(ar_address, ipaddress.IPv6Address):
        raise ValueError(f"AR address must be an IPv6Address, not {type(ar_address).__name__}")
    if ar_address.is_unspecified or ar_address.is_multicast:
        raise ValueError(f"AR address {ar_address} is not a unicast address")
    return ar_address.packed


def _key_octets(value: bytes | SecretBytes, what: str, *, min_length: int) -> bytes:
    if isinstance(value, SecretBytes):
        raw = value.reveal()
    elif isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
    else:
        raise ValueError(f"{what} must be octets, not {type(value).__name__}")
    if not min_length <= len(raw) <= MAX_KDF_KEY_LENGTH:
        raise ValueError(f"{what} must be {min_length}..{MAX_KDF_KEY_LENGTH} octets, got {len(raw)}")
    return raw


def _octets(value: bytes, what: str, *, min_length: int, max_length: int) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise ValueError(f"{what} must be octets, not {type(value).__name__}")
    raw = bytes(value)
    if not min_length <= len(raw) <= max_length:
        expected = str(min_length) if min_length == max_length else f"{min_length}..{max_length}"
        raise ValueError(f"{what} must be {expected} octets, got {len(raw)}")
    return raw

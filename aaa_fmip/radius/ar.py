"""Access-router side: read the handover key the AAA server pushed in an Access-Accept.

An AR that is also the RADIUS NAS (the authenticator of the MN's EAP exchange) receives, in the final
Access-Accept, the vendor attributes of ``dictionaries/dictionary.aaa-fmip``: the HK for its own address
(``AAA-FMIP-HK``, salt-encrypted with the RADIUS shared secret and the Request Authenticator of the
Access-Request, RFC 2548 §2.4.2), the SPI, lifetime, HK-Name and the AR address it was derived for.

pyrad decodes the packet and verifies the Response Authenticator and Message-Authenticator
(:meth:`pyrad.packet.Packet.VerifyReply`); this module's :func:`aaa_fmip.radius.salt.salt_decrypt` decrypts the
key. Use :func:`decode_access_accept` with the raw datagrams, or :func:`pushed_key_from_reply` with a reply
pyrad already decoded and verified (for example the return value of ``Client.SendPacket``).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from typing import Any, Final

from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.errors import DecodeError, VerificationError
from aaa_fmip.radius.dictionary import (
    ALGORITHM_VALUES,
    DEFAULT_VENDOR_ID,
    VendorAttribute,
    check_vendor_id,
    pyrad_dictionary,
)
from aaa_fmip.radius.salt import salt_decrypt

HK_LENGTH: Final = 32  # architecture.md §2
HK_NAME_LENGTH: Final = 8
ACCESS_ACCEPT: Final = 2  # RFC 2865 §4.2

_ALGORITHM_NAMES: Final = {v: k for k, v in ALGORITHM_VALUES.items()}


class BadResponseAuthenticator(VerificationError):
    """The reply does not belong to the request, or was not made with this shared secret (RFC 2865 §3)."""

    reason = "bad-response-authenticator"


@dataclass(frozen=True)
class PushedHandoverKey:
    """The HK for this AR and its identifiers, as pushed in one Access-Accept."""

    hk: SecretBytes = field(repr=False)
    spi: int
    lifetime: int  # seconds, from the Access-Accept
    hk_name: bytes
    ar_address: ipaddress.IPv6Address | None
    algorithm: str | None  # "HMAC-SHA1-96" (architecture.md §3), None if not sent


def _raw(reply: Any, vendor_id: int, attr: VendorAttribute) -> bytes | None:
    values = reply.get((vendor_id, int(attr)))
    if not values:
        return None
    if len(values) > 1:
        raise DecodeError(
            f"attribute {int(attr)} of vendor {vendor_id} occurs {len(values)} times", field="VSA", offset=0
        )
    return bytes(values[0])


def _u32(raw: bytes | None, what: str) -> int | None:
    if raw is None:
        return None
    if len(raw) != 4:
        raise DecodeError(f"{len(raw)} octets, expected 4", field=what, offset=0)
    return int(struct.unpack("!I", raw)[0])


def pushed_key_from_reply(
    reply: Any, *, request_authenticator: bytes, secret: bytes, vendor_id: int = DEFAULT_VENDOR_ID
) -> PushedHandoverKey | None:
    """The pushed HK in a pyrad reply that was already verified against its request; None when absent.

    Raises :class:`DecodeError` for malformed attributes (including a key that does not decrypt to 32 octets,
    which is what a wrong shared secret looks like).
    """
    check_vendor_id(vendor_id)
    encrypted = _raw(reply, vendor_id, VendorAttribute.HK)
    if encrypted is None:
        return None
    hk = salt_decrypt(encrypted, secret=secret, request_authenticator=request_authenticator)
    if len(hk) != HK_LENGTH:
        raise DecodeError(
            f"handover key decrypts to {len(hk)} octets, expected {HK_LENGTH} (wrong shared secret?)",
            field="AAA-FMIP-HK",
            offset=0,
        )
    spi = _u32(_raw(reply, vendor_id, VendorAttribute.SPI), "AAA-FMIP-SPI")
    if spi is None or spi == 0:
        raise DecodeError("missing or zero SPI next to a handover key", field="AAA-FMIP-SPI", offset=0)
    lifetime = _u32(_raw(reply, vendor_id, VendorAttribute.HK_LIFETIME), "AAA-FMIP-HK-Lifetime")
    if lifetime is None:
        raise DecodeError("missing lifetime next to a handover key", field="AAA-FMIP-HK-Lifetime", offset=0)
    hk_name = _raw(reply, vendor_id, VendorAttribute.HK_NAME)
    if hk_name is None or len(hk_name) != HK_NAME_LENGTH:
        raise DecodeError(f"HK-Name must be {HK_NAME_LENGTH} octets", field="AAA-FMIP-HK-Name", offset=0)
    address_raw = _raw(reply, vendor_id, VendorAttribute.AR_ADDRESS)
    if address_raw is not None and len(address_raw) != 16:
        raise DecodeError(f"{len(address_raw)} octets, expected 16", field="AAA-FMIP-AR-Address", offset=0)
    algorithm_code = _u32(_raw(reply, vendor_id, VendorAttribute.HK_ALGORITHM), "AAA-FMIP-HK-Algorithm")
    return PushedHandoverKey(
        hk=SecretBytes(hk),
        spi=spi,
        lifetime=lifetime,
        hk_name=hk_name,
        ar_address=ipaddress.IPv6Address(address_raw) if address_raw is not None else None,
        algorithm=_ALGORITHM_NAMES.get(algorithm_code, str(algorithm_code)) if algorithm_code is not None else None,
    )


def decode_access_accept(
    reply: bytes,
    *,
    request: bytes,
    secret: bytes,
    vendor_id: int = DEFAULT_VENDOR_ID,
    dictionary: Any = None,
) -> PushedHandoverKey | None:
    """Verify the raw Access-Accept ``reply`` against the raw Access-Request ``request`` it answers, then
    return the pushed HK (None if the server pushed none).

    Raises :class:`BadResponseAuthenticator` when the reply was not made for this request with this secret,
    :class:`DecodeError` when either packet or an attribute is malformed.
    """
    from pyrad.packet import AuthPacket, Packet

    if not secret:
        raise ValueError("the RADIUS shared secret must not be empty")
    d = dictionary if dictionary is not None else pyrad_dictionary(vendor_id)
    try:
        req = AuthPacket(packet=request, secret=secret, dict=d)
        rep = Packet(packet=reply, secret=secret, dict=d)
    except Exception as exc:  # pyrad's PacketError and friends
        raise DecodeError(f"not a RADIUS packet ({type(exc).__name__})", field="RADIUS", offset=0) from None
    if rep.code != ACCESS_ACCEPT:
        raise DecodeError(f"code {rep.code} is not Access-Accept", field="RADIUS code", offset=0)
    if not req.VerifyReply(rep, reply):
        raise BadResponseAuthenticator("the Access-Accept does not answer this Access-Request with this secret")
    return pushed_key_from_reply(rep, request_authenticator=req.authenticator, secret=secret, vendor_id=vendor_id)

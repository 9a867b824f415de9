"""Shared constants and probes for the SEND-fallback tests."""

from __future__ import annotations

import ipaddress
from typing import Any

import httpx
import redis

from aaa_fmip import mn
from aaa_fmip.crypto import cga, rsa
from aaa_fmip.crypto.wrap import KekRing, kek_from_env
from aaa_fmip.store import SendKeyRecord
from aaa_fmip.store.redis import RedisStore
from aaa_fmip.wire import icmpv6
from aaa_fmip.wire import send as sendwire
from tests.api._deploy import AR1_ADDRESSES, AR2_ADDRESSES, Deployment

IP = ipaddress.IPv6Address
MN_PREFIX = ipaddress.IPv6Network("2001:db8:1::/64")  # AR1's link: the MN's CGA is its PCoA there
PAR = IP(AR1_ADDRESSES[0])  # AR1: the RtSolPr destination and the PAR of the FBU
OTHER_AR = IP(AR2_ADDRESSES[0])
NCOA = IP("2001:db8:2::100")
NEW_AP = bytes.fromhex("020000000a01")
MN_LLA = bytes.fromhex("02000000bb01")
SEND_PATH = "/v1/send/handover-key"


class StoreProbe:
    """Reads the deployment's Redis directly (same prefix and KEK) to check what the service stored."""

    def __init__(self, d: Deployment) -> None:
        self.prefix = d.prefix
        self.store = RedisStore.from_url(d.redis.url, KekRing(kek_from_env(d.kek)), prefix=d.prefix)
        self.raw = redis.Redis.from_url(d.redis.url)

    def close(self) -> None:
        self.store.close()
        self.raw.close()

    def send_key_names(self) -> set[bytes]:
        """Every RFC 5269 key record and key-hash index under the deployment's prefix."""
        names = set(self.raw.scan_iter(match=f"{self.prefix}:*:sendkey", count=1000))
        return names | set(self.raw.scan_iter(match=f"{self.prefix}:sendkey-hash:*", count=1000))

    def key_of(self, identity: mn.CgaIdentity) -> SendKeyRecord | None:
        by_hash = self.store.get_send_key_by_key_hash(cga.key_hash(identity.public_key))
        by_cga = self.store.get_send_key_by_cga(identity.address)
        assert by_hash == by_cga
        return by_hash


def rtsolpr(
    identity: mn.CgaIdentity,
    encryption_key: rsa.RSAPrivateKey,
    *,
    timestamp: float,
    destination: IP = PAR,
    identifier: int = 1,
    nonce: bytes | None = None,
) -> mn.SignedRtSolPr:
    return mn.build_signed_rtsolpr(
        identity,
        destination=destination,
        identifier=identifier,
        encryption_key=encryption_key,
        timestamp=timestamp,
        new_ap_lla=NEW_AP,
        source_lla=MN_LLA,
        nonce=nonce,
    )


def body_of(request: mn.SignedRtSolPr, **override: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "source": str(request.source),
        "destination": str(request.destination),
        "icmpv6": request.message.hex(),
    }
    body.update(override)
    return body


def post_send(d: Deployment, body: dict[str, Any], *, cred: Any = None) -> httpx.Response:
    with d.service.client(cred or d.ar1) as client:
        return client.post(SEND_PATH, json=body)


def sign_rtsolpr(
    identity: mn.CgaIdentity,
    options: list[icmpv6.NDOption],
    *,
    destination: IP = PAR,
    identifier: int = 1,
    key_hash: bytes | None = None,
    trailing: tuple[icmpv6.NDOption, ...] = (),
) -> bytes:
    """An RtSolPr with exactly ``options``, SEND-signed by ``identity`` (``key_hash`` overrides the option's),
    then ``trailing`` options after the RSA Signature option."""
    source = identity.address

    def encode(opts: list[icmpv6.NDOption]) -> bytes:
        return icmpv6.encode_icmpv6(icmpv6.RtSolPr(identifier, tuple(opts)), source=source, destination=destination)

    signature = rsa.send_sign(
        identity.private_key, sendwire.signature_input(encode(options), source=source, destination=destination)
    )
    signed = icmpv6.RSASignature(key_hash or cga.key_hash(identity.public_key), signature)
    return encode([*options, signed, *trailing])

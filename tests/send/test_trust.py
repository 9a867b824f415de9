"""The MN's trust in the router (certificate from the test CA made by openssl, router CGA, signature) and the
AR library's own checks."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from aaa_fmip import ar, mn
from aaa_fmip.crypto import cga, rsa
from aaa_fmip.crypto.certificates import CertificateNotValidNow, UntrustedCertificate, verify_router_certificate
from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.errors import BadCGA, DecodeError
from aaa_fmip.wire import icmpv6
from aaa_fmip.wire import send as sendwire
from tests.send._helpers import IP, MN_PREFIX, NCOA, PAR, rtsolpr
from tests.send._pki import OpensslCA

DAY = 86400.0


@pytest.fixture(scope="module")
def other_ca(send_dir: Path) -> OpensslCA:
    return OpensslCA.create(send_dir / "pki-other", "Other CA")


@pytest.fixture(scope="module")
def mn_request(quick_keys: list[rsa.RSAPrivateKey]) -> mn.SignedRtSolPr:
    identity = mn.generate_cga_identity(MN_PREFIX, sec=0, private_key=quick_keys[0])
    return rtsolpr(identity, quick_keys[1], timestamp=time.time(), identifier=3, nonce=bytes(range(6)))


def reply_for(request: mn.SignedRtSolPr, **override: object) -> ar.ServiceReply:
    """A service reply made locally (the service's part is tested elsewhere): HK 0x00.. encrypted to the MN."""
    encrypted = rsa.encrypt_handover_key(rsa.public_key_der(request.encryption_key), bytes(32))
    hkr = icmpv6.HandoverKeyReply(1, 600, encrypted)
    body = {
        "handover_key_reply_option": hkr.encode().hex(), "nonce": request.nonce.hex(), "identifier": 3,
        "lifetime": 600, "hk": bytes(32).hex(), "hk_expires_at": "2030-01-01T00:00:00Z", **override,
    }  # fmt: skip
    return ar.ServiceReply.from_json(body)


def received(request: mn.SignedRtSolPr) -> ar.ReceivedRtSolPr:
    return ar.ReceivedRtSolPr.from_packet(request.ipv6_packet())


# --- certificate path -------------------------------------------------------------------------------------------


def test_router_certificate_from_the_anchor(router: ar.RouterIdentity, ca: OpensslCA) -> None:
    now = time.time()
    assert verify_router_certificate(router.certificate, ca.certificate, now=now) == router.public_key  # DER + PEM


def test_certificate_rejections(
    router: ar.RouterIdentity, ca: OpensslCA, other_ca: OpensslCA, quick_keys: list[rsa.RSAPrivateKey]
) -> None:
    sub_ca = ca.issue(quick_keys[5], "sub-ca", ca=True)  # before reading the clock: notBefore is its issue time
    now = time.time()
    cases: list[tuple[bytes, bytes, float, type[UntrustedCertificate], str]] = [
        (router.certificate, other_ca.certificate, now, UntrustedCertificate, "not issued by"),
        (router.certificate, ca.certificate, now + 40 * DAY, CertificateNotValidNow, "valid from"),
        (router.certificate, ca.certificate, now - 2 * DAY, CertificateNotValidNow, "valid from"),
        (router.certificate, router.certificate, now, UntrustedCertificate, "not a CA"),
        (sub_ca, ca.certificate, now, UntrustedCertificate, "is a CA"),
        (b"not a certificate", ca.certificate, now, UntrustedCertificate, "PEM or DER"),
    ]
    for leaf, anchor, at, error, text in cases:
        with pytest.raises(error, match=text) as info:
            verify_router_certificate(leaf, anchor, now=at)
        assert info.value.reason in ("untrusted-certificate", "certificate-not-valid-now")


# --- the MN's check of the PrRtAdv ------------------------------------------------------------------------------


def test_mn_accepts_only_the_certified_router(
    mn_request: mn.SignedRtSolPr,
    router: ar.RouterIdentity,
    ca: OpensslCA,
    other_ca: OpensslCA,
    quick_keys: list[rsa.RSAPrivateKey],
) -> None:
    def accept(prrtadv: ar.SignedPrRtAdv, certificate: bytes) -> mn.SendHandoverKey:
        return mn.accept_prrtadv(
            mn_request, prrtadv.message, source=prrtadv.source, certificate=certificate, trust_anchor=ca.certificate,
            now=time.time(),
        )  # fmt: skip

    prrtadv = ar.build_prrtadv(received(mn_request), reply_for(mn_request), router, timestamp=time.time())
    key = accept(prrtadv, router.certificate)
    assert key.hk.reveal() == bytes(32) and key.lifetime == 600

    # Another router with its own valid certificate cannot pass off this PrRtAdv as its own.
    impostor = ar.router_identity(quick_keys[2], ca.issue(quick_keys[2], "impostor"), sec=0)
    with pytest.raises(mn.UntrustedRouter) as info:
        accept(prrtadv, impostor.certificate)
    assert info.value.reason == "untrusted-router"
    # A router certified by a CA the MN does not trust.
    stranger = ar.router_identity(quick_keys[3], other_ca.issue(quick_keys[3], "stranger"), sec=0)
    with pytest.raises(UntrustedCertificate):
        accept(ar.build_prrtadv(received(mn_request), reply_for(mn_request), stranger, timestamp=time.time()),
               stranger.certificate)  # fmt: skip


def hand_signed_prrtadv(request: mn.SignedRtSolPr, router: ar.RouterIdentity, source: IP) -> bytes:
    """A PrRtAdv signed by ``router`` but sent from ``source`` (not its CGA), which ar.build_prrtadv refuses."""
    reply = reply_for(request)
    opts: list[icmpv6.NDOption] = [
        reply.handover_key_reply,
        icmpv6.CGAOption(router.parameters),
        icmpv6.Timestamp.from_seconds(time.time()),
        icmpv6.Nonce(request.nonce),
    ]
    unsigned = icmpv6.encode_icmpv6(icmpv6.PrRtAdv(0, 3, tuple(opts)), source=source, destination=request.source)
    data = sendwire.signature_input(unsigned, source=source, destination=request.source)
    opts.append(icmpv6.RSASignature(cga.key_hash(router.public_key), rsa.send_sign(router.private_key, data)))
    return icmpv6.encode_icmpv6(icmpv6.PrRtAdv(0, 3, tuple(opts)), source=source, destination=request.source)


def test_mn_checks_the_router_cga(mn_request: mn.SignedRtSolPr, router: ar.RouterIdentity, ca: OpensslCA) -> None:
    elsewhere = IP(int(router.address) ^ 0x10)
    with pytest.raises(BadCGA):
        mn.accept_prrtadv(
            mn_request, hand_signed_prrtadv(mn_request, router, elsewhere), source=elsewhere,
            certificate=router.certificate, trust_anchor=ca.certificate, now=time.time(),
        )  # fmt: skip


# --- AR library ------------------------------------------------------------------------------------------------


def test_router_identity_checks(router: ar.RouterIdentity, ca: OpensslCA, quick_keys: list[rsa.RSAPrivateKey]) -> None:
    with pytest.raises(ValueError, match="certificate"):
        ar.router_identity(quick_keys[4], router.certificate, sec=0)
    with pytest.raises(BadCGA):
        dataclasses.replace(router, address=IP(int(router.address) ^ 0x10))
    assert router.private_key.__class__.__name__ not in repr(router) and "certificate=" not in repr(router)


def test_reply_must_answer_the_rtsolpr(mn_request: mn.SignedRtSolPr, router: ar.RouterIdentity) -> None:
    for override in ({"nonce": bytes(6).hex()}, {"identifier": 4}):
        with pytest.raises(ValueError, match="does not answer"):
            ar.build_prrtadv(received(mn_request), reply_for(mn_request, **override), router, timestamp=time.time())
    with pytest.raises(ValueError, match="not a response"):
        reply_for(mn_request, hk="zz")
    with pytest.raises(ValueError, match="exactly one"):
        reply_for(mn_request, handover_key_reply_option=icmpv6.Nonce(bytes(6)).encode().hex())
    reply = reply_for(mn_request)
    assert reply.handover_key().spi == 0 and bytes(32).hex() not in repr(reply)


def test_received_rtsolpr(mn_request: mn.SignedRtSolPr) -> None:
    got = received(mn_request)
    assert got.service_request() == {
        "source": str(mn_request.source), "destination": str(PAR), "icmpv6": mn_request.message.hex(),
    }  # fmt: skip
    fbu = mn.build_fbu_packet(
        mn.SendHandoverKey(SecretBytes(bytes(32)), 60, mn.Algorithm.HMAC_SHA1_96).handover_key(),
        sequence=1, lifetime_seconds=4, pcoa=mn_request.source, ncoa=NCOA, par=PAR,
    )  # fmt: skip
    with pytest.raises(DecodeError):
        ar.ReceivedRtSolPr.from_packet(fbu.ipv6_packet())

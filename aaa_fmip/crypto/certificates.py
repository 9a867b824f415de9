"""X.509 router certificates for the RFC 5269 SEND fallback: the minimal path check an MN makes.

RFC 3971 §6 lets a host accept a router's signature only if the router's public key is certified by one of
the host's trust anchors. This module checks a path of length one, which is what the project deploys: the
router (AR) certificate is issued directly by the configured trust-anchor certificate. Checked:

* both certificates parse (PEM or DER) and are valid at ``now`` (notBefore <= now <= notAfter);
* the anchor is a CA: basicConstraints cA=TRUE, and keyUsage (when present) allows keyCertSign;
* the router certificate's issuer is the anchor's subject and its signature verifies under the anchor's key
  (RSA PKCS#1 v1.5, RSA-PSS or ECDSA, as ``cryptography`` supports them);
* the router certificate is not itself a CA certificate, and its keyUsage (when present) allows
  digitalSignature; its public key is RSA (RFC 3971 §5.2 signs with RSA).

Not checked (documented in docs/send-fallback.md): longer paths and path discovery (RFC 3971 §6.3 CPS/CPA),
revocation (CRL, OCSP), the RFC 3779 IP address extension that restricts the prefixes a router may advertise
(RFC 3971 §6.3.1), name constraints and policies. Time comes from the caller; nothing here reads a clock.
"""

from __future__ import annotations

import datetime as dt
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa as _rsa

from aaa_fmip.errors import VerificationError

__all__ = [
    "CertificateNotValidNow",
    "UntrustedCertificate",
    "certificate_public_key",
    "verify_router_certificate",
]

_PEM_MARK: Final = b"-----BEGIN"


class UntrustedCertificate(VerificationError):
    """The router certificate does not chain to the trust anchor, or one of them is unusable."""

    reason = "untrusted-certificate"


class CertificateNotValidNow(UntrustedCertificate):
    """The router or anchor certificate is not yet valid or has expired at the time given."""

    reason = "certificate-not-valid-now"


def _load(data: bytes, what: str) -> x509.Certificate:
    raw = bytes(data)
    try:
        if raw.lstrip().startswith(_PEM_MARK):
            return x509.load_pem_x509_certificate(raw)
        return x509.load_der_x509_certificate(raw)
    except ValueError:
        raise UntrustedCertificate(f"the {what} is not an X.509 certificate in PEM or DER") from None


def _spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def certificate_public_key(certificate: bytes) -> bytes:
    """The DER SubjectPublicKeyInfo of a certificate (PEM or DER); raises :class:`UntrustedCertificate`."""
    return _spki(_load(certificate, "certificate"))


def _extension(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> x509.ExtensionType | None:
    try:
        return cert.extensions.get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return None
    except ValueError:  # a duplicated or malformed extension
        raise UntrustedCertificate("a certificate carries a malformed extension") from None


def _check_validity(cert: x509.Certificate, what: str, at: dt.datetime) -> None:
    if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
        raise CertificateNotValidNow(
            f"the {what} is valid from {cert.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ} "
            f"to {cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}, not at {at:%Y-%m-%dT%H:%M:%SZ}"
        )


def verify_router_certificate(certificate: bytes, trust_anchor: bytes, *, now: float) -> bytes:
    """Check that ``certificate`` (the router's) is issued by ``trust_anchor`` and valid at ``now`` (Unix
    seconds), as listed in the module docstring; return its RSA public key as DER SubjectPublicKeyInfo.

    Raises :class:`UntrustedCertificate` or :class:`CertificateNotValidNow`.
    """
    leaf = _load(certificate, "router certificate")
    anchor = _load(trust_anchor, "trust anchor")
    at = dt.datetime.fromtimestamp(now, tz=dt.UTC)
    _check_validity(anchor, "trust anchor", at)
    _check_validity(leaf, "router certificate", at)

    constraints = _extension(anchor, x509.oid.ExtensionOID.BASIC_CONSTRAINTS)
    if not isinstance(constraints, x509.BasicConstraints) or not constraints.ca:
        raise UntrustedCertificate("the trust anchor is not a CA certificate (basicConstraints cA)")
    usage = _extension(anchor, x509.oid.ExtensionOID.KEY_USAGE)
    if isinstance(usage, x509.KeyUsage) and not usage.key_cert_sign:
        raise UntrustedCertificate("the trust anchor's keyUsage does not allow keyCertSign")

    try:
        leaf.verify_directly_issued_by(anchor)
    except ValueError:
        raise UntrustedCertificate("the router certificate was not issued by the trust anchor") from None
    except (InvalidSignature, TypeError, UnsupportedAlgorithm):
        raise UntrustedCertificate("the router certificate's signature does not verify under the anchor") from None

    leaf_constraints = _extension(leaf, x509.oid.ExtensionOID.BASIC_CONSTRAINTS)
    if isinstance(leaf_constraints, x509.BasicConstraints) and leaf_constraints.ca:
        raise UntrustedCertificate("the router certificate is a CA certificate")
    leaf_usage = _extension(leaf, x509.oid.ExtensionOID.KEY_USAGE)
    if isinstance(leaf_usage, x509.KeyUsage) and not leaf_usage.digital_signature:
        raise UntrustedCertificate("the router certificate's keyUsage does not allow digitalSignature")
    if not isinstance(leaf.public_key(), _rsa.RSAPublicKey):
        raise UntrustedCertificate("the router certificate's key is not an RSA key (RFC 3971 §5.2)")
    return _spki(leaf)

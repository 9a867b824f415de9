"""The FBU/FBack authenticator of the Binding Authorization Data for FMIPv6 option (RFC 5568 §6.4.5).

RFC 5568 §6.4.5 refers to RFC 3775 §6.2.7 for the computation; architecture.md §3 fixes the inputs::

    Authenticator = First(96, HMAC-SHA1(HK, CoA | PAR address | MH data))        (AT 1, the RFC 5568 default)
    Authenticator = First(128, HMAC-SHA-256(HK, CoA | PAR address | MH data))    (AT 2, option length 16)

CoA is the Alternate Care-of Address option if present, else the IPv6 source; MH data is the whole Mobility
Header with the checksum zeroed and the authenticator octets left out (``aaa_fmip.wire.mh.badf_input``).
"""

from __future__ import annotations

import ipaddress
from enum import IntEnum
from typing import Final

from cryptography.hazmat.primitives import hashes, hmac

from aaa_fmip.crypto.secrets import SecretBytes, constant_time_equal
from aaa_fmip.errors import BadAuthenticator


class Algorithm(IntEnum):
    """AT code points (RFC 5269 options 27/28 leave them to "[FMIP]", which assigns none; architecture.md §3)."""

    HMAC_SHA1_96 = 1
    HMAC_SHA256_128 = 2

    @property
    def authenticator_length(self) -> int:
        return AUTHENTICATOR_LENGTHS[self]

    @property
    def label(self) -> str:
        """The name used in JSON and logs, e.g. ``HMAC-SHA1-96``."""
        return _LABELS[self]


AUTHENTICATOR_LENGTHS: Final[dict[Algorithm, int]] = {Algorithm.HMAC_SHA1_96: 12, Algorithm.HMAC_SHA256_128: 16}
_BY_LENGTH: Final = {n: alg for alg, n in AUTHENTICATOR_LENGTHS.items()}
_LABELS: Final = {Algorithm.HMAC_SHA1_96: "HMAC-SHA1-96", Algorithm.HMAC_SHA256_128: "HMAC-SHA-256-128"}


def _sha1() -> hashes.HashAlgorithm:
    return hashes.SHA1()  # noqa: S303 - RFC 5568 §6.4.5 mandates HMAC-SHA1-96 (HMAC does not need collision resistance)


class UnsupportedAuthenticatorLength(BadAuthenticator):
    """The BADF option carries an authenticator of a length no supported algorithm produces."""

    reason = "bad-authenticator-length"


def algorithm_for_length(length: int) -> Algorithm:
    """The algorithm a BADF authenticator of ``length`` octets was made with (12 → SHA-1, 16 → SHA-256)."""
    try:
        return _BY_LENGTH[length]
    except KeyError:
        raise UnsupportedAuthenticatorLength(
            f"BADF authenticator of {length} octets: only 12 (HMAC-SHA1-96) and 16 (HMAC-SHA-256-128) are accepted"
        ) from None


def compute_authenticator(
    key: SecretBytes | bytes,
    care_of: ipaddress.IPv6Address,
    par: ipaddress.IPv6Address,
    mh_data: bytes,
    algorithm: Algorithm = Algorithm.HMAC_SHA1_96,
) -> bytes:
    """``First(n, HMAC(key, care_of | par | mh_data))`` for the algorithm's n (RFC 5568 §6.4.5)."""
    if not isinstance(care_of, ipaddress.IPv6Address) or not isinstance(par, ipaddress.IPv6Address):
        raise ValueError("care-of and PAR addresses must be IPv6Address values")
    return truncated_hmac(key, care_of.packed + par.packed + bytes(mh_data), algorithm)


def truncated_hmac(key: SecretBytes | bytes, message: bytes, algorithm: Algorithm) -> bytes:
    """The MAC primitive of an algorithm: HMAC-SHA1 truncated to 96 bits or HMAC-SHA-256 truncated to 128 bits
    (truncation as in RFC 2104 §5, the form of the RFC 2202 / RFC 4231 truncation test cases)."""
    k = key.reveal() if isinstance(key, SecretBytes) else bytes(key)
    if not k:
        raise ValueError("handover key must not be empty")
    alg = Algorithm(algorithm)
    mac = hmac.HMAC(k, _sha1() if alg is Algorithm.HMAC_SHA1_96 else hashes.SHA256())
    mac.update(bytes(message))
    return mac.finalize()[: alg.authenticator_length]


def authenticator_matches(key: SecretBytes | bytes, message: bytes, authenticator: bytes, algorithm: Algorithm) -> bool:
    """Whether ``authenticator`` is the MAC of ``message`` (``CoA | PAR | MH data``, built once by the caller)
    under ``key``: the non-raising check for trying several candidate keys; the caller has taken ``algorithm``
    from the authenticator's length (:func:`algorithm_for_length`), so an unsupported length is reported once,
    as itself. The comparison is constant-time."""
    return constant_time_equal(truncated_hmac(key, message, algorithm), bytes(authenticator))


def verify_authenticator(
    key: SecretBytes | bytes,
    care_of: ipaddress.IPv6Address,
    par: ipaddress.IPv6Address,
    mh_data: bytes,
    authenticator: bytes,
) -> Algorithm:
    """Check a BADF authenticator; the algorithm follows from its length. Returns it, or raises
    :class:`~aaa_fmip.errors.BadAuthenticator` (:class:`UnsupportedAuthenticatorLength` for a length that is
    neither 12 nor 16). The comparison is constant-time."""
    alg = algorithm_for_length(len(authenticator))
    expected = compute_authenticator(key, care_of, par, mh_data, alg)
    if not constant_time_equal(expected, bytes(authenticator)):
        raise BadAuthenticator("BADF authenticator does not match")
    return alg

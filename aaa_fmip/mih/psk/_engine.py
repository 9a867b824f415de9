"""The DTLS/TLS-PSK engine: mbed TLS driven without sockets, the constants of the wire, the PSK-identity peek
(why each hand-written piece exists: the package's docstring)."""

from __future__ import annotations

import contextlib
import logging
import struct
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Final, Literal

from mbedtls import tls
from mbedtls._tls import MbedTLSBuffer, RaggedEOF
from mbedtls.exceptions import TLSError

from aaa_fmip.errors import AaaFmipError, DecodeError

log = logging.getLogger("aaa_fmip.mih.psk")

MIH_PORT: Final = 4551  # RFC 5677 §6.1 ("ieee-mih", UDP and TCP)
# RFC 5487 §3.1 TLS_PSK_WITH_AES_128_GCM_SHA256 (OpenSSL: PSK-AES128-GCM-SHA256); plain PSK, no (EC)DHE: the key
# is per session and per MoS already. RFC 4279 §2 TLS_PSK_WITH_AES_128_CBC_SHA kept for older peers.
CIPHERS: Final = ("TLS-PSK-WITH-AES-128-GCM-SHA256", "TLS-PSK-WITH-AES-128-CBC-SHA256", "TLS-PSK-WITH-AES-128-CBC-SHA")
PSK_LENGTH: Final = 32  # mbed TLS's MBEDTLS_PSK_MAX_LEN; architecture.md §2
MAX_IDENTITY_LENGTH: Final = 128  # ours are 16 octets; RFC 4279 §5.3 asks for at least 128 supported
HANDSHAKE_TIMEOUT: Final = 10.0  # seconds for a whole handshake
DTLS_INITIAL_TIMER: Final = 1.0  # RFC 6347 §4.2.4.1
DTLS_MAX_TIMER: Final = 60.0  # RFC 6347 §4.2.4.1
MAX_DTLS_PEERS: Final = 1024  # DTLS peers past the cookie exchange at once; more are dropped (bounded state)
MAX_HANDSHAKE_BYTES: Final = 16384  # what a client may send before its ClientKeyExchange (a ClientHello or two)
_CHUNK: Final = 16384
_ERR_PEER_CLOSE_NOTIFY: Final = 0x7880  # MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY
_MAX_STEPS: Final = 64  # do_handshake calls per step; each call advances at least one state or stops

# RFC 5246 §6.2.1 / §7.4, RFC 6347 §4.1 / §4.2.2
_CT_CHANGE_CIPHER_SPEC: Final = 20
_CT_HANDSHAKE: Final = 22
_HS_CLIENT_KEY_EXCHANGE: Final = 16
_TLS_RECORD_HEADER: Final = 5
_DTLS_RECORD_HEADER: Final = 13
_TLS_HS_HEADER: Final = 4
_DTLS_HS_HEADER: Final = 12

KeySource = Callable[[str], Awaitable[bytes | None]]
"""Gives the PSK of an identity, or None when there is none (unknown or revoked session, not this MoS's)."""


class ChannelError(AaaFmipError):
    """A DTLS/TLS channel could not be set up or broke (handshake failure, timeout, peer gone)."""


# ------------------------------------------------------------------------------------------ pure helpers


def peek_psk_identity(data: bytes, *, datagram: bool) -> str | None:
    """The ``psk_identity`` of the first ClientKeyExchange in ``data`` (plaintext records), or None if there is
    none yet.

    ``data``: for TLS the bytes received so far on the stream (records may be incomplete at the end); for DTLS
    one datagram. Only records before ChangeCipherSpec (TLS) or of epoch 0 (DTLS) are read: later ones are
    encrypted. Raises DecodeError for records or messages that cannot be TLS (length overruns, a non-ASCII or
    over-long identity); mbed TLS would refuse them too.
    """
    header = _DTLS_RECORD_HEADER if datagram else _TLS_RECORD_HEADER
    offset = 0
    while len(data) - offset >= header:
        content_type = data[offset]
        (length,) = struct.unpack_from("!H", data, offset + header - 2)
        body_start = offset + header
        if len(data) < body_start + length:
            if datagram:
                raise DecodeError("record longer than the datagram", field="dtls.record", offset=offset)
            return None  # the rest of this record has not arrived yet
        if datagram:
            (epoch,) = struct.unpack_from("!H", data, offset + 3)
            if epoch != 0:
                return None
        if content_type == _CT_CHANGE_CIPHER_SPEC:
            return None
        if content_type == _CT_HANDSHAKE:
            found = _identity_in_handshake(data[body_start : body_start + length], body_start, datagram=datagram)
            if found is not None:
                return found
        offset = body_start + length
    return None


def _identity_in_handshake(body: bytes, base: int, *, datagram: bool) -> str | None:
    header = _DTLS_HS_HEADER if datagram else _TLS_HS_HEADER
    offset = 0
    while len(body) - offset >= header:
        msg_type = body[offset]
        if datagram:
            # RFC 6347 §4.2.2: type, length(3), message_seq(2), fragment_offset(3), fragment_length(3)
            frag_offset = int.from_bytes(body[offset + 6 : offset + 9], "big")
            length = int.from_bytes(body[offset + 9 : offset + 12], "big")
        else:
            frag_offset = 0
            length = int.from_bytes(body[offset + 1 : offset + 4], "big")
        start = offset + header
        if len(body) < start + length:
            return None  # a handshake message continued in the next record: not a PSK ClientKeyExchange
        if msg_type == _HS_CLIENT_KEY_EXCHANGE and frag_offset == 0:
            return _psk_identity(body[start : start + length], base + start)
        offset = start + length
    return None


def _psk_identity(message: bytes, at: int) -> str:
    # RFC 4279 §2: struct { opaque psk_identity<0..2^16-1>; } ClientKeyExchange (the PSK key exchange)
    if len(message) < 2:
        raise DecodeError("ClientKeyExchange too short", field="psk_identity", offset=at)
    (length,) = struct.unpack_from("!H", message)
    if length > MAX_IDENTITY_LENGTH or len(message) < 2 + length:
        raise DecodeError(f"identity length {length} is not 0..{MAX_IDENTITY_LENGTH}", field="psk_identity", offset=at)
    raw = message[2 : 2 + length]
    if not all(0x21 <= c <= 0x7E for c in raw):
        raise DecodeError("identity is not printable ASCII", field="psk_identity", offset=at + 2)
    return raw.decode("ascii")


# ---------------------------------------------------------------------------------------- key cache


class _KeyCache(Mapping[str, bytes]):
    """mbed TLS's ``pre_shared_key_store``: the keys of handshakes in progress only, held by reference count.

    mbed TLS looks an identity up when the ClientKeyExchange is processed; the adapter puts the key here just
    before, and takes it out when that handshake ends (the session keys are derived by then).
    """

    def __init__(self) -> None:
        self._keys: dict[str, tuple[bytes, int]] = {}

    def __getitem__(self, identity: str) -> bytes:
        return self._keys[identity][0]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"_KeyCache({len(self._keys)} held)"

    def hold(self, identity: str, key: bytes) -> None:
        _, count = self._keys.get(identity, (key, 0))
        self._keys[identity] = (key, count + 1)

    def release(self, identity: str) -> None:
        entry = self._keys.get(identity)
        if entry is None:
            return
        if entry[1] <= 1:
            del self._keys[identity]
        else:
            self._keys[identity] = (entry[0], entry[1] - 1)

    def drop(self, identity: str) -> None:
        self._keys.pop(identity, None)


# ----------------------------------------------------------------------------------------- the engine


Step = Literal["done", "want-read", "hello-verify"]


class _Engine:
    """One mbed TLS connection without IO: bytes in (:meth:`feed`), bytes out (:meth:`take_output`)."""

    def __init__(self, buffer: MbedTLSBuffer) -> None:
        self._buffer = buffer

    @property
    def established(self) -> bool:
        return self._buffer._handshake_state.name == "HANDSHAKE_OVER"

    def feed(self, data: bytes) -> None:
        self._buffer.receive_from_network(data)

    def take_output(self) -> bytes:
        out = self._buffer.peek_outgoing(1 << 20)
        if out:
            self._buffer.consume_outgoing(len(out))
        return bytes(out)

    def handshake(self) -> Step:
        """Advance the handshake as far as the input allows. Raises ChannelError when mbed TLS gives up."""
        for _ in range(_MAX_STEPS):
            if self.established:
                return "done"
            try:
                self._buffer.do_handshake()
            except tls.WantWriteError:
                continue  # output waits in the buffer; take_output collects it
            except tls.WantReadError:
                return "want-read"
            except tls.HelloVerifyRequest:
                return "hello-verify"
            except TLSError as exc:
                raise ChannelError(f"handshake failed: {_tls_error(exc)}") from None
        raise ChannelError("handshake made no progress")

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = self._buffer.write(bytes(view))
            except tls.WantWriteError:
                continue
            except TLSError as exc:
                raise ChannelError(f"cannot send: {_tls_error(exc)}") from None
            view = view[written:]

    def read(self) -> bytes | None:
        """Decrypted application data, b"" at the peer's close_notify, None when more input is needed."""
        try:
            data = bytes(self._buffer.read(_CHUNK))
        except (tls.WantReadError, tls.WantWriteError):
            return None
        except RaggedEOF:
            return b""
        except TLSError as exc:
            if getattr(exc, "err", None) == _ERR_PEER_CLOSE_NOTIFY:
                return b""
            raise ChannelError(f"cannot receive: {_tls_error(exc)}") from None
        return data or None  # nothing decrypted yet (a record still incomplete, or a non-data record)

    def shutdown(self) -> bytes:
        with contextlib.suppress(TLSError):
            self._buffer.shutdown()
        return self.take_output()

    @property
    def cipher(self) -> str:
        return str(self._buffer.cipher())


def _tls_error(exc: Exception) -> str:
    # mbed TLS error texts name the failing step and code, never key octets.
    text = str(exc) or type(exc).__name__
    return text[:200]


def _configuration(
    *, datagram: bool, psk: tuple[str, bytes] | None = None, store: Mapping[str, bytes] | None = None
) -> tls.TLSConfiguration | tls.DTLSConfiguration:
    if datagram:
        dv = tls.DTLSVersion.DTLSv1_2  # RFC 6347
        return tls.DTLSConfiguration(
            ciphers=CIPHERS,
            lowest_supported_version=dv,
            highest_supported_version=dv,
            validate_certificates=False,
            pre_shared_key=psk,
            pre_shared_key_store=store if store is not None else {},
        )
    v = tls.TLSVersion.TLSv1_2  # RFC 5246
    return tls.TLSConfiguration(
        ciphers=CIPHERS,
        lowest_supported_version=v,
        highest_supported_version=v,
        validate_certificates=False,
        pre_shared_key=psk,
        pre_shared_key_store=store if store is not None else {},
    )


def _check_psk(identity: str, psk: bytes) -> None:
    if not 1 <= len(identity) <= MAX_IDENTITY_LENGTH or not identity.isascii():
        raise ValueError(f"PSK identity must be 1..{MAX_IDENTITY_LENGTH} ASCII characters")
    if not 1 <= len(psk) <= PSK_LENGTH:
        raise ValueError(f"PSK must be 1..{PSK_LENGTH} octets, got {len(psk)}")

"""MIH transport security: DTLS 1.2-PSK on UDP and TLS 1.2-PSK on TCP (architecture.md §10), keyed by the MIH PSK.

RFC 5677 carries MIH over UDP/TCP 4551 and leaves transport security open (§8). Here the node and the Mobility
Server (MoS) run TLS 1.2 (RFC 5246) or DTLS 1.2 (RFC 6347) with a pre-shared key (RFC 4279), the key being
:func:`aaa_fmip.keys.derive_mih_psk` of the node's session and the MoS's MIHF-ID, the PSK identity the session's
HMK-Name in hex. The node derives its key itself; the MoS learns it per identity from a :data:`KeySource` (the
key service's ``POST /v1/mih/psk``, :class:`RestKeySource`).

The TLS engine is mbed TLS through python-mbedtls, the one Python binding with PSK and DTLS; it is driven
without sockets (its ``MbedTLSBuffer``) by :class:`_Engine`, and thin asyncio adapters move the bytes. What is
written by hand, and why:

* :func:`peek_psk_identity` reads the ``psk_identity`` out of the plaintext ClientKeyExchange (RFC 4279 §2)
  before the bytes reach mbed TLS, because mbed TLS asks for the key from inside the handshake, synchronously,
  and the MoS's key comes from a network call: the adapter awaits the key first, then lets mbed TLS continue.
* The DTLS handshake's wait (RFC 6347 §4.2.4: 1 s initial timer, doubled on each expiry) in the client and the
  server adapters: when it expires they step mbed TLS again, which resends its last flight itself.

Channels are byte channels: TLS gives a byte stream, DTLS one datagram per ``send``. Every open channel is in a
:class:`ChannelRegistry` under its PSK identity, so revoking a session closes its channels
(:meth:`ChannelRegistry.close_identity`). Key octets never appear in a log line, an exception or a repr.
"""

from __future__ import annotations

from aaa_fmip.mih.psk._engine import (
    CIPHERS,
    DTLS_INITIAL_TIMER,
    DTLS_MAX_TIMER,
    HANDSHAKE_TIMEOUT,
    MAX_DTLS_PEERS,
    MAX_HANDSHAKE_BYTES,
    MAX_IDENTITY_LENGTH,
    MIH_PORT,
    PSK_LENGTH,
    ChannelError,
    KeySource,
    peek_psk_identity,
)
from aaa_fmip.mih.psk.channels import (
    Channel,
    ChannelRegistry,
    DtlsChannel,
    Handler,
    TlsChannel,
    connect_dtls,
    connect_tls,
)
from aaa_fmip.mih.psk.server import PskServer, RestKeySource

__all__ = [
    "CIPHERS",
    "DTLS_INITIAL_TIMER",
    "DTLS_MAX_TIMER",
    "HANDSHAKE_TIMEOUT",
    "MAX_DTLS_PEERS",
    "MAX_HANDSHAKE_BYTES",
    "MAX_IDENTITY_LENGTH",
    "MIH_PORT",
    "PSK_LENGTH",
    "Channel",
    "ChannelError",
    "ChannelRegistry",
    "DtlsChannel",
    "Handler",
    "KeySource",
    "PskServer",
    "RestKeySource",
    "TlsChannel",
    "connect_dtls",
    "connect_tls",
    "peek_psk_identity",
]

"""MN-side library: the mobile node's half of the key hierarchy and the messages it authenticates.

An MN that authenticated to the network with EAP holds the EMSK and the EAP Session-Id; it derives the same
HMK, SPI and per-AR handover keys as the key service (architecture.md §2, docs/key-hierarchy.md) and builds
Fast Binding Updates whose BADF option carries that SPI and authenticator (RFC 5568 §6.2.2, §6.4.5)::

    master = mn.derive_master_key(emsk=emsk, eap_session_id=session_id)
    hk = mn.derive_handover_key(master, par)
    packet = mn.build_fbu_packet(hk, sequence=1, lifetime_seconds=60, pcoa=pcoa, ncoa=ncoa, par=par)
    send(packet.ipv6_packet())          # or packet.mh with packet.source / destination / home_address
    psk = mn.derive_mih_psk(master, "mos1.example.net")   # DTLS/TLS-PSK with that MoS (aaa_fmip.mih.psk)

The MIH session with that MoS is opened by :func:`aaa_fmip.mih.secure.open_session` (``master`` and the MoS's
MIHF-ID in; the key derived here, never fetched), which does the IO this module does not::

    session = await open_session(master, "mos1.example.net", host, 4551, transport="udp", node_mihf_id=b"mn1@...")
    answer = await session.get_information(mih.LinkAddress.mac(current_poa))

MNs whose EAP method exports no EMSK use the RFC 5269 SEND fallback (second half of this module): a signed
RtSolPr carrying a Handover Key Request, and the decryption of the Handover Key Reply; the key obtained there
is used with SPI 0::

    identity = mn.generate_cga_identity(pcoa_prefix)            # CGA key pair and the CGA (the PCoA)
    encryption_key = rsa.generate_private_key()                 # a separate handover-key-encryption key
    request = mn.build_signed_rtsolpr(identity, destination=par, identifier=1,
                                      encryption_key=encryption_key, timestamp=now)
    send(request.ipv6_packet()); prrtadv, router = receive()
    key = mn.accept_prrtadv(request, prrtadv, source=router, certificate=router_cert,
                            trust_anchor=anchor, now=now)       # certificate path, router CGA, signature
    packet = mn.build_fbu_packet(key.handover_key(), sequence=1, lifetime_seconds=60, pcoa=identity.address,
                                 ncoa=ncoa, par=par, home_address_option=True)

No IO and no clock: the time is passed in. Nonces, fresh RSA keys and CGA modifiers come from the operating
system's generator unless the caller gives them.
"""

from __future__ import annotations

from aaa_fmip.crypto.badf import Algorithm
from aaa_fmip.keys import HandoverKey, HandoverMasterKey, MihPsk
from aaa_fmip.mn.fbu import (
    DEFAULT_HOP_LIMIT,
    DEFAULT_LIFETIME_UNIT,
    FbuPacket,
    build_fbu,
    build_fbu_packet,
    derive_handover_key,
    derive_master_key,
    derive_mih_psk,
    fbu_lifetime_units,
    verify_fback,
)
from aaa_fmip.mn.send import (
    CgaIdentity,
    NoHandoverKeyReply,
    NonceMismatch,
    SendHandoverKey,
    SignedRtSolPr,
    UntrustedRouter,
    accept_prrtadv,
    build_signed_rtsolpr,
    decrypt_handover_key_reply,
    generate_cga_identity,
    verify_router,
)

__all__ = [
    "DEFAULT_HOP_LIMIT",
    "DEFAULT_LIFETIME_UNIT",
    "Algorithm",
    "CgaIdentity",
    "FbuPacket",
    "HandoverKey",
    "HandoverMasterKey",
    "MihPsk",
    "NoHandoverKeyReply",
    "NonceMismatch",
    "SendHandoverKey",
    "SignedRtSolPr",
    "UntrustedRouter",
    "accept_prrtadv",
    "build_fbu",
    "build_fbu_packet",
    "build_signed_rtsolpr",
    "decrypt_handover_key_reply",
    "derive_handover_key",
    "derive_master_key",
    "derive_mih_psk",
    "fbu_lifetime_units",
    "generate_cga_identity",
    "verify_fback",
    "verify_router",
]

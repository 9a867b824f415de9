"""MIH services over IP (RFC 5677), their discovery (RFC 5678, RFC 5679) and their security.

* :mod:`aaa_fmip.mih.transport` — sans-IO UDP/TCP cores (ACKs, retransmission, duplicates) and the asyncio
  driver; the plug-in point for DTLS/TLS-PSK channels.
* :mod:`aaa_fmip.mih.information` — the MIH Information Server (Capability_Discover, Register/DeRegister,
  Get_Information answering with a point of attachment's neighbours).
* :mod:`aaa_fmip.mih.neighbours` — the neighbour table, one source of truth for the Information Server and the
  FMIPv6 access-router agent's PrRtAdv.
* :mod:`aaa_fmip.mih.discovery`, :mod:`aaa_fmip.mih.publish` — finding a MoS by DHCP and DNS, and publishing one.
* :mod:`aaa_fmip.mih.psk` — DTLS 1.2-PSK and TLS 1.2-PSK channels keyed from the AAA session;
  :mod:`aaa_fmip.mih.psk_grant` — the use case that hands a MoS its key.
"""

"""MIH services over IP (RFC 5677): transport, the Information Server and its neighbour table.

* :mod:`aaa_fmip.mih.transport` — sans-IO UDP/TCP cores (ACKs, retransmission, duplicates) and the asyncio
  driver; the plug-in point for DTLS/TLS-PSK channels.
* :mod:`aaa_fmip.mih.information` — the MIH Information Server (Capability_Discover, Register/DeRegister,
  Get_Information answering with a point of attachment's neighbours).
* :mod:`aaa_fmip.mih.neighbours` — the neighbour table, one source of truth for the Information Server and the
  FMIPv6 access-router agent's PrRtAdv.
"""

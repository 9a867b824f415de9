"""aaa-fmip: AAA-keyed security for Mobile IPv6 fast handovers (FMIPv6, RFC 5568)."""

__version__ = "0.1.0"

"""``aaa-fmip keys``: operator tools for the key hierarchy (architecture.md §2, docs/key-hierarchy.md)."""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from typing import Any, TextIO

from aaa_fmip import keys

_DERIVE_DESCRIPTION = """\
Derive the handover key (HK) that a mobile node and one access router share, exactly as the key service and
the MN-side library do (RFC 5295 KDF, labels in docs/key-hierarchy.md). Give either the home-domain inputs
(--emsk and --session-id) or the visited-domain inputs (--dsrk and --emsk-name), and the AR address the MN
sends its Fast Binding Updates to.

Prints one JSON object: {"hmk_name": HEX, "spi": INT, "hk": HEX, "hk_name": HEX}. The HK is key material:
print it only where an operator needs it (interoperability checks, lab set-ups).

A secret given as "-" is read as hex from standard input (one line per "-", in the order emsk/dsrk first),
which keeps it out of the process list and the shell history."""

_DERIVE_EPILOG = """\
examples:
  aaa-fmip keys derive --emsk 000102...3f --session-id 0d4142... --ar-address 2001:db8:1::1
  aaa-fmip keys derive --dsrk - --emsk-name 0123456789abcdef --ar-address 2001:db8:1::1 < dsrk.hex

exit status: 0 on success, 2 on invalid input (bad hex, short EMSK or DSRK, bad address)."""


class _InputError(Exception):
    """Invalid operator input; the message names the option and never contains secret octets."""


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "keys",
        help="derive and inspect handover keys",
        description="Operator tools for the FMIPv6 handover key hierarchy (EMSK -> HMK -> per-AR HK).",
    )
    keys_sub = parser.add_subparsers(title="keys commands", metavar="KEYS_COMMAND")

    derive = keys_sub.add_parser(
        "derive",
        help="derive HMK-Name, SPI, HK and HK-Name for one access router",
        description=_DERIVE_DESCRIPTION,
        epilog=_DERIVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    home = derive.add_argument_group("home domain (EAP server's EMSK)")
    home.add_argument("--emsk", metavar="HEX", help='the EAP EMSK, at least 64 octets ("-": read from stdin)')
    home.add_argument("--session-id", metavar="HEX", help="the EAP Session-Id (RFC 5247: Type-Code | Method-Id)")
    visited = derive.add_argument_group("visited domain (RFC 5295 §4 DSRK)")
    visited.add_argument("--dsrk", metavar="HEX", help='the domain-specific root key, at least 64 octets ("-": stdin)')
    visited.add_argument("--emsk-name", metavar="HEX", help="the EMSKName, 8 octets (RFC 5295 §3.2)")
    derive.add_argument(
        "--ar-address",
        metavar="ADDR",
        required=True,
        help="the access router's IPv6 address the MN sends its FBUs to (the AR-ID)",
    )
    derive.set_defaults(func=_derive)

    def _help(_args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(func=_help)


def _derive(args: argparse.Namespace) -> int:
    return derive_command(args, stdin=sys.stdin, stdout=sys.stdout, stderr=sys.stderr)


def derive_command(args: argparse.Namespace, *, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    try:
        result = _derive_json(args, stdin)
    except _InputError as exc:
        print(f"aaa-fmip keys derive: error: {exc}", file=stderr)
        return 2
    print(json.dumps(result), file=stdout)
    return 0


def _derive_json(args: argparse.Namespace, stdin: TextIO) -> dict[str, str | int]:
    home = args.emsk is not None or args.session_id is not None
    visited = args.dsrk is not None or args.emsk_name is not None
    if home == visited:
        raise _InputError("give either --emsk and --session-id, or --dsrk and --emsk-name")
    try:
        ar = ipaddress.IPv6Address(args.ar_address.strip())
    except ValueError:
        raise _InputError(f"--ar-address: {args.ar_address!r} is not an IPv6 address") from None
    try:
        if home:
            if args.emsk is None or args.session_id is None:
                raise _InputError("--emsk and --session-id must be given together")
            master = keys.derive_hmk(_hex("--emsk", args.emsk, stdin), _hex("--session-id", args.session_id, stdin))
        else:
            if args.dsrk is None or args.emsk_name is None:
                raise _InputError("--dsrk and --emsk-name must be given together")
            master = keys.derive_hmk_visited(
                _hex("--dsrk", args.dsrk, stdin), _hex("--emsk-name", args.emsk_name, stdin)
            )
        hk = keys.derive_hk(master.hmk, master.hmk_name, ar, master.spi)
    except ValueError as exc:  # keys.* messages name the input and never contain key octets
        raise _InputError(str(exc)) from None
    return {"hmk_name": master.hmk_name.hex(), "spi": master.spi, "hk": hk.hk.hex(), "hk_name": hk.hk_name.hex()}


def _hex(option: str, value: str, stdin: TextIO) -> bytes:
    if value == "-":
        value = stdin.readline()
        if not value:
            raise _InputError(f"{option}: nothing to read on standard input")
    text = "".join(value.split()).replace(":", "")
    if text[:2].lower() == "0x":
        text = text[2:]
    if not text:
        raise _InputError(f"{option}: empty value")
    try:
        return bytes.fromhex(text)
    except ValueError:
        # Do not echo the value: it may be a secret.
        raise _InputError(f"{option}: not a hexadecimal string ({len(text)} characters)") from None

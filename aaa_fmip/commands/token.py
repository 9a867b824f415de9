"""``aaa-fmip token new``: a fresh bearer token and the configuration lines that admit it.

The token itself is printed once and stored nowhere; the configuration holds only its SHA-256.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import secrets
import sys
from typing import Any, Final

from aaa_fmip.config import token_sha256
from aaa_fmip.errors import ConfigError

TOKEN_OCTETS: Final = 32  # 256 bits of randomness, base64url without padding (43 characters)
ROLES: Final = ("ar", "aaa", "auditor", "admin", "mos")


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("token", help="make bearer tokens for callers of the REST API")
    actions = parser.add_subparsers(title="actions", metavar="ACTION")
    new = actions.add_parser(
        "new",
        help="print a new random token and the TOML lines to paste into the configuration",
        description=(
            "Print a new random bearer token and the [[access_routers]] or [[clients]] entry (with the token's "
            "SHA-256, never the token) to add to the configuration file. Give the token to the caller; it is "
            "not shown again."
        ),
    )
    new.add_argument(
        "--role",
        required=True,
        choices=ROLES,
        help="ar: an access router; aaa, auditor, admin: clients; mos: a Mobility Server",
    )
    new.add_argument("--name", required=True, help="the caller's name (unique; appears in logs and the audit trail)")
    new.add_argument(
        "--address",
        action="append",
        default=[],
        metavar="IPV6",
        help="role ar: an IPv6 address (AR-ID) of the router; repeat for several",
    )
    new.add_argument(
        "--mihf-id",
        action="append",
        default=[],
        metavar="ID",
        help="role mos: an MIHF-ID (FQDN or NAI) of the Mobility Server; repeat for several",
    )
    new.add_argument("--diameter-identity", metavar="FQDN", help="role ar: Origin-Host of its Diameter peer")
    new.add_argument("--nas-identifier", metavar="ID", help="role ar: NAS-Identifier it sends as a RADIUS NAS")
    new.add_argument(
        "--nas-address",
        metavar="IP",
        help="role ar: source address of its RADIUS requests (preferred over --nas-identifier: docs/freeradius.md)",
    )
    new.add_argument("--json", action="store_true", help="print one JSON object (token, token_sha256, toml)")
    new.set_defaults(func=run_new)

    def _help(_args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(func=_help)


def toml_string(value: str) -> str:
    """A TOML basic string (JSON string escapes are valid TOML escapes; non-ASCII stays literal)."""
    return json.dumps(value, ensure_ascii=False)


def config_entry(
    role: str,
    name: str,
    digest_hex: str,
    addresses: list[ipaddress.IPv6Address],
    *,
    diameter_identity: str | None = None,
    nas_identifier: str | None = None,
    nas_address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None,
    mihf_ids: list[str] | None = None,
) -> str:
    if role == "ar":
        lines = [
            "[[access_routers]]",
            f"name = {toml_string(name)}",
            "addresses = [" + ", ".join(toml_string(str(a)) for a in addresses) + "]",
            f'token_sha256 = "{digest_hex}"',
        ]
        if diameter_identity:
            lines.append(f"diameter_identity = {toml_string(diameter_identity)}")
        if nas_identifier:
            lines.append(f"nas_identifier = {toml_string(nas_identifier)}")
        if nas_address is not None:
            lines.append(f"nas_address = {toml_string(str(nas_address))}")
    else:
        lines = ["[[clients]]", f"name = {toml_string(name)}", f'role = "{role}"', f'token_sha256 = "{digest_hex}"']
        if mihf_ids:
            lines.append("mihf_ids = [" + ", ".join(toml_string(m) for m in mihf_ids) + "]")
    return "\n".join(lines) + "\n"


def run_new(args: argparse.Namespace) -> int:
    name = args.name.strip()
    if not name:
        raise ConfigError("must not be empty", key="--name")
    addresses: list[ipaddress.IPv6Address] = []
    if args.role == "ar":
        if not args.address:
            raise ConfigError("an access router needs at least one --address (its IPv6 AR-ID)", key="--address")
        for i, text in enumerate(args.address):
            try:
                addresses.append(ipaddress.IPv6Address(text))
            except ValueError:
                raise ConfigError(f"{text!r} is not an IPv6 address", key=f"--address[{i}]") from None
    elif args.address or args.diameter_identity or args.nas_identifier or args.nas_address:
        raise ConfigError(
            "only role ar takes --address, --diameter-identity, --nas-identifier and --nas-address", key="--role"
        )
    if args.role == "mos" and not args.mihf_id:
        raise ConfigError("a Mobility Server needs at least one --mihf-id", key="--mihf-id")
    if args.role != "mos" and args.mihf_id:
        raise ConfigError("only role mos takes --mihf-id", key="--role")
    nas_address = None
    if args.nas_address:
        try:
            nas_address = ipaddress.ip_address(args.nas_address)
        except ValueError:
            raise ConfigError(f"{args.nas_address!r} is not an IP address", key="--nas-address") from None
    token = secrets.token_urlsafe(TOKEN_OCTETS)
    digest_hex = token_sha256(token).hex()
    entry = config_entry(
        args.role,
        name,
        digest_hex,
        addresses,
        diameter_identity=args.diameter_identity,
        nas_identifier=args.nas_identifier,
        nas_address=nas_address,
        mihf_ids=args.mihf_id,
    )
    if args.json:
        json.dump({"token": token, "token_sha256": digest_hex, "toml": entry}, sys.stdout)
        sys.stdout.write("\n")
        return 0
    sys.stdout.write(
        f"# Bearer token for {name} (role {args.role}). Give it to the caller; it is not stored and not shown again:\n"
        f"{token}\n"
        "\n"
        "# Add to the configuration file (only the token's SHA-256 is kept there):\n"
        f"{entry}"
    )
    return 0

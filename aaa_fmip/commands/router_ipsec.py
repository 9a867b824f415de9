"""``aaa-fmip router ipsec-config``: swanctl.conf for IPsec between this router and its neighbours (RFC 5568 §10).

Reads the router agent's configuration (the key service's URL, the bearer token, this router's addresses and
its neighbour table), fetches the router-pair PSK for each peer (``GET /v1/router-pairs/psk``) and writes
:func:`aaa_fmip.router.ipsec.render_swanctl` to stdout or to ``--output`` (created with mode 0600, replaced
atomically). The key never reaches a log line or an error message.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import ssl
import sys
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any, Final

ENV_CONFIG: Final = "AAA_FMIP_ROUTER_CONFIG"

_DESCRIPTION: Final = """\
Write a swanctl.conf (strongSwan) that protects HI/HAck between this router and its peers with IPsec (RFC 5568
§10): one IKEv2 connection per peer, authenticated with the pre-shared key the key service derives for the pair
and rotates every period, a transport-mode child for every Mobility Header between the two addresses. The
peers are the new-router addresses of the [[neighbours]] table (those not this router's own), or --peer.
Regenerate and reload (swanctl --load-all) at least once per rotation overlap (docs/router.md).
"""


def register(actions: Any) -> None:
    parser: argparse.ArgumentParser = actions.add_parser(
        "ipsec-config",
        help="write swanctl.conf for IPsec with the neighbour routers, keyed by the key service",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help=f"the router agent's TOML configuration (default: ${ENV_CONFIG})",
    )
    parser.add_argument(
        "--peer",
        metavar="ADDRESS",
        action="append",
        type=IPv6Address,
        help="a peer router's IKE address (repeatable; default: the neighbour table's new-router addresses)",
    )
    parser.add_argument(
        "--local", metavar="ADDRESS", type=IPv6Address, help="this router's IKE address (default: its first address)"
    )
    parser.add_argument("--output", "-o", metavar="FILE", help="write here (mode 0600) instead of stdout")
    parser.add_argument(
        "--start-action",
        choices=["trap", "start", "none"],
        default="trap",
        help="the child's start_action (default trap: MH waits in the kernel until the SA is up)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import httpx

    from aaa_fmip.errors import ConfigError
    from aaa_fmip.router.config import load_settings
    from aaa_fmip.router.ipsec import RouterPair, pair_from_json, render_swanctl

    given = getattr(args, "config", None) or os.environ.get(ENV_CONFIG)
    if not given:
        raise ConfigError("give --config FILE (or set AAA_FMIP_ROUTER_CONFIG)", key="--config")
    settings = load_settings(Path(given))
    own = set(settings.router.addresses)
    local: IPv6Address = args.local or settings.router.addresses[0]
    if local not in own:
        raise ConfigError(f"{local} is not one of [router] addresses", key="--local")
    peers: list[IPv6Address] = list(
        dict.fromkeys(args.peer or (n.nar_address for n in settings.neighbours if n.nar_address not in own))
    )
    if not peers:
        raise ConfigError("no peer: the neighbour table names no other router; give --peer", key="neighbours")
    if not settings.service.url:
        raise ConfigError("the key service's url is needed", key="service.url")
    verify: bool | ssl.SSLContext = True
    if settings.service.ca_file is not None:
        verify = ssl.create_default_context(cafile=str(settings.service.ca_file))
    token = settings.service.token.get_secret_value()
    pairs: list[RouterPair] = []
    with httpx.Client(
        base_url=settings.service.url,
        headers={"Authorization": f"Bearer {token}"} if token else {},
        timeout=max(settings.service.timeout, 5.0),
        verify=verify,
    ) as client:
        for peer in peers:
            try:
                response = client.get("/v1/router-pairs/psk", params={"peer": str(peer), "local": str(local)})
            except httpx.HTTPError as exc:
                print(f"aaa-fmip: the key service at {settings.service.url} cannot be reached: {exc}", file=sys.stderr)
                return 1
            if response.status_code != 200:
                print(f"aaa-fmip: no key for the pair {local} - {peer}: {_problem(response)}", file=sys.stderr)
                return 1
            try:
                pairs.append(pair_from_json(response.json()))
            except ValueError as exc:
                print(f"aaa-fmip: the key service's answer for {peer} is malformed: {exc}", file=sys.stderr)
                return 1
    text = render_swanctl(pairs, start_action=args.start_action)
    if args.output:
        write_private(Path(args.output), text)
    else:
        sys.stdout.write(text)
    return 0


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``, mode 0600 from the first byte (a temporary file renamed over it)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            os.fchmod(out.fileno(), 0o600)  # the umask could only have narrowed it; make it exact
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _problem(response: Any) -> str:
    """``status reason: detail`` of a problem+json answer (it carries no key material)."""
    try:
        body = response.json()
        return f"{response.status_code} {body.get('reason')}: {body.get('detail')}"
    except ValueError:
        return f"HTTP {response.status_code}"

"""``aaa-fmip mih``: run an MIH Information Server (a MoS, RFC 5677) on UDP and TCP.

The configuration is one TOML file (``--config``)::

    [mih]
    mihf_id = "mos.example.org"        # this MoS's MIHF-ID (an FQDN or NAI, 802.21-2008 F.3.11)
    listen = "[::]:4551"               # host:port; the same port on UDP and TCP
    neighbours = "neighbours.toml"     # optional: the neighbour table in its own file (relative to this one);
                                       # without it, the [[poa]] tables of this file are the table
    valid_time_interval = 3600         # seconds a registration lasts (0 = until DeRegister)
    max_udp_payload = 1232             # octets; UDP answers are trimmed to fit the path MTU
    udp_rate = 1000                    # datagrams/s accepted from one UDP source (token bucket) ...
    udp_burst = 1000                   # ... and its burst; the excess is dropped and counted

    [mih.psk]                          # optional: serve DTLS 1.2-PSK (UDP) and TLS 1.2-PSK (TCP) instead of plain
    service_url = "https://aaa.example.net:8443"   # the key service (POST /v1/mih/psk)
    token_file = "mos.token"           # the MoS's ``mos`` token (or token_env = "NAME"); bound to mihf_id
    ca_file = "ca.pem"                 # CA of the key service's certificate (or tls_verify = false, labs only)
    audit_token_file = "auditor.token" # optional: an ``auditor`` token (or audit_token_env) to follow
    revocation_poll = 5                # revocations in the audit trail every N seconds and close their channels

    [mih.publish]                      # optional: what --publish prints (RFC 5678 DHCP options, RFC 5679 DNS)
    domain = "example.net"             # where nodes look the MoS up (NAPTR/SRV owner, DHCP option 140/55)
    addresses = ["192.0.2.1", "2001:db8:5678::1"]   # the MoS's published addresses
    host = "mos1.example.net"          # SRV target; default: mihf_id (so a node learns the MIHF-ID by DNS)

    [[poa]]
    ...                                # see aaa_fmip.mih.neighbours / docs/mih.md
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aaa_fmip.config import parse_host_port
from aaa_fmip.errors import AaaFmipError, ConfigError
from aaa_fmip.logging import configure_logging

log = logging.getLogger("aaa_fmip.mih")

_KEYS = {
    "mihf_id",
    "listen",
    "neighbours",
    "valid_time_interval",
    "max_udp_payload",
    "udp_rate",
    "udp_burst",
    "psk",
    "publish",
}
_PUBLISH_KEYS = {"domain", "host", "addresses", "ttl"}
_PSK_KEYS = {
    "service_url",
    "token_file",
    "token_env",
    "ca_file",
    "tls_verify",
    "audit_token_file",
    "audit_token_env",
    "revocation_poll",
    "key_timeout",
}


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "mih",
        help="run an MIH Information Server (MoS) on UDP and TCP port 4551 (RFC 5677)",
        description=(
            "Serve IEEE 802.21 MIH over IP (RFC 5677) on one port over both UDP and TCP:\n"
            "  MIH_Capability_Discover, MIH_Register / MIH_DeRegister, and MIH_Get_Information, which\n"
            "  answers, for the point of attachment (PoA) a node names by its link address, the neighbouring\n"
            "  PoAs with their link address, access-router address and prefix (what FMIPv6 PrRtAdv carries).\n"
            "Over UDP every message asks for an MIH ACK and is retransmitted on the RFC 2988 timer (3 s\n"
            "initially, 30 s at most, 2 retransmissions); answers are trimmed to max_udp_payload. Over TCP\n"
            "(the RFC 5677 default) there are no MIH ACKs and TCP_NODELAY is set. See docs/mih.md.\n"
            "With a [mih.psk] table the same port serves DTLS 1.2-PSK on UDP and TLS 1.2-PSK on TCP instead\n"
            "(RFC 4279, RFC 6347): a node's PSK identity is its session's HMK-Name, and the key of each identity\n"
            "is fetched from the key service (POST /v1/mih/psk) with this MoS's mos token, bound to mihf_id.\n"
            "A revoked session's key is refused; with an auditor token the MoS also follows the revocations\n"
            "(GET /v1/audit?event=session.revoked) and closes that session's open channels.\n"
            "Without [mih.psk] MIH runs in clear (labs). See docs/mih-security.md."
        ),
        epilog=(
            "configuration file (TOML):\n"
            "  [mih]\n"
            '  mihf_id = "mos.example.org"     # required: FQDN or NAI\n'
            '  listen = "[::]:4551"            # default; the same port on UDP and TCP\n'
            '  # neighbours = "poas.toml"      # the [[poa]] tables in their own file\n'
            "  valid_time_interval = 3600      # seconds a registration lasts, 0 = until DeRegister\n"
            "  max_udp_payload = 1232          # octets (IPv6 minimum MTU - 48)\n"
            "  udp_rate = 1000                 # datagrams/s accepted from one source (token bucket) ...\n"
            "  udp_burst = 1000                # ... with this burst; the excess is dropped and counted\n"
            "\n"
            "  [mih.psk]                       # optional: DTLS/TLS-PSK instead of plain MIH\n"
            '  service_url = "https://aaa.example.net:8443"  # the key service\n'
            '  token_file = "mos.token"        # the mos token (relative to this file), or token_env = "VAR"\n'
            '  ca_file = "ca.pem"              # CA of the key service (tls_verify = false: labs only)\n'
            '  audit_token_file = "auditor.token"  # optional auditor token (or audit_token_env = "VAR"):\n'
            "  revocation_poll = 5             # ... follow session.revoked, close open channels\n"
            "  key_timeout = 5                 # seconds to wait for the key service during a handshake\n"
            "\n"
            "  [mih.publish]                   # optional: what --publish prints\n"
            '  domain = "example.net"          # NAPTR/SRV owner and DHCP option 140/55 domain\n'
            '  addresses = ["192.0.2.1", "2001:db8:5678::1"]  # published addresses (DHCP 139/54, A/AAAA)\n'
            '  # host = "mos1.example.net"     # SRV target; default: mihf_id\n'
            "\n"
            "  [[poa]]\n"
            '  name = "ap1"\n'
            '  link_address = "02:00:00:00:00:01"\n'
            '  router = "2001:db8:1::1"\n'
            '  prefix = "2001:db8:1::/64"\n'
            '  neighbours = ["ap2"]\n'
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", metavar="FILE", required=True, help="TOML file with [mih] and [[poa]]")
    parser.add_argument("--listen", metavar="HOST:PORT", help="overrides mih.listen")
    parser.add_argument("--check", action="store_true", help="load and validate the configuration, then exit")
    parser.add_argument(
        "--publish",
        choices=["dnsmasq", "zone"],
        help="print, from [mih.publish], the dnsmasq lines (DHCPv4 139/140, DHCPv6 54/55, NAPTR/SRV/A/AAAA) or a "
        "DNS zone-file snippet that publish this MoS, then exit",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.set_defaults(func=run)


def _int(section: dict[str, Any], key: str, default: int, low: int, high: int, *, table: str = "mih") -> int:
    value = section.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(f"must be an integer from {low} to {high}", key=f"{table}.{key}")
    return value


@dataclass(frozen=True)
class PskSettings:
    """The [mih.psk] table: where the MoS gets its keys, and how it learns of revocations."""

    service_url: str
    token: str = field(repr=False)
    verify: bool | str
    audit_token: str | None = field(default=None, repr=False)
    revocation_poll: float = 5.0
    key_timeout: float = 5.0


def _secret(section: dict[str, Any], base: Path, prefix: str, *, required: bool) -> str | None:
    """A token from ``<prefix>_file`` (relative to the configuration file) or ``<prefix>_env``."""
    file_key, env_key = f"{prefix}_file", f"{prefix}_env"
    if file_key in section and env_key in section:
        raise ConfigError(f"give {file_key} or {env_key}, not both", key=f"mih.psk.{file_key}")
    if file_key in section:
        name = section[file_key]
        if not isinstance(name, str):
            raise ConfigError("must be a file name", key=f"mih.psk.{file_key}")
        try:
            value = (base / name).read_text("utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read {base / name}: {exc.strerror}", key=f"mih.psk.{file_key}") from None
        where = f"mih.psk.{file_key}"
    elif env_key in section:
        name = section[env_key]
        if not isinstance(name, str) or not name:
            raise ConfigError("must be an environment variable name", key=f"mih.psk.{env_key}")
        value = os.environ.get(name, "").strip()
        where = f"mih.psk.{env_key}"
    elif required:
        raise ConfigError(f"required: {file_key} or {env_key}", key=f"mih.psk.{file_key}")
    else:
        return None
    if not value or any(c.isspace() for c in value) or not value.isprintable():
        raise ConfigError("the token is empty or not one printable word", key=where)
    return value


def _psk_settings(section: Any, base: Path) -> PskSettings:
    if not isinstance(section, dict):
        raise ConfigError("must be a table", key="mih.psk")
    unknown = set(section) - _PSK_KEYS
    if unknown:
        raise ConfigError(f"unknown keys {sorted(unknown)}", key="mih.psk")
    url = section.get("service_url")
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise ConfigError("required: the key service's https:// URL", key="mih.psk.service_url")
    verify: bool | str = True
    if "ca_file" in section:
        ca = section["ca_file"]
        if not isinstance(ca, str) or not (base / ca).is_file():
            raise ConfigError(f"not a readable file: {ca!r}", key="mih.psk.ca_file")
        verify = str(base / ca)
    tls_verify = section.get("tls_verify", True)
    if not isinstance(tls_verify, bool):
        raise ConfigError("must be true or false", key="mih.psk.tls_verify")
    if not tls_verify:
        verify = False
    token = _secret(section, base, "token", required=True)
    assert token is not None
    return PskSettings(
        service_url=url.rstrip("/"),
        token=token,
        verify=verify,
        audit_token=_secret(section, base, "audit_token", required=False),
        revocation_poll=float(_int(section, "revocation_poll", 5, 1, 3600, table="mih.psk")),
        key_timeout=float(_int(section, "key_timeout", 5, 1, 60, table="mih.psk")),
    )


def load(path: Path, listen_override: str | None) -> tuple[Any, Any, dict[str, Any]]:
    """(information server, listen address, server options) from the configuration file."""
    info, listen, options, _psk = load_all(path, listen_override)
    return info, listen, options


def load_all(path: Path, listen_override: str | None) -> tuple[Any, Any, dict[str, Any], PskSettings | None]:
    """(information server, listen address, server options, [mih.psk] settings or None) from the file."""
    from aaa_fmip.mih.information import InformationServer
    from aaa_fmip.mih.neighbours import NeighbourTable, load_neighbour_table

    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", key="--config") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(exc), key="--config") from None
    section = data.get("mih")
    if not isinstance(section, dict):
        raise ConfigError("the [mih] table is required", key="mih")
    unknown = set(section) - _KEYS
    if unknown:
        raise ConfigError(f"unknown keys {sorted(unknown)}", key="mih")
    mihf_id = section.get("mihf_id")
    if not isinstance(mihf_id, str) or not 1 <= len(mihf_id.encode()) <= 253:
        raise ConfigError("required: an FQDN or NAI of 1 to 253 octets", key="mih.mihf_id")
    listen = parse_host_port(listen_override or section.get("listen", "[::]:4551"), key="mih.listen", default_port=4551)
    neighbours = section.get("neighbours")
    if neighbours is not None:
        if not isinstance(neighbours, str):
            raise ConfigError("must be a file name", key="mih.neighbours")
        table = load_neighbour_table(path.parent / neighbours)
    else:
        table = NeighbourTable.from_mapping({k: v for k, v in data.items() if k in ("poa", "symmetric")})
    max_udp = _int(section, "max_udp_payload", 1232, 64, 65507)
    psk = _psk_settings(section["psk"], path.parent) if "psk" in section else None
    if psk is not None:
        from aaa_fmip.mih.secure import DTLS_OVERHEAD

        max_udp -= DTLS_OVERHEAD  # a DTLS record around the frame still fits the path MTU (RFC 5677 §6.1)
        if max_udp < 64:
            raise ConfigError(f"too small for a DTLS record of {DTLS_OVERHEAD} octets", key="mih.max_udp_payload")
    info = InformationServer(
        mihf_id.encode(),
        table,
        clock=time.monotonic,
        valid_time_interval=_int(section, "valid_time_interval", 3600, 0, 2**32 - 1),
        udp_limit=max_udp,
    )
    options = {
        "max_datagram": max_udp,
        "rate": float(_int(section, "udp_rate", 1000, 1, 10**7)),
        "burst": float(_int(section, "udp_burst", 1000, 1, 10**7)),
    }
    return info, listen, options, psk


def publication(path: Path, listen_override: str | None) -> Any:
    """The :class:`~aaa_fmip.mih.publish.MosPublication` of [mih.publish] (port from mih.listen)."""
    from aaa_fmip.mih.publish import MosPublication

    data = tomllib.loads(path.read_text("utf-8"))
    section = data["mih"]
    table = section.get("publish")
    if not isinstance(table, dict):
        raise ConfigError("--publish needs a [mih.publish] table (domain, addresses)", key="mih.publish")
    unknown = set(table) - _PUBLISH_KEYS
    if unknown:
        raise ConfigError(f"unknown keys {sorted(unknown)}", key="mih.publish")
    addresses = table.get("addresses")
    if not isinstance(addresses, list) or not addresses or not all(isinstance(a, str) for a in addresses):
        raise ConfigError("required: a list of IP addresses", key="mih.publish.addresses")
    try:
        parsed = tuple(ipaddress.ip_address(a) for a in addresses)
    except ValueError as exc:
        raise ConfigError(str(exc), key="mih.publish.addresses") from None
    listen = parse_host_port(listen_override or section.get("listen", "[::]:4551"), key="mih.listen", default_port=4551)
    try:
        return MosPublication(
            domain=str(table.get("domain", "")),
            host=str(table.get("host", section["mihf_id"])),
            addresses=parsed,
            port=listen.port,
            ttl=_int(table, "ttl", 3600, 0, 2**31 - 1, table="mih.publish"),
        )
    except ValueError as exc:
        raise ConfigError(str(exc), key="mih.publish") from None


def run(args: argparse.Namespace) -> int:
    configure_logging(args.log_level.upper())
    info, listen, options, psk = load_all(Path(args.config), args.listen)
    if args.publish:
        from aaa_fmip.mih import publish

        mos = publication(Path(args.config), args.listen)
        print(publish.dnsmasq_config([mos]) if args.publish == "dnsmasq" else publish.zone_snippet([mos]), end="")
        return 0
    if args.check:
        security = "DTLS/TLS-PSK keyed by " + psk.service_url if psk is not None else "plain (no transport security)"
        print(f"mih: {len(info.table.poas)} points of attachment, MIHF-ID {info.mihf_id.decode()}, {security}")
        return 0
    if psk is not None:
        if args.log_level != "debug":  # one line per key fetch and per revocation poll is noise; refusals are logged
            logging.getLogger("httpx").setLevel(logging.WARNING)
        return asyncio.run(_serve_psk(info, listen.host, listen.port, options, psk))
    return asyncio.run(_serve(info, listen.host, listen.port, options))


async def _serve_psk(info: Any, host: str, port: int, options: dict[str, Any], psk: PskSettings) -> int:
    from aaa_fmip.mih.psk import RestKeySource
    from aaa_fmip.mih.secure import RevocationFollower, SecureMIHServer

    mihf_id = info.mihf_id.decode()
    keys = RestKeySource(psk.service_url, psk.token, mihf_id, timeout=psk.key_timeout, verify=psk.verify)
    server = SecureMIHServer(info.mihf_id, info.handle_frame, keys, max_datagram=options["max_datagram"])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start(host, port)
    except OSError as exc:
        raise AaaFmipError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    follower: RevocationFollower | None = None
    following: asyncio.Task[None] | None = None
    if psk.audit_token is not None:
        follower = RevocationFollower(
            psk.service_url, psk.audit_token, server.revoke, interval=psk.revocation_poll, verify=psk.verify
        )
        following = asyncio.ensure_future(follower.run())
    log.info(
        "listening",
        extra={
            "event": "listening",
            "address": f"{host}:{server.port}",
            "poas": len(info.table.poas),
            "security": "dtls-psk,tls-psk",
            "key_service": psk.service_url,
            "follows_revocations": follower is not None,
        },
    )
    try:
        await stop.wait()
    finally:
        if following is not None:
            following.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await following
        await server.close()
        await keys.aclose()
        counters = {**server.counters, **info.counters, **(follower.counters if follower else {})}
        log.info("stopped", extra={"event": "stopped", **counters})
    return 0


async def _serve(info: Any, host: str, port: int, options: dict[str, Any]) -> int:
    from aaa_fmip.mih.server import MIHServer

    server = MIHServer(info.mihf_id, info.handle_frame, **options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start(host, port)
    except OSError as exc:
        raise AaaFmipError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    log.info(
        "listening", extra={"event": "listening", "address": f"{host}:{server.port}", "poas": len(info.table.poas)}
    )
    try:
        await stop.wait()
    finally:
        await server.close()
        log.info("stopped", extra={"event": "stopped", **server.counters, **server.udp.counters, **info.counters})
    return 0

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

    [[poa]]
    ...                                # see aaa_fmip.mih.neighbours / docs/mih.md
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import time
import tomllib
from pathlib import Path
from typing import Any

from aaa_fmip.config import parse_host_port
from aaa_fmip.errors import AaaFmipError, ConfigError
from aaa_fmip.logging import configure_logging

log = logging.getLogger("aaa_fmip.mih")

_KEYS = {"mihf_id", "listen", "neighbours", "valid_time_interval", "max_udp_payload", "udp_rate", "udp_burst"}


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
            "(the RFC 5677 default) there are no MIH ACKs and TCP_NODELAY is set. See docs/mih.md."
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
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.set_defaults(func=run)


def _int(section: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = section.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(f"must be an integer from {low} to {high}", key=f"mih.{key}")
    return value


def load(path: Path, listen_override: str | None) -> tuple[Any, Any, dict[str, Any]]:
    """(information server, listen address, server options) from the configuration file."""
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
    return info, listen, options


def run(args: argparse.Namespace) -> int:
    configure_logging(args.log_level.upper())
    info, listen, options = load(Path(args.config), args.listen)
    if args.check:
        print(f"mih: {len(info.table.poas)} points of attachment, MIHF-ID {info.mihf_id.decode()}")
        return 0
    return asyncio.run(_serve(info, listen.host, listen.port, options))


async def _serve(info: Any, host: str, port: int, options: dict[str, Any]) -> int:
    from aaa_fmip.mih.transport import MIHServer

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

"""``aaa-fmip router``: the FMIPv6 access-router agent (RFC 5568 PAR and NAR) on this host's links.

Needs CAP_NET_RAW (raw MH, Destination Options and ICMPv6 sockets). SIGTERM and SIGINT stop it; the exit
status is then 0. The composition of the agent's parts happens here, from :mod:`aaa_fmip.router.config`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import signal
import ssl
import sys
import time
from pathlib import Path
from typing import Any, Final

from aaa_fmip.logging import configure_logging

ENV_CONFIG: Final = "AAA_FMIP_ROUTER_CONFIG"

_DESCRIPTION: Final = """\
Run the FMIPv6 access-router agent (RFC 5568). The router answers RtSolPr with PrRtAdv from its neighbour
table, verifies Fast Binding Updates locally with handover keys from the key service (fetched by SPI,
prefetched when a node's RtSolPr arrives, or pushed by RADIUS), runs HI/HAck with the new access router and
answers the node with an FBack signed with the same key. It is at once the previous router for nodes leaving
and the new router for nodes arriving.

Configuration: a TOML file (--config, or $AAA_FMIP_ROUTER_CONFIG); every field can be overridden by an
environment variable AAA_FMIP_ROUTER_<SECTION>__<FIELD>, e.g. AAA_FMIP_ROUTER_SERVICE__TOKEN for the bearer
token. Logs are JSON lines on stderr; Prometheus metrics on [metrics] listen. HI/HAck between routers must be
protected by IPsec (RFC 5568 §10): see docs/router.md for the configuration and the SPD/PAD entries.
"""


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "router",
        help="run the FMIPv6 access-router agent (PAR and NAR) on raw sockets",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", metavar="FILE", help=f"TOML configuration file (default: ${ENV_CONFIG})")
    parser.add_argument(
        "--check", action="store_true", help="validate the configuration, print a summary (no secrets) and exit"
    )
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="overrides [log] level")
    parser.set_defaults(func=run)
    from aaa_fmip.commands import router_ipsec

    router_ipsec.register(parser.add_subparsers(title="other actions", metavar="ACTION"))


def run(args: argparse.Namespace) -> int:
    from aaa_fmip.errors import ConfigError
    from aaa_fmip.router.config import load_settings

    given = args.config or os.environ.get(ENV_CONFIG)
    if not given:
        raise ConfigError("give --config FILE (or set AAA_FMIP_ROUTER_CONFIG)", key="--config")
    settings = load_settings(Path(given))
    configure_logging((args.log_level or settings.log.level).upper())
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would drown the handovers
    if args.check:
        r = settings.router
        print(f"addresses: {', '.join(map(str, r.addresses))}")
        print(f"access prefixes: {', '.join(map(str, r.access_prefixes)) or '(none)'}")
        print(f"neighbours: {len(settings.neighbours)}")
        print(f"keys: {settings.keys.mode}; service: {settings.service.url or '(none)'}")
        print(f"replay state: {r.replay_state}")
        if settings.prefixes.aggregate is not None:
            p = settings.prefixes
            print(f"per-node prefixes: /{p.prefix_length} from {p.pool or p.aggregate} on {', '.join(p.interfaces)}")
        return 0
    return asyncio.run(_serve(settings))


async def _serve(settings: Any) -> int:
    import httpx
    from prometheus_client import start_http_server

    from aaa_fmip.router.core import RouterCore
    from aaa_fmip.router.driver import RouterAgent, interface_addresses
    from aaa_fmip.router.keycache import HandoverKeyCache, KeyService, RestKeyService, Verifier
    from aaa_fmip.router.metrics import RouterMetrics
    from aaa_fmip.router.verify import FileReplayJournal, ReplayState

    link_local, lla = (None, b"")
    for name in settings.router.access_interfaces:
        link_local, lla = interface_addresses(name)
        if link_local is not None:
            break
    params = settings.parameters(link_local=link_local, lla=lla)
    metrics = RouterMetrics()
    if settings.metrics.listen:
        host, _, port = settings.metrics.listen.rpartition(":")
        start_http_server(int(port), addr=host.strip("[]") or "127.0.0.1", registry=metrics.registry)
    journal = FileReplayJournal(settings.router.replay_state, now=time.time(), fsync=settings.router.replay_fsync)
    replay = ReplayState(journal)
    client = None
    service = None
    if settings.service.url:
        verify: bool | ssl.SSLContext = True
        if settings.service.ca_file is not None:
            verify = ssl.create_default_context(cafile=str(settings.service.ca_file))
        token = settings.service.token.get_secret_value()
        client = httpx.AsyncClient(
            base_url=settings.service.url,
            headers={"Authorization": f"Bearer {token}"} if token else {},
            timeout=settings.service.timeout,
            verify=verify,
        )
        service = RestKeyService(client)
    diameter_client = None
    key_source: KeyService | None = service
    if settings.keys.source == "diameter":
        from aaa_fmip.diameter.client import HandoverKeyClient
        from aaa_fmip.router.diameter_source import DiameterKeyService

        d = settings.diameter
        diameter_client = HandoverKeyClient(
            origin_host=d.origin_host,
            origin_realm=d.origin_realm,
            peer=d.peer,
            host=d.host,
            port=d.port,
            destination_realm=d.destination_realm or None,
            application_id=d.application_id,
            vendor_id=d.vendor_id,
            command_code=d.command_code,
            timeout=d.timeout,
        )
        try:
            await asyncio.to_thread(diameter_client.start)
        except (TimeoutError, OSError) as exc:
            print(f"aaa-fmip: the Diameter peer {d.peer} at {d.host}:{d.port} did not answer: {exc}", file=sys.stderr)
            journal.close()
            if client is not None:
                await client.aclose()
            return 1
        key_source = DiameterKeyService(diameter_client)
    verifier = Verifier(
        HandoverKeyCache(max_keys=settings.keys.max_keys),
        replay,
        key_source,
        mode=settings.keys.mode,
        lifetime_unit=settings.router.lifetime_unit,
        on_fetch=lambda kind, seconds, result: metrics.fetch_seconds.labels(kind, result).observe(seconds),
    )
    core = RouterCore(params, initial_hi_sequence=secrets.randbelow(0x10000))
    p2p = _per_node_links(settings, core, metrics)
    agent = RouterAgent(
        core,
        verifier,
        metrics=metrics,
        prefetch=settings.keys.prefetch,
        service=service,
        report_verdicts=settings.keys.report_verdicts,
        p2p=p2p,
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.stop)
    try:
        await agent.run()
    except PermissionError:
        print("aaa-fmip: the router agent needs CAP_NET_RAW (raw sockets): run it as root or grant it", file=sys.stderr)
        return 1
    finally:
        journal.close()
        if client is not None:
            await client.aclose()
        if diameter_client is not None:
            await asyncio.to_thread(diameter_client.stop)
    return 0


def _per_node_links(settings: Any, core: Any, metrics: Any) -> Any:
    """radvd, routes and link checks for per-node prefixes (``[prefixes]``), or None when they are off."""
    p = settings.prefixes
    if p.aggregate is None:
        return None
    from aaa_fmip.router.p2p import P2PLinks, Radvd, RadvdSettings, Routes

    radvd = None
    if p.radvd:
        radvd = Radvd(
            RadvdSettings(
                p.radvd_directory,
                p.radvd_binary,
                valid_lifetime=p.valid_lifetime,
                preferred_lifetime=p.preferred_lifetime,
                router_lifetime=p.router_lifetime,
            )
        )
    routes = Routes() if p.routes else None
    return P2PLinks(core, radvd=radvd, routes=routes, metrics=metrics, clock=time.time, state_path=p.state_file)

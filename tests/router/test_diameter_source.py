"""The router's key source over Diameter: a real python-diameter Handover-Key server (the one ``aaa-fmip serve``
starts) on a real redis-server, and the router's Verifier fetching, prefetching and verifying through it."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from aaa_fmip.bootstrap import build_runtime
from aaa_fmip.config import load_settings
from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.diameter import server
from aaa_fmip.diameter.client import HandoverKeyClient
from aaa_fmip.model import Caller, EapKeys, SessionRequest
from aaa_fmip.router.diameter_source import DiameterKeyService
from aaa_fmip.router.keycache import HandoverKeyCache, Verifier
from aaa_fmip.router.verify import ReceivedMh, ReplayState, parse_fbu
from tests.router._pair import EMSK, MN_LLA, PAR, SESSION_ID, node_key, predictive_fbu
from tests.support.redis_server import RedisServer, free_port


def _fbu(sequence: int) -> ReceivedMh:
    p = predictive_fbu(sequence=sequence)
    return ReceivedMh(p.source, p.destination, p.home_address, p.mh)


def test_keys_over_diameter(redis_server: RedisServer, tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "aaa-fmip.toml"
    config.write_text(
        f"""
[store]
url = "{redis_server.url}"
prefix = "rd{os.urandom(3).hex()}"

[[access_routers]]
name = "par"
addresses = ["{PAR}"]
diameter_identity = "par.example.net"

[diameter]
listen = "127.0.0.1:{port}"
origin_host = "keys.example.net"
origin_realm = "example.net"

[[diameter.peers]]
identity = "par.example.net"
role = "ar"
""",
        encoding="utf-8",
    )
    runtime = build_runtime(load_settings(config, {"AAA_FMIP_KEK": os.urandom(32).hex()}))
    handle = None
    try:
        handle = server.start(runtime)
        runtime.service.ingest_session(
            Caller("test", "aaa"),
            SessionRequest(
                user_name="mn@example.net",
                keys=EapKeys(SecretBytes(EMSK), SESSION_ID),
                calling_station_id="-".join(f"{b:02X}" for b in MN_LLA),
            ),
        )
        with HandoverKeyClient(
            origin_host="par.example.net",
            origin_realm="example.net",
            peer="keys.example.net",
            host="127.0.0.1",
            port=port,
        ) as client:
            service = DiameterKeyService(client)

            async def go() -> None:
                verifier = Verifier(HandoverKeyCache(), ReplayState(), service)
                first = await verifier.verify(parse_fbu(_fbu(1)))
                assert first.outcome == "accepted" and first.key is not None and first.key.hk == node_key().hk
                assert first.key.source == "fetched"
                prefetching = Verifier(HandoverKeyCache(), ReplayState(), service)
                assert await prefetching.prefetch(MN_LLA, [PAR]) == 1
                second = await prefetching.verify(parse_fbu(_fbu(2)))
                assert second.key is not None and second.key.source == "prefetched"
                remote = Verifier(HandoverKeyCache(), ReplayState(), service, mode="service")
                assert (await remote.verify(parse_fbu(_fbu(3)))).outcome == "accepted"
                assert (await remote.verify(parse_fbu(_fbu(2)))).reason == "replay"
                unknown = parse_fbu(_fbu(4))
                import dataclasses

                unknown = dataclasses.replace(unknown, auth=dataclasses.replace(unknown.auth, spi=0x0BADF00D))
                assert (
                    await Verifier(HandoverKeyCache(), ReplayState(), service).verify(unknown)
                ).reason == "unknown-spi"

            asyncio.run(go())
    finally:
        if handle is not None:
            handle.stop()
        runtime.close()

"""The service under test with its Diameter node: a real Redis store, the real service, our DiameterServer."""

from __future__ import annotations

import ipaddress
import os
import threading
from dataclasses import dataclass, field

from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.crypto.wrap import Kek, KekRing
from aaa_fmip.diameter.client import HandoverKeyClient
from aaa_fmip.diameter.dictionary import DiameterDictionary
from aaa_fmip.diameter.server import DiameterServer, PeerConfig, ServerConfig
from aaa_fmip.metrics import Metrics
from aaa_fmip.model import AccessRouter, Caller
from aaa_fmip.service import HandoverKeyService
from aaa_fmip.store.redis import RedisStore
from tests.support.redis_server import free_port

IP = ipaddress.IPv6Address
SERVICE = "keys.fmip.test"
REALM = "fmip.test"
PAR1 = IP("2001:db8:1::1")
PAR2 = IP("2001:db8:2::1")
PCOA = IP("2001:db8:1::100")
NCOA = IP("2001:db8:2::100")
AR1 = AccessRouter("ar1", frozenset({PAR1}), diameter_identity="ar1.fmip.test")
AR2 = AccessRouter("ar2", frozenset({PAR2}), diameter_identity="ar2.fmip.test")
ROUTERS = {r.diameter_identity: r for r in (AR1, AR2) if r.diameter_identity}
AAA = Caller("test-aaa", "aaa")


@dataclass
class Stack:
    """One key service (store + service + Diameter node) listening on ``port``."""

    server: DiameterServer
    service: HandoverKeyService
    store: RedisStore
    metrics: Metrics
    port: int
    threads_before: set[threading.Thread] = field(default_factory=set)

    def client(self, identity: str, **kw: object) -> HandoverKeyClient:
        return HandoverKeyClient(
            origin_host=identity,
            origin_realm=REALM,
            peer=SERVICE,
            host="127.0.0.1",
            port=self.port,
            dictionary=self.server.dictionary,
            **kw,  # type: ignore[arg-type]
        ).start()

    def stop(self) -> None:
        self.server.stop()
        self.store.close()


def start_stack(
    redis_url: str,
    dictionary: DiameterDictionary,
    peers: tuple[PeerConfig, ...],
    *,
    port: int | None = None,
    watchdog_interval: int = 30,
    answer_timeout: float = 3.0,
) -> Stack:
    before = set(threading.enumerate())
    ring = KekRing(Kek("k1", SecretBytes(os.urandom(32))))
    store = RedisStore.from_url(redis_url, ring, prefix=f"d{os.urandom(4).hex()}")
    service = HandoverKeyService(store)
    metrics = Metrics()
    port = port or free_port()
    config = ServerConfig(
        origin_host=SERVICE,
        origin_realm=REALM,
        listen_host="127.0.0.1",
        listen_port=port,
        peers=peers,
        watchdog_interval=watchdog_interval,
        reconnect_interval=1,
        answer_timeout=answer_timeout,
    )
    server = DiameterServer(
        config, service=service, router_by_identity=ROUTERS.get, metrics=metrics, dictionary=dictionary
    )
    try:
        server.start()
    except BaseException:
        store.close()
        raise
    return Stack(server, service, store, metrics, port, before)

"""Start and stop the Diameter side of the service: one python-diameter node with two applications.

* the Handover-Key application (:mod:`aaa_fmip.diameter.handover_key`) for peers of role ``ar`` (an access
  router that connects itself) and ``agent`` (a Diameter relay or proxy that forwards AR requests);
* the EAP agent (:mod:`aaa_fmip.diameter.eap_agent`, RFC 4072 Application-Id 5) between peers of role ``nas``
  and ``home-eap-server``.

Only configured peers may connect: the node answers any other CER with 3010 DIAMETER_UNKNOWN_PEER (RFC 6733
§5.3). Peers with an address are connected to (and reconnected every ``reconnect_interval`` seconds); the others
are expected to connect to us. :func:`start` is what ``aaa-fmip serve`` calls; the handle's ``stop()`` sends DPR
to every peer and returns within about a second, with no thread left behind.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, get_args

from aaa_fmip.diameter.dictionary import DiameterDictionary, load_dictionary, register
from aaa_fmip.diameter.eap_agent import BASE_APPLICATION_ID, EAP_APPLICATION_ID, EapAgent, EapAgentContext
from aaa_fmip.diameter.handover_key import HandoverKeyApplication, HandoverKeyContext
from aaa_fmip.diameter.node import Node, PooledApplication
from aaa_fmip.errors import ConfigError
from aaa_fmip.model import AccessRouter, PeerRole

log = logging.getLogger("aaa_fmip.diameter")

PEER_ROLES: Final[tuple[str, ...]] = get_args(PeerRole)
DIAMETER_PORT: Final = 3868  # RFC 6733 §2.1
PRODUCT_NAME: Final = "aaa-fmip"


@dataclass(frozen=True)
class PeerConfig:
    """A peer we accept (and, with ``host``, connect to)."""

    identity: str
    role: PeerRole
    host: str | None = None
    port: int = DIAMETER_PORT


@dataclass(frozen=True)
class ServerConfig:
    origin_host: str
    origin_realm: str
    listen_host: str = "127.0.0.1"
    listen_port: int = DIAMETER_PORT
    peers: tuple[PeerConfig, ...] = ()
    application_id: int | None = None  # None: the dictionary file's value
    vendor_id: int | None = None
    command_code: int | None = None
    dictionary_path: Path | None = None
    watchdog_interval: int = 30  # s idle before we send DWR (RFC 3539 Tw default)
    reconnect_interval: int = 30  # s; RFC 6733 §2.1 recommends Tc = 30 s
    answer_timeout: float = 5.0  # s to wait for the home EAP server / NAS when relaying
    workers: int = 16
    product_name: str = PRODUCT_NAME

    @classmethod
    def from_settings(cls, settings: Any) -> ServerConfig:
        """From :class:`aaa_fmip.config.DiameterSettings` (read by attribute, so no import cycle)."""
        peers = tuple(
            PeerConfig(
                identity=p.identity,
                role=p.role,
                host=p.address.host if p.address is not None else None,
                port=p.address.port if p.address is not None else DIAMETER_PORT,
            )
            for p in settings.peers
        )
        return cls(
            origin_host=settings.origin_host,
            origin_realm=settings.origin_realm,
            listen_host=settings.listen.host,
            listen_port=settings.listen.port,
            peers=peers,
            application_id=settings.application_id,
            vendor_id=settings.vendor_id,
            command_code=settings.command_code,
            dictionary_path=getattr(settings, "dictionary", None),
        )

    def validate(self) -> None:
        try:
            ipaddress.IPv4Address(self.listen_host)
        except ValueError:
            # python-diameter 0.9.0 opens AF_INET sockets only.
            raise ConfigError(
                "must be an IPv4 address (the Diameter stack listens on IPv4)", key="diameter.listen"
            ) from None
        seen: set[str] = set()
        for i, peer in enumerate(self.peers):
            if peer.role not in PEER_ROLES:
                raise ConfigError(f"role must be one of {', '.join(PEER_ROLES)}", key=f"diameter.peers[{i}].role")
            if peer.identity.lower() in seen:
                raise ConfigError("duplicate peer identity", key=f"diameter.peers[{i}].identity")
            seen.add(peer.identity.lower())
            if peer.identity.lower() == self.origin_host.lower():
                raise ConfigError("a peer cannot have our own origin_host", key=f"diameter.peers[{i}].identity")

    def identities(self, *roles: str) -> tuple[str, ...]:
        return tuple(p.identity.lower() for p in self.peers if p.role in roles)


class DiameterServer:
    """The running Diameter node. ``start()`` then ``stop()``; also a context manager."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        service: Any,
        router_by_identity: Any,
        metrics: Any = None,
        dictionary: DiameterDictionary | None = None,
    ) -> None:
        config.validate()
        self.config = config
        base = dictionary or load_dictionary(config.dictionary_path)
        self.dictionary = base.with_overrides(
            application_id=config.application_id, vendor_id=config.vendor_id, command_code=config.command_code
        )
        self.service = service
        self.router_by_identity = router_by_identity
        self.metrics = metrics
        self.node: Node | None = None
        self.eap_agent: EapAgent | None = None

    def start(self) -> DiameterServer:
        if self.node is not None:
            raise RuntimeError("the Diameter server is already started")
        register(self.dictionary)
        cfg = self.config
        node = Node(
            cfg.origin_host,
            cfg.origin_realm,
            ip_addresses=[cfg.listen_host],
            tcp_port=cfg.listen_port,
            vendor_ids=[self.dictionary.vendor_id],
        )
        node.vendor_id = self.dictionary.vendor_id
        node.product_name = cfg.product_name
        node.idle_timeout = cfg.watchdog_interval
        # RFC 6733 §6.11: ours is a vendor-specific application (the §11.3 range), advertised as such in CEA/CER.
        node.vendor_applications[self.dictionary.application_id] = self.dictionary.vendor_id
        node.on_unmatched_answer = self._unmatched_answer
        self.node = node
        try:
            peers = {}
            for p in cfg.peers:
                peer = node.add_peer(
                    f"aaa://{p.identity.lower()}:{p.port};transport=tcp",
                    cfg.origin_realm,
                    ip_addresses=[p.host] if p.host else None,
                    is_persistent=p.host is not None,
                )
                peer.reconnect_wait = cfg.reconnect_interval
                peer.always_reconnect = True  # also after the peer's own DPR (e.g. its restart)
                peers[p.identity.lower()] = peer

            ar_side = cfg.identities("ar", "agent")
            hk = HandoverKeyApplication(
                HandoverKeyContext(
                    service=self.service,
                    dictionary=self.dictionary,
                    origin_host=cfg.origin_host,
                    origin_realm=cfg.origin_realm,
                    router_by_identity=self._router,
                    agents=frozenset(cfg.identities("agent")),
                    metrics=self.metrics,
                )
            )
            hk_app = PooledApplication(self.dictionary.application_id, hk.handle, workers=cfg.workers, name="hk")
            node.add_application(hk_app, [peers[i] for i in ar_side])
            node.serve(hk_app, ar_side)

            eap_side = cfg.identities("nas", "home-eap-server")
            if eap_side:
                agent = EapAgent(
                    EapAgentContext(
                        service=self.service,
                        dictionary=self.dictionary,
                        origin_host=cfg.origin_host,
                        origin_realm=cfg.origin_realm,
                        nas_peers=frozenset(cfg.identities("nas")),
                        home_servers=cfg.identities("home-eap-server"),
                        answer_timeout=cfg.answer_timeout,
                        metrics=self.metrics,
                    )
                )
                eap_app = PooledApplication(EAP_APPLICATION_ID, agent.handle, workers=cfg.workers, name="eap")
                agent.bind(eap_app)
                node.add_application(eap_app, [peers[i] for i in eap_side])
                node.serve(eap_app, eap_side, application_ids=(BASE_APPLICATION_ID,))
                self.eap_agent = agent
            node.start()
        except BaseException:
            self.stop()
            raise
        log.info(
            "diameter node started",
            extra={
                "origin_host": cfg.origin_host,
                "listen": f"{cfg.listen_host}:{cfg.listen_port}",
                "application_id": self.dictionary.application_id,
                "command_code": self.dictionary.command_code,
                "peers": len(cfg.peers),
            },
        )
        return self

    def _unmatched_answer(self, message: Any) -> None:
        # Typically a DEA after its DER timed out (the NAS already got 3002): dropped by the node, counted here.
        if self.metrics is not None:
            self.metrics.operation_errors.labels("diameter", "relay", "late_answer").inc()

    def _router(self, identity: str) -> AccessRouter | None:
        router: AccessRouter | None = self.router_by_identity(identity)
        return router

    def stop(self) -> None:
        node, self.node = self.node, None
        if node is None:
            return
        if node._started:
            node.stop()
        else:  # failed before start(): only the applications' pools run
            for app in node.applications:
                app.stop()
        log.info("diameter node stopped", extra={"origin_host": self.config.origin_host})

    def wait_for_peer(self, identity: str, timeout: float) -> bool:
        return self.node is not None and self.node.wait_for_peer(identity, timeout)

    def __enter__(self) -> DiameterServer:
        return self if self.node is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start(runtime: Any) -> DiameterServer:
    """Start the Diameter node described by ``runtime.settings.diameter`` (``aaa-fmip serve``)."""
    settings = runtime.settings.diameter
    if settings is None:
        raise ConfigError("no [diameter] section", key="diameter")
    server = DiameterServer(
        ServerConfig.from_settings(settings),
        service=runtime.service,
        router_by_identity=runtime.callers.router_by_diameter_identity,
        metrics=runtime.metrics,
    )
    return server.start()

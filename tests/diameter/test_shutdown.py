"""Stopping the Diameter side leaves no thread behind (python-diameter's own threads are non-daemon)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from aaa_fmip.diameter.dictionary import DiameterDictionary
from aaa_fmip.diameter.server import DiameterServer, PeerConfig, ServerConfig
from tests.diameter.peers import MobileNode
from tests.diameter.stack import PAR1, REALM, ROUTERS, SERVICE
from tests.diameter.test_eap_agent import start_agent
from tests.support.redis_server import RedisServer


def new_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t not in before and t.is_alive()]


def test_stop_after_traffic_leaves_no_thread(redis_server: RedisServer, dictionary: DiameterDictionary) -> None:
    before = set(threading.enumerate())
    agent = start_agent(redis_server.url, dictionary)
    node = MobileNode("stop@home.test")
    agent.home.users[node.user_name] = node
    assert agent.nas.der(node).result_code == 2001
    assert agent.ar1.handover_key(PAR1, calling_station_id=node.calling_station_id).ok
    assert agent.stack.server.node is not None
    started = agent.stack.server.node.threads()
    assert len(new_threads(before)) > 10  # sockets loop, 2 per connection, request pools, on 4 nodes

    t0 = time.monotonic()
    agent.stop()
    elapsed = time.monotonic() - t0

    leftover = new_threads(before)
    assert leftover == [], [t.name for t in leftover]
    assert not any(t.is_alive() for t in started)
    print(f"four nodes stopped in {elapsed:.3f} s")  # reported, not asserted (tests never assert wall-clock time)


def test_failed_start_leaves_no_thread(dictionary: DiameterDictionary) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        before = set(threading.enumerate())
        config = ServerConfig(
            origin_host=SERVICE,
            origin_realm=REALM,
            listen_port=port,
            peers=(PeerConfig("ar1.fmip.test", "ar"),),
        )
        server = DiameterServer(config, service=object(), router_by_identity=ROUTERS.get, dictionary=dictionary)
        with pytest.raises(OSError):
            server.start()
        assert new_threads(before) == []
        server.stop()  # idempotent


def test_ipv6_listen_address_is_refused(dictionary: DiameterDictionary) -> None:
    from aaa_fmip.errors import ConfigError

    config = ServerConfig(origin_host=SERVICE, origin_realm=REALM, listen_host="::1")
    with pytest.raises(ConfigError, match=r"diameter\.listen"):
        DiameterServer(config, service=object(), router_by_identity=ROUTERS.get, dictionary=dictionary)

"""``aaa_fmip.diameter.server.start(runtime)`` as ``aaa-fmip serve`` calls it: settings file → runtime → node."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from diameter.message.avp import Avp

from aaa_fmip.bootstrap import build_runtime
from aaa_fmip.config import load_settings
from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.diameter import server
from aaa_fmip.diameter.client import HandoverKeyClient
from aaa_fmip.model import Caller, SessionRequest, VisitedKeys
from tests.diameter.peers import MobileNode
from tests.diameter.stack import PAR1
from tests.support.redis_server import RedisServer, free_port


def test_start_from_settings(redis_server: RedisServer, tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "aaa-fmip.toml"
    config.write_text(
        f"""
[store]
url = "{redis_server.url}"
prefix = "serve{os.urandom(3).hex()}"

[[access_routers]]
name = "ar1"
addresses = ["{PAR1}"]
diameter_identity = "ar1.example.net"          # Diameter only: no token_sha256

[diameter]
listen = "127.0.0.1:{port}"
origin_host = "keys.example.net"
origin_realm = "example.net"
application_id = 2128150530
vendor_id = 99999
command_code = 16777215

[[diameter.peers]]
identity = "ar1.example.net"
role = "ar"
""",
        encoding="utf-8",
    )
    settings = load_settings(config, {"AAA_FMIP_KEK": os.urandom(32).hex()})
    before = set(threading.enumerate())
    runtime = build_runtime(settings)
    handle = None
    try:
        handle = server.start(runtime)
        node = MobileNode("serve@home.test")
        info = runtime.service.ingest_session(
            Caller("test", "aaa"),
            SessionRequest(
                user_name=node.user_name, keys=VisitedKeys(SecretBytes(node.dsrk("example.net")), node.emsk_name)
            ),
        )
        with HandoverKeyClient(
            origin_host="ar1.example.net",
            origin_realm="example.net",
            peer="keys.example.net",
            host="127.0.0.1",
            port=port,
            application_id=2128150530,
            vendor_id=99999,
            command_code=16777215,
        ) as client:
            answer = client.handover_key(PAR1, spi=info.spi)
            assert answer.ok, answer
            assert answer.spi == info.spi
            assert client.handover_key(PAR1, spi=0x0BADF00D).result_code == 5030
            # With vendor_id 99999, vendor 32473's code 1 is an AVP this service does not know: with the M bit it
            # is 5001 with the AVP in Failed-AVP, and no key (RFC 6733 §6.1.8, §7.1.5).
            request = client.new_request()
            request.append_avp(client.codec.new("FMIP-AR-Address", PAR1))
            request.append_avp(client.codec.new("Key-SPI", info.spi))
            request.append_avp(Avp(1, 32473, (1).to_bytes(4, "big"), 0xC0))
            refused = client.decode_key_answer(client.send(request))
            assert (refused.result_code, refused.failed_avps, refused.hk) == (5001, ((1, 32473),), None)
    finally:
        if handle is not None:
            handle.stop()
        runtime.close()
    assert [t for t in threading.enumerate() if t not in before and t.is_alive()] == []

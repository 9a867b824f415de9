"""A real ``aaa-fmip serve`` on a real redis-server, with the two routers of tests/router/_pair.py."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.router._pair import EMSK, MN_LLA, NAR, PAR, SESSION_ID
from tests.support.redis_server import RedisServer
from tests.support.service_proc import Credential, ServiceProcess, random_kek, render_config


@dataclass
class KeyServiceDeployment:
    service: ServiceProcess
    par: Credential
    nar: Credential
    aaa: Credential
    admin: Credential
    auditor: Credential

    def ingest(
        self, *, emsk: bytes = EMSK, session_id: bytes = SESSION_ID, mn_lla: bytes = MN_LLA
    ) -> dict[str, object]:
        body = {
            "emsk": emsk.hex(),
            "eap_session_id": session_id.hex(),
            "user_name": "mn@example.net",
            "calling_station_id": "-".join(f"{b:02X}" for b in mn_lla),
            "nas_identifier": "par",
            "lifetime": 3600,
        }
        with self.service.client(self.aaa) as client:
            response = client.post("/v1/sessions", json=body)
        assert response.status_code in (200, 201), response.text
        created: dict[str, object] = response.json()
        return created

    def revoke(self, mn_lla: bytes = MN_LLA) -> None:
        with self.service.client(self.aaa) as client:
            response = client.post(
                "/v1/sessions/revoke", json={"calling_station_id": "-".join(f"{b:02X}" for b in mn_lla)}
            )
        assert response.status_code == 200, response.text

    def router_client(self, credential: Credential, *, timeout: float = 2.0) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.service.url, headers=credential.headers, timeout=timeout)


@pytest.fixture(scope="module")
def key_service(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyServiceDeployment]:
    creds = {
        "par": Credential.new("ar", "par", [str(PAR)]),
        "nar": Credential.new("ar", "nar", [str(NAR)]),
        "aaa": Credential.new("aaa", "radius1"),
        "admin": Credential.new("admin", "admin1"),
        "auditor": Credential.new("auditor", "auditor1"),
    }
    config = render_config(
        store_url=redis_server.url, prefix="r" + secrets.token_hex(4), credentials=list(creds.values())
    )
    workdir = tmp_path_factory.mktemp("router-service")
    with ServiceProcess(workdir, config=config, env={"AAA_FMIP_KEK": random_kek()}) as service:
        yield KeyServiceDeployment(service, **creds)

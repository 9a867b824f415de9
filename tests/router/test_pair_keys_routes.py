"""``GET /v1/router-pairs/psk`` and ``aaa-fmip router ipsec-config`` against a real ``aaa-fmip serve`` on a real
redis-server (the two routers of tests/router/_pair.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.router._pair import NAR, PAR
from tests.router.conftest import KeyServiceDeployment
from tests.support.service_proc import run_cli

ROUTE = "/v1/router-pairs/psk"


def test_both_routers_get_the_same_key_scoped_and_audited(key_service: KeyServiceDeployment) -> None:
    with key_service.service.client(key_service.par) as par, key_service.service.client(key_service.nar) as nar:
        from_par = par.get(ROUTE, params={"peer": str(NAR)})
        from_nar = nar.get(ROUTE, params={"peer": str(PAR), "local": str(NAR)})
    assert from_par.status_code == 200, from_par.text
    assert from_par.headers["cache-control"] == "no-store"
    a, b = from_par.json(), from_nar.json()
    assert (a["local"], a["peer"], a["peer_router"]) == (str(PAR), str(NAR), "nar")
    assert (b["local"], b["peer"], b["peer_router"]) == (str(NAR), str(PAR), "par")
    assert a["keys"] == b["keys"] and a["epoch"] == b["epoch"] and a["period"] == 86_400
    assert a["epoch"] in [k["epoch"] for k in a["keys"]]
    assert all(len(bytes.fromhex(k["psk"])) == 32 for k in a["keys"])
    with key_service.service.client(key_service.auditor) as auditor:
        entries = auditor.get("/v1/audit", params={"event": "pair_psk.issued"}).json()["entries"]
    pairs = {(e["fields"]["ar"], e["fields"]["peer"]) for e in entries}
    assert {("par", "nar"), ("nar", "par")} <= pairs
    assert not any(k["psk"] in str(entries) for k in a["keys"])
    assert not any(k["psk"] in key_service.service.logs() for k in a["keys"])


@pytest.mark.parametrize(
    ("who", "params", "status", "reason"),
    [
        ("aaa", {"peer": str(NAR)}, 403, "wrong-role"),
        ("par", {"peer": "2001:db8:99::1"}, 404, "unknown-peer"),
        ("par", {"peer": str(PAR)}, 422, "same-router"),
        ("par", {"peer": str(NAR), "local": str(NAR)}, 403, "not-your-address"),
        ("par", {"peer": "not-an-address"}, 422, "invalid-request"),
        ("par", {}, 422, "invalid-request"),
        ("par", {"peer": "ff02::2"}, 422, "bad-address"),
    ],
)
def test_refusals_are_problems_with_a_reason(
    key_service: KeyServiceDeployment, who: str, params: dict[str, str], status: int, reason: str
) -> None:
    with key_service.service.client(getattr(key_service, who)) as client:
        response = client.get(ROUTE, params=params)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["reason"] == reason


def test_the_route_is_documented(key_service: KeyServiceDeployment) -> None:
    with key_service.service.client() as client:
        spec = client.get("/openapi.json").json()
    operation = spec["paths"][ROUTE]["get"]
    assert {"403", "404", "422", "503"} <= set(operation["responses"])
    assert [p["name"] for p in operation["parameters"]] == ["peer", "local"]
    assert "AR Pair IKE PSK@aaa-fmip.invalid" in operation["description"]


def _router_toml(tmp_path: Path, key_service: KeyServiceDeployment, *, neighbours: bool = True) -> Path:
    table = f"""
[[neighbours]]
ap = "02:aa:00:00:00:01"
nar_address = "{PAR}"
nar_prefix = "2001:db8:1::/64"
local = true

[[neighbours]]
ap = "02:bb:00:00:00:01"
nar_address = "{NAR}"
nar_prefix = "2001:db8:2::/64"
"""
    path = tmp_path / "par.toml"
    path.write_text(
        f"""[router]
addresses = ["{PAR}"]
replay_state = "{tmp_path / "replay.journal"}"

[service]
url = "{key_service.service.url}"
{table if neighbours else ""}""",
        encoding="utf-8",
    )
    return path


def test_ipsec_config_to_stdout_for_the_neighbour_routers(key_service: KeyServiceDeployment, tmp_path: Path) -> None:
    config = _router_toml(tmp_path, key_service)
    result = run_cli(
        "router", "ipsec-config", "--config", str(config), env={"AAA_FMIP_ROUTER_SERVICE__TOKEN": key_service.par.token}
    )
    assert result.returncode == 0, result.stderr
    with key_service.service.client(key_service.par) as par:
        grant = par.get(ROUTE, params={"peer": str(NAR)}).json()
    text = result.stdout
    assert text.count("connections {") == 1 and "fmip-nar {" in text and "fmip-par" not in text  # itself: no pair
    assert f"remote_addrs = {NAR}" in text and f"local_ts = {PAR}/128[135]" in text
    current = next(k for k in grant["keys"] if k["epoch"] == grant["epoch"])
    assert text.rstrip().endswith(f"secret = 0x{current['psk']}\n    }}\n}}".rstrip())  # the current key last
    assert result.stderr == ""


def test_ipsec_config_errors_name_the_cause_without_keys(key_service: KeyServiceDeployment, tmp_path: Path) -> None:
    config = _router_toml(tmp_path, key_service)
    token = {"AAA_FMIP_ROUTER_SERVICE__TOKEN": key_service.par.token}
    unknown = run_cli("router", "ipsec-config", "--config", str(config), "--peer", "2001:db8:99::1", env=token)
    assert unknown.returncode == 1 and "404 unknown-peer" in unknown.stderr and unknown.stdout == ""
    bad_token = run_cli(
        "router", "ipsec-config", "--config", str(config), env={"AAA_FMIP_ROUTER_SERVICE__TOKEN": "nope"}
    )
    assert bad_token.returncode == 1 and "401 invalid-token" in bad_token.stderr
    lonely = run_cli("router", "ipsec-config", "--config", str(_router_toml(tmp_path, key_service, neighbours=False)))
    assert lonely.returncode == 2 and "give --peer" in lonely.stderr
    not_mine = run_cli("router", "ipsec-config", "--config", str(config), "--local", str(NAR), env=token)
    assert not_mine.returncode == 2 and "--local" in not_mine.stderr

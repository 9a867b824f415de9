"""Router-pair keys against a real IKEv2 peer: strongSwan (charon-systemd, swanctl) in two network namespaces.

The key service (``aaa-fmip serve`` on a real redis-server) hands each router its pair PSK; ``aaa-fmip router
ipsec-config`` renders swanctl.conf from the router agent's configuration; each charon loads its router's file and
the two reach IKE_SA ESTABLISHED. This kernel has no ESP (``CONFIG_INET6_ESP``), so the CHILD_SA cannot be
installed: the tests go up to the IKE SA (PSK authentication both ways), which is what the keys decide.

Keys of other epochs come from the same IRK through the use case with a shifted clock (a store client on the
service's redis prefix and KEK): a wrong epoch fails authentication, and the rotation overlap works both ways.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv6Network
from pathlib import Path

import pytest

from aaa_fmip.crypto.wrap import KekRing, parse_kek
from aaa_fmip.model import AccessRouter, Caller
from aaa_fmip.router.ipsec import PairSecret, RouterPair, render_swanctl
from aaa_fmip.service.router_pairs import DEFAULT_OVERLAP, DEFAULT_PERIOD, RouterPairUseCases
from aaa_fmip.store.redis import RedisStore
from tests.router._netns import NAR, PAR
from tests.support.redis_server import RedisServer
from tests.support.service_proc import Credential, ServiceProcess, random_kek, render_config, run_cli
from tests.support.strongswan import PeerNamespaces, strongswan_missing

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root (CI runs these as root)"),
]

PAR_ROUTER = AccessRouter("par", frozenset({PAR}), key_address=PAR)
NAR_ROUTER = AccessRouter("nar", frozenset({NAR}), key_address=NAR)


@dataclass
class Deployment:
    service: ServiceProcess
    par: Credential
    nar: Credential
    store: RedisStore  # the service's redis prefix and KEK: the same IRK
    workdir: Path

    def use_cases(self, at: float) -> RouterPairUseCases:
        return RouterPairUseCases(self.store, lambda: at, (PAR_ROUTER, NAR_ROUTER))

    def router_toml(self, name: str) -> Path:
        """The router agent's configuration: its address, the service, and the neighbour table naming the peer."""
        me, other = (PAR, NAR) if name == "par" else (NAR, PAR)
        neighbours = ""
        for index, (address, local) in enumerate(((me, "true"), (other, "false")), start=1):
            network = IPv6Network(f"{address}/64", strict=False)
            neighbours += f"""
[[neighbours]]
ap = "02:00:00:00:00:0{index}"
nar_address = "{address}"
nar_prefix = "{network}"
local = {local}
"""
        path = self.workdir / f"{name}.toml"
        path.write_text(
            f"""[router]
addresses = ["{me}"]
replay_state = "{self.workdir / (name + ".journal")}"

[service]
url = "{self.service.url}"
{neighbours}""",
            encoding="utf-8",
        )
        return path


@pytest.fixture(scope="module")
def deployment(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    par = Credential.new("ar", "par", [str(PAR)])
    nar = Credential.new("ar", "nar", [str(NAR)])
    prefix = "ike" + secrets.token_hex(4)
    kek = random_kek()
    workdir = tmp_path_factory.mktemp("ipsec")
    config = render_config(store_url=redis_server.url, prefix=prefix, credentials=[par, nar])
    store = RedisStore.from_url(redis_server.url, KekRing(parse_kek(kek, source="test")), prefix=prefix)
    try:
        with ServiceProcess(workdir / "serve", config=config, env={"AAA_FMIP_KEK": kek}) as service:
            yield Deployment(service, par, nar, store, workdir)
    finally:
        store.close()


@pytest.fixture
def peers(tmp_path: Path) -> Iterator[PeerNamespaces]:
    missing = strongswan_missing()
    assert missing is None, missing
    net = PeerNamespaces(tmp_path, PAR, NAR).up()
    try:
        yield net
    finally:
        net.down()


def _ipsec_config(deployment: Deployment, name: str, credential: Credential) -> Path:
    out = deployment.workdir / f"{name}-swanctl.conf"
    result = run_cli(
        "router",
        "ipsec-config",
        "--config",
        str(deployment.router_toml(name)),
        "--output",
        str(out),
        env={"AAA_FMIP_ROUTER_SERVICE__TOKEN": credential.token},
    )
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    return out


def _render(deployment: Deployment, me: AccessRouter, peer: AccessRouter, at: float, path: Path) -> Path:
    """swanctl.conf for ``me`` from the use case at time ``at`` (other epochs than the service's clock)."""
    grant = deployment.use_cases(at).pair_psk(Caller(me.name, "ar", me), peer=next(iter(peer.addresses)))
    pair = RouterPair(
        grant.local, grant.peer, grant.peer_router, grant.epoch, tuple(PairSecret(k.epoch, k.psk) for k in grant.keys)
    )
    path.write_text(render_swanctl([pair]), encoding="utf-8")
    path.chmod(0o600)
    return path


def _fresh(peers: PeerNamespaces) -> None:
    for charon in peers.charons:
        charon.terminate_all()


def test_the_generated_configs_bring_up_the_ike_sa(deployment: Deployment, peers: PeerNamespaces) -> None:
    par_conf = _ipsec_config(deployment, "par", deployment.par)
    nar_conf = _ipsec_config(deployment, "nar", deployment.nar)
    par_text, nar_text = par_conf.read_text(), nar_conf.read_text()
    assert "fmip-nar {" in par_text and "fmip-par {" in nar_text
    assert f"local_ts = {PAR}/128[135]" in par_text and f"remote_ts = {NAR}/128[135]" in par_text
    par_ike, nar_ike = peers.charons
    par_ike.load(par_conf)
    nar_ike.load(nar_conf)
    result = par_ike.initiate("fmip-nar")
    assert result.returncode == 0, result.stdout[-3000:] + par_ike.logs()[-3000:]
    assert par_ike.established("fmip-nar") and nar_ike.established("fmip-par")
    assert "authentication of '2001:db8:2::1' with pre-shared key successful" in result.stdout
    # the SPD entries of RFC 5568 §10: trap policies for every MH between the two routers, in the kernel
    policies = subprocess.run(
        ["ip", "-n", peers.a_ns, "xfrm", "policy"], capture_output=True, text=True, timeout=20, check=True
    ).stdout
    for direction, (src, dst) in (("out", (PAR, NAR)), ("in", (NAR, PAR))):
        assert f"src {src}/128 dst {dst}/128 proto mobility-header \n\tdir {direction} " in policies, policies
    assert policies.count("proto esp reqid") >= 2 and "mode transport" in policies
    # and the other way round, on a fresh pair of SAs
    _fresh(peers)
    result = nar_ike.initiate("fmip-par")
    assert result.returncode == 0, result.stdout[-3000:]
    assert nar_ike.established("fmip-par") and par_ike.established("fmip-nar")


def test_a_key_of_another_epoch_fails_authentication(deployment: Deployment, peers: PeerNamespaces) -> None:
    par_ike, nar_ike = peers.charons
    par_ike.load(_ipsec_config(deployment, "par", deployment.par))
    two_epochs_on = time.time() + 2 * DEFAULT_PERIOD
    nar_ike.load(_render(deployment, NAR_ROUTER, PAR_ROUTER, two_epochs_on, deployment.workdir / "nar-later.conf"))
    result = par_ike.initiate("fmip-nar")
    assert result.returncode != 0
    assert "AUTHENTICATION_FAILED" in result.stdout, result.stdout[-3000:]
    assert not par_ike.established("fmip-nar") and not nar_ike.established("fmip-par")
    # one key, or two within the rotation overlap of an epoch boundary (service/router_pairs.py): none matches
    mismatch = r"tried [12] shared keys? for '2001:db8:2::1' - '2001:db8:1::1', but MAC mismatched"
    assert re.search(mismatch, nar_ike.logs()), nar_ike.logs()[-3000:]


def test_rotation_overlap_works_both_ways(deployment: Deployment, peers: PeerNamespaces) -> None:
    """PAR refreshed a minute before a boundary (keys e and e+1, initiates with e), NAR a minute after (keys e
    and e+1, initiates with e+1): each accepts what the other authenticates with."""
    boundary = float((20_000 + secrets.randbelow(1000)) * DEFAULT_PERIOD)
    par_ike, nar_ike = peers.charons
    work = deployment.workdir
    par_ike.load(_render(deployment, PAR_ROUTER, NAR_ROUTER, boundary - 60, work / "par-before.conf"))
    nar_ike.load(_render(deployment, NAR_ROUTER, PAR_ROUTER, boundary + 60, work / "nar-after.conf"))
    for initiator, ike, responder, other in (
        (par_ike, "fmip-nar", nar_ike, "fmip-par"),
        (nar_ike, "fmip-par", par_ike, "fmip-nar"),
    ):
        _fresh(peers)
        result = initiator.initiate(ike)
        assert result.returncode == 0, result.stdout[-3000:]
        assert initiator.established(ike) and responder.established(other)
    # Each side authenticates with its current epoch's key, which the renderer puts last: NAR, once past the
    # overlap with only epoch e+1, still accepts the PAR of after the boundary but not the PAR of before it.
    nar_ike.load(_render(deployment, NAR_ROUTER, PAR_ROUTER, boundary + DEFAULT_OVERLAP + 60, work / "nar-late.conf"))
    _fresh(peers)
    assert par_ike.initiate("fmip-nar").returncode != 0
    par_ike.load(_render(deployment, PAR_ROUTER, NAR_ROUTER, boundary + 60, work / "par-after.conf"))
    _fresh(peers)
    result = par_ike.initiate("fmip-nar")
    assert result.returncode == 0, result.stdout[-3000:]

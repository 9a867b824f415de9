"""The NAR's per-node link plumbing: the ``[prefixes]`` settings, radvd.conf as rendered (checked by the real
radvd's ``--configtest``), and radvd started, reloaded and stopped by :class:`aaa_fmip.router.p2p.Radvd`."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

import pytest

from aaa_fmip.errors import ConfigError
from aaa_fmip.router.config import load_settings
from aaa_fmip.router.p2p import P2PError, Radvd, RadvdSettings, render_radvd_conf
from tests.router._netns import in_netns
from tests.support.service_proc import run_cli

CONFIG = """
[router]
addresses = ["2001:db8:2::1"]
replay_state = "{state}"

[prefixes]
aggregate = "2001:db8:2::/48"
pool = "2001:db8:2:100::/56"
interfaces = ["pnp*", "ppp*"]
hold = 30

[[neighbours]]
ap = "02:aa:00:00:00:01"
nar_address = "2001:db8:1::1"
nar_prefix = "2001:db8:1::/64"
assigns_addresses = true
"""

needs_radvd = pytest.mark.skipif(shutil.which("radvd") is None, reason="radvd is installed by scripts/install-deps")


def _write(tmp_path: Path, text: str = CONFIG) -> Path:
    path = tmp_path / "router.toml"
    path.write_text(text.format(state=tmp_path / "replay"), encoding="utf-8")
    return path


def test_prefixes_section(tmp_path: Path) -> None:
    settings = load_settings(_write(tmp_path))
    params = settings.parameters()
    assert params.per_node is not None
    assert params.per_node.pool.size == 256 and params.per_node.interfaces == ("pnp*", "ppp*")
    assert params.per_node.hold == 30 and params.per_node.lifetime == 600
    neighbour = params.neighbours.nar_for(IPv6Address("2001:db8:1::9"))
    assert neighbour is not None and neighbour.assigns_addresses
    off = load_settings(_write(tmp_path, CONFIG.split("[prefixes]")[0]))
    assert off.parameters().per_node is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('pool = "2001:db8:2:100::/56"', 'pool = "2001:db8:3::/56"'), "not inside"),
        (("hold = 30", "prefix_length = 72"), "less than or equal to 64"),
        (("hold = 30", "prefix_length = 40"), "between"),
        (('aggregate = "2001:db8:2::/48"', ""), "needs its aggregate"),
    ],
)
def test_bad_prefixes_name_the_section(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(_write(tmp_path, CONFIG.replace(*change)))
    assert info.value.key.startswith("prefixes") and message in str(info.value)


def test_cli_check_shows_the_pool(tmp_path: Path) -> None:
    result = run_cli("router", "--config", str(_write(tmp_path)), "--check")
    assert result.returncode == 0, result.stderr
    assert "per-node prefixes: /64 from 2001:db8:2:100::/56 on pnp*, ppp*" in result.stdout


def test_render_radvd_conf(tmp_path: Path) -> None:
    settings = RadvdSettings(tmp_path, valid_lifetime=3600, preferred_lifetime=1800, router_lifetime=1800)
    text = render_radvd_conf(
        [
            ("pnp2", IPv6Network("2001:db8:2:101::/64")),
            ("pnp1", IPv6Network("2001:db8:2:100::/60")),
            ("a b", IPv6Network("2001:db8:2:102::/64")),
        ],
        settings,
    )
    assert text.index("interface pnp1 {") < text.index("interface pnp2 {")  # sorted: stable reload diffs
    assert "prefix 2001:db8:2:100::/64 {" in text  # the first /64 of a shorter per-node prefix: SLAAC needs /64
    assert "AdvValidLifetime 3600;" in text and "AdvPreferredLifetime 1800;" in text
    assert "MaxRtrAdvInterval 600;" in text and "AdvDefaultLifetime 1800;" in text
    assert "a b" not in text  # a name radvd's parser would split is left out
    if shutil.which("radvd"):
        path = tmp_path / "radvd.conf"
        path.write_text(text)
        check = subprocess.run(
            ["radvd", "--configtest", "-C", str(path), "-m", "stderr"], capture_output=True, text=True, timeout=20
        )
        assert check.returncode == 0, check.stdout + check.stderr


@needs_radvd
@pytest.mark.skipif(os.geteuid() != 0, reason="radvd needs root")
def test_radvd_started_reloaded_and_stopped(tmp_path: Path) -> None:
    async def scenario() -> None:
        settings = RadvdSettings(tmp_path / "radvd")
        radvd = Radvd(settings)
        one = render_radvd_conf([("pnpx0", IPv6Network("2001:db8:2:100::/64"))], settings)  # IgnoreIfMissing
        await radvd.apply(one)
        assert radvd.running and radvd.proc is not None
        pid = radvd.proc.pid
        assert int(settings.pid_path.read_text()) == pid
        await radvd.apply(
            render_radvd_conf(
                [("pnpx0", IPv6Network("2001:db8:2:100::/64")), ("pnpx1", IPv6Network("2001:db8:2:101::/64"))], settings
            )
        )
        assert radvd.running and radvd.proc.pid == pid and radvd.reloads == 1  # SIGHUP, same process
        with pytest.raises(P2PError, match="rejects"):
            await radvd.apply(one.replace("AdvSendAdvert on;", "AdvSendAdvert maybe;"))
        assert radvd.running and "pnpx1" in settings.config_path.read_text()  # the bad one never replaced it
        await radvd.apply(render_radvd_conf([], settings))  # no link left: radvd stops
        assert not radvd.running
        # an agent killed without stopping its radvd: the next one stops that radvd before starting its own
        settings.config_path.write_text(one)
        leftover = subprocess.Popen(
            ["radvd", "--nodaemon", "-C", str(settings.config_path), "-p", str(settings.pid_path), "-m", "stderr"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(250):
                if settings.pid_path.exists() and settings.pid_path.read_text().strip() == str(leftover.pid):
                    break
                await asyncio.sleep(0.02)
            again = Radvd(settings)
            await again.apply(one)
            assert leftover.wait(timeout=10) is not None and again.running
            await again.stop()
        finally:
            if leftover.poll() is None:
                leftover.kill()
                leftover.wait(timeout=10)

    namespace = "p2p" + secrets.token_hex(4)  # radvd runs in a namespace of its own, not on this host's links
    subprocess.run(["ip", "netns", "add", namespace], check=True, timeout=20)
    try:
        with in_netns(namespace):
            asyncio.run(scenario())
    finally:
        subprocess.run(["ip", "netns", "del", namespace], check=False, timeout=20)
    missing = Radvd(RadvdSettings(tmp_path / "none", binary=str(tmp_path / "no-radvd")))
    with pytest.raises(P2PError, match="cannot run"):
        asyncio.run(missing.apply(render_radvd_conf([("pnp0", IPv6Network("2001:db8:2:100::/64"))], missing.settings)))


def test_state_file_round_trip_and_damage(tmp_path: Path) -> None:
    from aaa_fmip.router.p2p import load_state, save_state
    from aaa_fmip.router.prefixes import PrefixPool, PrefixPoolConfig

    pool = PrefixPool(PrefixPoolConfig(IPv6Network("2001:db8:2::/48"), IPv6Network("2001:db8:2:100::/56")))
    pool.allocate(bytes.fromhex("020000000001"), 0.0, 60)
    pool.allocate(bytes.fromhex("020000000002"), 0.0, 60)
    pool.bind(bytes.fromhex("020000000002"), "pnp2", 1.0, 600)
    path = tmp_path / "state" / "prefixes.json"
    assert load_state(path) == []  # none yet
    save_state(path, pool.allocations())
    loaded = load_state(path)
    assert [(a.lla, a.prefix, a.interface, a.expires_at) for a in loaded] == [
        (a.lla, a.prefix, a.interface, a.expires_at) for a in pool.allocations()
    ]
    restored = PrefixPool(pool.config)
    assert restored.restore(load_state(path)) == pool.allocations()  # NCoA' recomputed to the same
    for damage in ("{", '{"version": 9, "allocations": []}', '{"version": 1, "allocations": [{"lla": "zz"}]}'):
        path.write_text(damage)
        assert load_state(path) == []

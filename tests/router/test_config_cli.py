"""The agent's settings (TOML + AAA_FMIP_ROUTER_* environment) and ``aaa-fmip router --check/--help``."""

from __future__ import annotations

from ipaddress import IPv6Address
from pathlib import Path

import pytest

from aaa_fmip.errors import ConfigError
from aaa_fmip.router.config import load_settings
from tests.support.service_proc import run_cli

CONFIG = """
[router]
addresses = ["2001:db8:1::1"]
access_prefixes = ["2001:db8:1::/64"]
replay_state = "{state}"

[service]
url = "http://127.0.0.1:9"
token = "from-the-file"

[[neighbours]]
ap = "02:bb:00:00:00:01"
nar_address = "2001:db8:2::1"
nar_prefix = "2001:db8:2::/64"
nar_lla = "02-cc-00-00-00-02"
"""


def _write(tmp_path: Path, text: str = CONFIG) -> Path:
    path = tmp_path / "router.toml"
    path.write_text(text.format(state=tmp_path / "replay"), encoding="utf-8")
    return path


def test_file_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AAA_FMIP_ROUTER_SERVICE__TOKEN", "from-the-environment")
    settings = load_settings(_write(tmp_path))
    assert settings.service.token.get_secret_value() == "from-the-environment"
    assert "from-the" not in repr(settings)
    params = settings.parameters(link_local=IPv6Address("fe80::1"), lla=bytes(6))
    nar = params.neighbours.lookup(bytes.fromhex("02bb00000001"))
    assert nar is not None and nar.nar_lla == bytes.fromhex("02cc00000002")
    assert params.neighbours.nar_for(IPv6Address("2001:db8:2::9")) == nar
    assert params.link_local == IPv6Address("fe80::1") and params.hi_retries == 3


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (('addresses = ["2001:db8:1::1"]', 'addresses = ["fe80::1"]'), "router.addresses"),
        (("nar_prefix = ", "nar_prefx = "), "neighbours.0"),
        (('ap = "02:bb:00:00:00:01"', 'ap = "zz"'), "neighbours"),
        (("[service]", '[keys]\nsource = "diameter"\n\n[service]'), "diameter"),
    ],
)
def test_bad_settings_name_the_field(tmp_path: Path, change: tuple[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(_write(tmp_path, CONFIG.replace(*change)))
    assert info.value.key.startswith(key)


def test_cli_check_and_help(tmp_path: Path) -> None:
    result = run_cli("router", "--config", str(_write(tmp_path)), "--check")
    assert result.returncode == 0, result.stderr
    assert "addresses: 2001:db8:1::1" in result.stdout and "neighbours: 1" in result.stdout
    assert "from-the-file" not in result.stdout + result.stderr
    missing = run_cli("router", "--config", str(tmp_path / "nope.toml"))
    assert missing.returncode == 2 and "configuration error" in missing.stderr
    helped = run_cli("router", "--help")
    assert "RFC 5568" in helped.stdout and "AAA_FMIP_ROUTER_" in helped.stdout


def test_invalid_toml_is_reported_under_config(tmp_path: Path) -> None:
    """A file that is not TOML names ``--config``, not a setting the file never reached."""
    with pytest.raises(ConfigError) as info:
        load_settings(_write(tmp_path, CONFIG.replace("[service]", "[service")))
    assert info.value.key == "--config" and "invalid TOML" in str(info.value)
    result = run_cli("router", "--config", str(_write(tmp_path, "[router\n")), "--check")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "--config" in result.stderr and "neighbours" not in result.stderr

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
        (("nar_prefix = ", "nar_prefx = "), "neighbours[0].nar_prefix"),
        (('ap = "02:bb:00:00:00:01"', 'ap = "zz"'), "neighbours[0].ap"),
        (('nar_lla = "02-cc-00-00-00-02"', 'nar_lla = "q"'), "neighbours[0].nar_lla"),
        (
            ('access_prefixes = ["2001:db8:1::/64"]', 'access_prefixes = ["2001:db8:1::1/64"]'),
            "router.access_prefixes[0]",
        ),
        (('token = "from-the-file"', "token = 3"), "service.token"),
        (("[service]", "hi_retries = 11\n\n[service]"), "router.hi_retries"),
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


@pytest.mark.parametrize(
    ("line", "key", "message"),
    [
        ('hi_retries = "3"', "router.hi_retries", "expected an integer"),  # strict: a TOML string is not a number
        ("replay_fsync = 1", "router.replay_fsync", "expected true or false"),
        ("lifetime_unit = 2", "router.lifetime_unit", "expected 1 or 4"),
        ("addresses = []", "router.addresses", "at least one address"),
    ],
)
def test_router_models_are_strict(tmp_path: Path, line: str, key: str, message: str) -> None:
    name = line.split(" = ")[0]
    text = "\n".join(x for x in CONFIG.splitlines() if not x.startswith(f"{name} = "))
    text = text.replace("[router]", f"[router]\n{line}")
    with pytest.raises(ConfigError) as info:
        load_settings(_write(tmp_path, text), {})
    assert info.value.key == key and str(info.value) == f"{key}: {message}"


def test_an_access_point_listed_twice_is_named(tmp_path: Path) -> None:
    second = CONFIG.split("[[neighbours]]")[1].replace("2001:db8:2:", "2001:db8:3:").replace("02:bb", "02-BB")
    with pytest.raises(ConfigError) as info:
        load_settings(_write(tmp_path, CONFIG + "\n[[neighbours]]" + second), {})
    assert info.value.key == "neighbours[1].ap" and "listed twice" in str(info.value)


def test_environment_values_and_names(tmp_path: Path) -> None:
    path = _write(tmp_path)
    env = {
        "AAA_FMIP_ROUTER_ROUTER__HI_RETRIES": "5",
        "AAA_FMIP_ROUTER_ROUTER__ADDRESSES": "2001:db8:1::1,2001:db8:1::2",
    }
    settings = load_settings(path, env)
    assert settings.router.hi_retries == 5 and len(settings.router.addresses) == 2
    assert load_settings(path, {"AAA_FMIP_ROUTER_ROUTER__LIFETIME_UNIT": "1"}).router.lifetime_unit == 1
    json_list = load_settings(path, {"AAA_FMIP_ROUTER_ROUTER__ADDRESSES": '["2001:db8:1::3"]'})
    assert json_list.router.addresses == (IPv6Address("2001:db8:1::3"),)
    with pytest.raises(ConfigError) as info:
        load_settings(path, {"AAA_FMIP_ROUTER_ROUTER__HI_RETRIES": "many"})
    assert str(info.value) == "router.hi_retries (from AAA_FMIP_ROUTER_ROUTER__HI_RETRIES): expected an integer"
    with pytest.raises(ConfigError) as info:
        load_settings(path, {"AAA_FMIP_ROUTER_SERVICE__TOKN": "x"})  # a typo must not fall back to the default
    assert info.value.key == "AAA_FMIP_ROUTER_SERVICE__TOKN"
    secret = "s3cret-token-value"
    with pytest.raises(ConfigError) as info:
        load_settings(path, {"AAA_FMIP_ROUTER_SERVICE__TOKEN": secret, "AAA_FMIP_ROUTER_KEYS__MAX_KEYS": "0"})
    assert info.value.key.startswith("keys.max_keys") and secret not in str(info.value)

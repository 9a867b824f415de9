"""aaa_fmip.config: the schema of docs/configuration.md, environment overrides, and errors that name the key."""

from __future__ import annotations

import hashlib
import ipaddress
from pathlib import Path

import pytest

from aaa_fmip.bootstrap import build_callers
from aaa_fmip.config import HostPort, Settings, load_settings, parse_host_port, resolve_config_path
from aaa_fmip.errors import ConfigError

TOKEN_A = hashlib.sha256(b"token-a").hexdigest()
TOKEN_B = hashlib.sha256(b"token-b").hexdigest()
TOKEN_C = hashlib.sha256(b"token-c").hexdigest()
KEK = "ab" * 32

FULL = f"""
[server]
listen = "[::1]:9443"

[store]
url = "redis://127.0.0.1:6379/2"
data_dir = "/var/lib/aaa-fmip"
timeout = 0.25
prefix = "site1"

[keys]
kek_file = "/etc/aaa-fmip/kek"
max_lifetime = 3600
lifetime_units = "seconds"

[[access_routers]]
name = "ar1"
addresses = ["2001:db8::1", "2001:db8:1::1"]
token_sha256 = "{TOKEN_A}"
diameter_identity = "ar1.example.net"
nas_identifier = "ar1"
nas_address = "192.0.2.1"

[[clients]]
name = "radius"
role = "aaa"
token_sha256 = "{TOKEN_B}"

[[clients]]
name = "audit"
role = "auditor"
token_sha256 = "{TOKEN_C}"

[diameter]
listen = "127.0.0.1:3869"
origin_host = "keys.example.net"
origin_realm = "example.net"
application_id = 16777301

[[diameter.peers]]
identity = "ar1.example.net"
role = "ar"

[[diameter.peers]]
identity = "aaa.home.example"
address = "198.51.100.7"
role = "home-eap-server"

[radius]
vendor_id = 32473
push_keys = false
store_timeout = 0.2
write_behind = false
write_behind_nice = 0

[radius.accounting]
listen = "127.0.0.1:1813"
secret = "testing123"
clients = ["127.0.0.1", "10.0.0.0/8"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "aaa-fmip.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Settings:
    return load_settings(write(tmp_path, text), env or {})


def config_error(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, env)
    return info.value


def test_no_file_gives_the_documented_defaults() -> None:
    s = load_settings(None, {})
    assert s.server.listen == HostPort("127.0.0.1", 8080)
    assert s.store.url == "" and s.store.embedded
    assert s.store.data_dir == Path("./aaa-fmip-data")
    assert s.store.timeout == 0.5 and s.store.prefix == "fmip"
    assert s.keys.kek_file is None and s.keys.kek is None
    assert s.keys.max_lifetime == 43200 and s.keys.lifetime_units == "4s"
    assert s.access_routers == () and s.clients == () and s.diameter is None
    assert s.radius.vendor_id == 32473 and s.radius.push_keys and s.radius.store_timeout == 0.3
    assert s.radius.write_behind and s.radius.write_behind_nice == 10
    assert s.radius.accounting is None
    assert s.source is None


def test_full_file(tmp_path: Path) -> None:
    s = load(tmp_path, FULL)
    assert s.server.listen == HostPort("::1", 9443) and str(s.server.listen) == "[::1]:9443"
    assert (s.store.url, s.store.data_dir, s.store.timeout, s.store.prefix) == (
        "redis://127.0.0.1:6379/2",
        Path("/var/lib/aaa-fmip"),
        0.25,
        "site1",
    )
    assert s.keys.kek_file == Path("/etc/aaa-fmip/kek") and s.keys.max_lifetime == 3600
    assert s.keys.lifetime_units == "seconds"
    (ar,) = s.access_routers
    assert ar.name == "ar1" and ar.token_sha256 == bytes.fromhex(TOKEN_A)
    assert ar.addresses == (ipaddress.IPv6Address("2001:db8::1"), ipaddress.IPv6Address("2001:db8:1::1"))
    assert (ar.diameter_identity, ar.nas_identifier, ar.nas_address) == (
        "ar1.example.net",
        "ar1",
        ipaddress.IPv4Address("192.0.2.1"),
    )
    router = ar.to_model()
    assert router.owns(ipaddress.IPv6Address("2001:db8:1::1")) and not router.owns(ipaddress.IPv6Address("::1"))
    assert [(c.name, c.role) for c in s.clients] == [("radius", "aaa"), ("audit", "auditor")]
    d = s.diameter
    assert d is not None and d.listen == HostPort("127.0.0.1", 3869)
    assert (d.origin_host, d.origin_realm, d.application_id, d.vendor_id, d.command_code) == (
        "keys.example.net",
        "example.net",
        16777301,
        32473,
        16777214,
    )
    assert [(p.identity, p.role, p.address) for p in d.peers] == [
        ("ar1.example.net", "ar", None),
        ("aaa.home.example", "home-eap-server", HostPort("198.51.100.7", 3868)),
    ]
    assert not s.radius.push_keys and s.radius.store_timeout == 0.2 and not s.radius.write_behind
    assert s.radius.write_behind_nice == 0
    acct = s.radius.accounting
    assert acct is not None and acct.secret.reveal() == b"testing123"
    assert acct.clients == (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("10.0.0.0/8"))
    assert s.source == tmp_path / "aaa-fmip.toml"


def test_secrets_never_show_in_repr(tmp_path: Path) -> None:
    s = load(tmp_path, FULL, {"AAA_FMIP_KEK": KEK})
    text = repr(s)
    assert TOKEN_A not in text and "testing123" not in text and KEK not in text
    assert bytes.fromhex(TOKEN_A).hex() not in text


def test_environment_overrides_every_kind_of_scalar(tmp_path: Path) -> None:
    env = {
        "AAA_FMIP_SERVER_LISTEN": "0.0.0.0:8081",
        "AAA_FMIP_STORE_URL": "redis://10.0.0.5:6379/0",
        "AAA_FMIP_STORE_TIMEOUT": "1.5",
        "AAA_FMIP_KEYS_MAX_LIFETIME": "600",
        "AAA_FMIP_KEYS_LIFETIME_UNITS": "4s",
        "AAA_FMIP_DIAMETER_ORIGIN_REALM": "example.org",
        "AAA_FMIP_RADIUS_PUSH_KEYS": "true",
        "AAA_FMIP_RADIUS_ACCOUNTING_CLIENTS": "192.0.2.10, 192.0.2.11",
        "AAA_FMIP_KEK": KEK,
        "AAA_FMIP_SOMETHING_ELSE": "ignored: not one of our sections",
        "HOME": "/root",
    }
    s = load(tmp_path, FULL, env)
    assert s.server.listen == HostPort("0.0.0.0", 8081)
    assert s.store.url == "redis://10.0.0.5:6379/0" and s.store.timeout == 1.5
    assert s.keys.max_lifetime == 600 and s.keys.lifetime_units == "4s"
    assert s.diameter is not None and s.diameter.origin_realm == "example.org"
    assert s.radius.push_keys
    assert s.radius.accounting is not None
    assert [str(n) for n in s.radius.accounting.clients] == ["192.0.2.10/32", "192.0.2.11/32"]
    assert s.keys.kek is not None and s.keys.kek.key.reveal() == bytes.fromhex(KEK)


def test_environment_alone_configures_an_external_store() -> None:
    s = load_settings(None, {"AAA_FMIP_STORE_URL": "redis://127.0.0.1:1/0", "AAA_FMIP_KEK": "site:" + KEK})
    assert not s.store.embedded and s.keys.kek is not None and s.keys.kek.key_id == "site"


def test_config_path_from_option_or_environment(tmp_path: Path) -> None:
    assert resolve_config_path(None, {}) is None
    assert resolve_config_path(None, {"AAA_FMIP_CONFIG": "/etc/a.toml"}) == Path("/etc/a.toml")
    assert resolve_config_path("b.toml", {"AAA_FMIP_CONFIG": "/etc/a.toml"}) == Path("b.toml")


@pytest.mark.parametrize(
    ("text", "listen"),
    [
        ("127.0.0.1:80", HostPort("127.0.0.1", 80)),
        ("[2001:db8::1]:8443", HostPort("2001:db8::1", 8443)),
        ("localhost:1", HostPort("localhost", 1)),
        ("keys.example.net:65535", HostPort("keys.example.net", 65535)),
    ],
)
def test_listen_forms(text: str, listen: HostPort) -> None:
    assert parse_host_port(text, key="server.listen") == listen


@pytest.mark.parametrize(
    "text", ["::1:8080", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", "[::1", "[nope]:1", "a b:1"]
)
def test_bad_listen(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_host_port(text, key="server.listen")
    assert info.value.key == "server.listen"


AR = f'[[access_routers]]\nname = "ar1"\naddresses = ["2001:db8::1"]\ntoken_sha256 = "{TOKEN_A}"\n'
AR2 = f'[[access_routers]]\nname = "ar2"\naddresses = ["2001:db8::2", "{{addr}}"]\ntoken_sha256 = "{TOKEN_B}"\n'


@pytest.mark.parametrize(
    ("text", "env", "key", "words"),
    [
        (AR + AR2.replace("{addr}", "192.0.2.1"), {}, "access_routers[1].addresses[1]", "not an IPv6 address"),
        (AR + AR2.replace("{addr}", "2001:db8::1"), {}, "access_routers[1].addresses[1]", "already belongs"),
        (AR.replace("2001:db8::1", "ff02::1"), {}, "access_routers[0].addresses[0]", "unicast"),
        (AR.replace('addresses = ["2001:db8::1"]', "addresses = []"), {}, "access_routers[0].addresses", "at least"),
        (AR.replace(TOKEN_A, "abc"), {}, "access_routers[0].token_sha256", "64 hex digits"),
        (
            AR.replace(f'token_sha256 = "{TOKEN_A}"\n', ""),
            {},
            "access_routers[0].token_sha256",
            "required (only a router that speaks Diameter only",
        ),
        (AR + AR.replace('"ar1"', '"ar9"').replace("::1", "::9"), {}, "access_routers[1].token_sha256", "same token"),
        (AR + AR.replace(TOKEN_A, TOKEN_B).replace("::1", "::9"), {}, "access_routers[1].name", "already used"),
        (AR + "colour = 1\n", {}, "access_routers[0].colour", "unknown setting"),
        (
            f'[[clients]]\nname = "x"\nrole = "ar"\ntoken_sha256 = "{TOKEN_A}"\n',
            {},
            "clients[0].role",
            "access_routers",
        ),
        (f'[[clients]]\nname = "x"\ntoken_sha256 = "{TOKEN_A}"\n', {}, "clients[0].role", "required"),
        ('[server]\nlisten = "::1:80"\n', {}, "server.listen", "brackets"),
        ("[server]\nlisten = 8080\n", {}, "server.listen", "string"),
        ('[keys]\nlifetime_units = "ms"\n', {}, "keys.lifetime_units", '"4s"'),
        ("[keys]\nmax_lifetime = 0\n", {}, "keys.max_lifetime", "must be in"),
        (
            "[keys]\n",
            {"AAA_FMIP_KEYS_MAX_LIFETIME": "12h"},
            "keys.max_lifetime (from AAA_FMIP_KEYS_MAX_LIFETIME)",
            "integer",
        ),
        ("", {"AAA_FMIP_STORE_URLL": "redis://x"}, "AAA_FMIP_STORE_URLL", "unknown setting"),
        ("", {"AAA_FMIP_KEK": "beef"}, "AAA_FMIP_KEK", "64 hex digits"),
        ('[store]\nurl = "http://x"\n', {}, "store.url", "scheme"),
        ('[store]\nurl = "redis://127.0.0.1/0"\n', {}, "keys.kek_file", "explicit key-encryption key"),
        ('[store]\nprefix = "a{b}"\n', {}, "store.prefix", "braces"),
        ("[store]\ntimeout = 0\n", {}, "store.timeout", "must be in"),
        ("[radius]\nwrite_behind_nice = 20\n", {}, "radius.write_behind_nice", "must be in"),
        (
            "",
            {"AAA_FMIP_RADIUS_WRITE_BEHIND_NICE": "-1"},
            "radius.write_behind_nice (from AAA_FMIP_RADIUS_WRITE_BEHIND_NICE)",
            "must be in",
        ),
        ("[stor]\n", {}, "stor", "unknown setting"),
        ("[diameter]\n", {}, "diameter.origin_host", "required"),
        (
            '[diameter]\norigin_host = "k.example"\norigin_realm = "example"\n'
            '[[diameter.peers]]\nidentity = "ar7.example"\nrole = "ar"\n',
            {},
            "diameter.peers[0].identity",
            "diameter_identity",
        ),
        (
            '[diameter]\norigin_host = "k.example"\norigin_realm = "example"\n'
            '[[diameter.peers]]\nidentity = "x.example"\nrole = "peer"\n',
            {},
            "diameter.peers[0].role",
            "home-eap-server",
        ),
        (
            "[diameter]\norigin_host = 'k.example'\norigin_realm = 'example'\ncommand_code = 16777216\n",
            {},
            "diameter.command_code",
            "must be in",
        ),
        ('[radius.accounting]\nclients = ["127.0.0.1"]\n', {}, "radius.accounting.secret", "exactly one"),
        ('[radius.accounting]\nsecret = "s"\nclients = ["nope"]\n', {}, "radius.accounting.clients[0]", "not an IP"),
        (
            '[radius.accounting]\nsecret_file = "/nonexistent/secret"\nclients = ["::1"]\n',
            {},
            "radius.accounting.secret_file",
            "cannot read",
        ),
        ('[radius]\npush_keys = "maybe"\n', {}, "radius.push_keys", "true or false"),
        (
            "",
            {"AAA_FMIP_RADIUS_WRITE_BEHIND": "sometimes"},
            "radius.write_behind (from AAA_FMIP_RADIUS_WRITE_BEHIND)",
            "true or false",
        ),
        ("[server\n", {}, "--config", "invalid TOML"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, text: str, env: dict[str, str], key: str, words: str) -> None:
    error = config_error(tmp_path, text, env)
    assert error.key == key
    assert str(error).startswith(f"{key}: ")
    assert words in str(error)


def test_a_diameter_only_router_needs_no_token(tmp_path: Path) -> None:
    text = (
        AR.replace(f'token_sha256 = "{TOKEN_A}"\n', 'diameter_identity = "ar1.example"\n')
        + AR2.replace("{addr}", "2001:db8::3")
        + '[diameter]\norigin_host = "k.example"\norigin_realm = "example"\n'
        + '[[diameter.peers]]\nidentity = "ar1.example"\nrole = "ar"\n'
    )
    path = tmp_path / "c.toml"
    path.write_text(text)
    settings = load_settings(path, {"AAA_FMIP_KEK": "00" * 32})
    ar1, ar2 = settings.access_routers
    assert (ar1.token_sha256, ar1.diameter_identity) == (None, "ar1.example")
    assert ar2.token_sha256 == bytes.fromhex(TOKEN_B)
    registry = build_callers(settings)
    assert registry.router_by_diameter_identity("ar1.example") is not None  # reachable over Diameter
    found = registry.authenticate("token-b")
    assert found is not None and found.name == "ar2"
    assert registry.authenticate("") is None  # and no token (not even an empty one) is ar1's
    assert registry.client_count == 0


def test_kek_value_is_never_in_the_error(tmp_path: Path) -> None:
    bad = "zz" * 32
    error = config_error(tmp_path, "", {"AAA_FMIP_KEK": bad})
    assert bad not in str(error)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path / "absent.toml", {})
    assert info.value.key == "--config" and "cannot read" in str(info.value)


def test_secret_file_and_with_listen(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    s = load(tmp_path, f'[radius.accounting]\nsecret_file = "{secret}"\nclients = ["::1"]\n')
    assert s.radius.accounting is not None and s.radius.accounting.secret.reveal() == b"s3cret"
    moved = s.with_listen("[::1]:1234")
    assert moved.server.listen == HostPort("::1", 1234) and moved.radius == s.radius
    with pytest.raises(ConfigError) as info:
        s.with_listen("nowhere")
    assert info.value.key == "--listen"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[keys]\nmax_lifetime = "600"\n', "keys.max_lifetime"),
        ('[store]\ntimeout = "0.5"\n', "store.timeout"),
        ('[radius]\npush_keys = "yes"\n', "radius.push_keys"),
        ('[[access_routers]]\nname = "a"\naddresses = "2001:db8::1"\n', "access_routers[0].addresses"),
    ],
)
def test_the_file_is_typed_strictly(tmp_path: Path, text: str, key: str) -> None:
    """Only environment values (always strings) are converted; in the file a quoted number is an error."""
    assert config_error(tmp_path, text).key == key


def test_send_section_from_file_and_environment(tmp_path: Path) -> None:
    from aaa_fmip.config import load_settings

    path = tmp_path / "c.toml"
    path.write_text("[send]\nmin_key_bits = 2048\nhk_lifetime = 600\n")
    s = load_settings(path, {"AAA_FMIP_SEND_TIMESTAMP_DELTA": "60"})
    assert (s.send.min_key_bits, s.send.max_key_bits, s.send.hk_lifetime, s.send.timestamp_delta) == (
        2048,
        4096,
        600,
        60.0,
    )


def test_send_section_errors_name_the_key(tmp_path: Path) -> None:
    from aaa_fmip.config import load_settings

    path = tmp_path / "c.toml"
    path.write_text("[send]\nmin_key_bits = 8192\nmax_key_bits = 2048\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, {})
    assert info.value.key == "send.min_key_bits"
    path.write_text("[send]\nhk_lifetime = 70000\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, {})
    assert info.value.key == "send.hk_lifetime"


def test_send_settings_reach_the_service(tmp_path: Path) -> None:
    from aaa_fmip.bootstrap import build_runtime

    path = tmp_path / "c.toml"
    path.write_text(f'[store]\ndata_dir = "{tmp_path / "data"}"\n[send]\nmin_key_bits = 2048\nhk_lifetime = 600\n')
    runtime = build_runtime(load_settings(path, {}))
    try:
        policy = runtime.service.send_policy
        assert (policy.min_key_bits, policy.hk_lifetime) == (2048, 600)
    finally:
        runtime.close()


def test_token_new_nas_address_makes_an_entry_the_loader_accepts(tmp_path: Path) -> None:
    import json

    from tests.support.service_proc import run_cli

    made = run_cli(
        "token", "new", "--role", "ar", "--name", "ar7", "--address", "2001:db8::7", "--nas-address", "192.0.2.7",
        "--json",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    entry = json.loads(made.stdout)["toml"]
    assert 'nas_address = "192.0.2.7"' in entry
    path = tmp_path / "c.toml"
    path.write_text(entry)
    (router,) = load_settings(path, {}).access_routers
    assert str(router.nas_address) == "192.0.2.7"
    bad = run_cli("token", "new", "--role", "ar", "--name", "x", "--address", "2001:db8::7", "--nas-address", "nope")
    assert bad.returncode == 2 and "--nas-address" in bad.stderr


def test_replay_durability_settings_from_file_and_environment(tmp_path: Path) -> None:
    s = load_settings(None, {})
    assert (s.store.allow_volatile_replay_state, s.store.min_appendfsync) == (False, "everysec")
    assert (s.store.replay_wait_replicas, s.store.replay_wait_timeout_ms) == (0, 100)
    s = load(
        tmp_path,
        '[store]\nmin_appendfsync = "always"\nreplay_wait_replicas = 2\nreplay_wait_timeout_ms = 250\ntimeout = 1.0\n',
        {"AAA_FMIP_STORE_ALLOW_VOLATILE_REPLAY_STATE": "true"},
    )
    assert s.store.allow_volatile_replay_state is True
    assert (s.store.min_appendfsync, s.store.replay_wait_replicas, s.store.replay_wait_timeout_ms) == ("always", 2, 250)
    assert config_error(tmp_path, '[store]\nmin_appendfsync = "no"\n').key == "store.min_appendfsync"
    assert (
        config_error(tmp_path, "[store]\nallow_volatile_replay_state = 1\n").key == "store.allow_volatile_replay_state"
    )
    # the WAIT holds the reply: it must end before the store's socket timeout does
    error = config_error(tmp_path, "[store]\nreplay_wait_replicas = 1\nreplay_wait_timeout_ms = 500\n")
    assert error.key == "store.replay_wait_timeout_ms" and "500 ms" in str(error)
    error = config_error(tmp_path, "", {"AAA_FMIP_STORE_REPLAY_WAIT_REPLICAS": "-1"})
    assert error.key.startswith("store.replay_wait_replicas")


def test_replay_durability_settings_reach_the_store(tmp_path: Path) -> None:
    from aaa_fmip.bootstrap import build_runtime

    path = tmp_path / "c.toml"
    path.write_text(f'[store]\ndata_dir = "{tmp_path / "data"}"\nmin_appendfsync = "always"\n')
    runtime = build_runtime(load_settings(path, {}))
    try:
        monitor = runtime.store.durability
        assert monitor is not None and monitor.policy.min_appendfsync == "always"
        # the embedded Redis fsyncs every second: durable by default, not under "always"
        report = runtime.store.check_durability()
        assert report is not None and not report.durable and "appendfsync everysec" in report.problems[0]
    finally:
        runtime.close()

"""docs/configuration.md against the loader: the reference block loads, shows the defaults, names every setting,
and every environment variable the document names is one the loader reads."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from aaa_fmip.config import ENV_CONFIG, ENV_PREFIX, DiameterSettings, Settings, load_settings
from aaa_fmip.config.sources import environment_names

DOC = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text(encoding="utf-8")
BLOCKS: list[str] = re.findall(r"^```toml\n(.*?)^```", DOC, flags=re.MULTILINE | re.DOTALL)
ROUTER_TOKEN = hashlib.sha256(b"reference-router").hexdigest()
CLIENT_TOKEN = hashlib.sha256(b"reference-client").hexdigest()


def reference_text() -> str:
    """The reference block with its placeholders filled in: a distinct digest per caller, a secret."""
    assert len(BLOCKS) == 1, "docs/configuration.md has one ```toml reference block"
    text: str = BLOCKS[0]
    assert text.count('token_sha256 = "…64 hex…"') == 2 and 'secret = "…"' in text
    text = text.replace('token_sha256 = "…64 hex…"', f'token_sha256 = "{ROUTER_TOKEN}"', 1)
    text = text.replace('token_sha256 = "…64 hex…"', f'token_sha256 = "{CLIENT_TOKEN}"', 1)
    return text.replace('secret = "…"', 'secret = "reference-secret"')


def load_reference(tmp_path: Path) -> Settings:
    path = tmp_path / "reference.toml"
    path.write_text(reference_text(), encoding="utf-8")
    return load_settings(path, {})


def test_the_reference_block_loads_and_its_values_are_the_defaults(tmp_path: Path) -> None:
    documented = load_reference(tmp_path)
    defaults = load_settings(None, {})
    for section in ("server", "store", "keys", "send", "audit", "limits"):
        assert getattr(documented, section) == getattr(defaults, section), section
    assert documented.radius.model_copy(update={"accounting": None}) == defaults.radius
    acct = documented.radius.accounting
    assert acct is not None and acct.secret.reveal() == b"reference-secret"
    assert [str(n) for n in acct.clients] == ["127.0.0.1/32"] and str(acct.listen) == "127.0.0.1:1813"
    d = documented.diameter
    assert d is not None and (d.origin_host, d.origin_realm) == ("keys.example.net", "example.net")
    default_diameter = DiameterSettings(origin_host="keys.example.net", origin_realm="example.net")
    assert d.model_copy(update={"peers": ()}) == default_diameter
    (peer,) = d.peers
    assert (peer.identity, peer.role, str(peer.address)) == ("ar1.example.net", "ar", "192.0.2.10:3868")
    (router,) = documented.access_routers
    assert router.token_sha256 == bytes.fromhex(ROUTER_TOKEN) and router.diameter_identity == "ar1.example.net"
    assert [str(a) for a in router.addresses] == ["2001:db8::1"] and str(router.nas_address) == "192.0.2.1"
    (client,) = documented.clients
    assert (client.name, client.role, client.token_sha256) == ("radius1", "aaa", bytes.fromhex(CLIENT_TOKEN))


def _documented_keys(model: type[BaseModel], where: str) -> list[tuple[str, str]]:
    """(table, key) for every field of ``model`` and of the tables below it."""
    found: list[tuple[str, str]] = []
    for name, field in model.model_fields.items():
        found.append((where, name))
        annotation: Any = field.annotation
        for candidate in (annotation, *getattr(annotation, "__args__", ())):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                found += _documented_keys(candidate, f"{where}.{name}" if where else name)
    return found


def _tables(text: str) -> dict[str, set[str]]:
    """The keys under each table header of the block, those in comments included (``# or secret_file = ...``)."""
    tables: dict[str, set[str]] = {"": set()}
    current = ""
    for line in text.splitlines():
        header = re.match(r"^\[\[?([\w.]+)\]\]?", line)
        if header:
            current = header.group(1)
            tables.setdefault(current, set())
        else:
            tables[current].update(re.findall(r"(?:^|[#\s])(\w+) = ", line))
    return tables


def test_the_reference_block_names_every_setting() -> None:
    """A setting added to a section without a line in its table of the reference fails here (commented lines
    count: a few settings are alternatives or role-specific, such as ``secret_file`` and ``mihf_ids``)."""
    tables = _tables(BLOCKS[0])
    missing = [
        f"{table}.{key}" if table else key
        for table, key in _documented_keys(Settings, "")
        if key != "kek"  # AAA_FMIP_KEK only, documented under "The data directory and the KEK"
        and (f"{table}.{key}" if table else key) not in tables
        and key not in tables.get(table, set())
    ]
    assert missing == []


def test_every_documented_variable_is_read() -> None:
    read = {name for name, _, _ in environment_names(Settings, ENV_PREFIX)} | {ENV_CONFIG}
    documented = set(re.findall(r"`(AAA_FMIP_[A-Z_]+)`", DOC)) - {"AAA_FMIP_STORE_URLL"}  # the typo example
    assert len(documented) > 30
    assert sorted(documented - read) == []
    assert {"AAA_FMIP_RADIUS_ACCOUNTING_SECRET", "AAA_FMIP_RADIUS_ACCOUNTING_SECRET_FILE"} <= read


@pytest.mark.parametrize(
    ("name", "value", "check"),
    [
        ("AAA_FMIP_RADIUS_ACCOUNTING_SECRET", "from-env", lambda s: s.radius.accounting.secret.reveal() == b"from-env"),
        ("AAA_FMIP_RADIUS_ACCOUNTING_LISTEN", "[::1]:1814", lambda s: str(s.radius.accounting.listen) == "[::1]:1814"),
        ("AAA_FMIP_LIMITS_RATE_LIMIT", "off", lambda s: s.limits.rate_limit is False),
        ("AAA_FMIP_DIAMETER_APPLICATION_ID", "0x7ED90002", lambda s: s.diameter.application_id == 0x7ED90002),
        (
            "AAA_FMIP_AUDIT_EXPORT_FILE",
            "/srv/trail.jsonl",
            lambda s: str(s.audit.export_file) == "/srv/trail.jsonl",
        ),
    ],
)
def test_variables_override_the_reference(tmp_path: Path, name: str, value: str, check: Any) -> None:
    path = tmp_path / "reference.toml"
    path.write_text(reference_text(), encoding="utf-8")
    assert check(load_settings(path, {name: value}))

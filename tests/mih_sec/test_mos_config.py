"""The ``mos`` client role in the configuration: bound to MIHF-IDs, each MIHF-ID to one MoS token."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aaa_fmip.bootstrap import build_callers
from aaa_fmip.config import load_settings
from aaa_fmip.errors import ConfigError
from tests.support.service_proc import run_cli

T1, T2 = "1" * 64, "2" * 64


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "c.toml"
    path.write_text(text, encoding="utf-8")
    return load_settings(path, {})


def client(name: str, role: str, token: str, mihf_ids: str | None = None) -> str:
    extra = f"mihf_ids = {mihf_ids}\n" if mihf_ids is not None else ""
    return f'[[clients]]\nname = "{name}"\nrole = "{role}"\ntoken_sha256 = "{token}"\n{extra}\n'


def test_mos_clients_become_callers_bound_to_their_mihf_ids(tmp_path: Path) -> None:
    text = client("mos1", "mos", T1, '["mos1.example.net", "mos-is@example.net"]') + client("a", "aaa", T2)
    settings = load(tmp_path, text)
    registry = build_callers(settings)  # type: ignore[arg-type]
    mos = next(c for _, c in registry._tokens if c.name == "mos1")
    assert mos.role == "mos" and mos.mihf_ids == frozenset({"mos1.example.net", "mos-is@example.net"})
    aaa = next(c for _, c in registry._tokens if c.name == "a")
    assert aaa.mihf_ids == frozenset()


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        (client("m", "mos", T1), "clients[0].mihf_ids", "required"),
        (client("m", "mos", T1, "[]"), "clients[0].mihf_ids", "at least one"),
        (client("m", "mos", T1, '["a b"]'), "clients[0].mihf_ids[0]", "spaces"),
        (client("m", "mos", T1, '["mös"]'), "clients[0].mihf_ids[0]", "ASCII"),
        (client("m", "mos", T1, "[1]"), "clients[0].mihf_ids[0]", "MIHF-ID"),
        (client("m", "mos", T1, '["x", "x"]'), "clients[0].mihf_ids[1]", "duplicate"),
        (client("a", "aaa", T1, '["x"]'), "clients[0].mihf_ids", 'only a client of role "mos"'),
        (client("m", "mos", T1, '["x"]') + client("n", "mos", T2, '["x"]'), "clients[1].mihf_ids[0]", "already"),
        (client("m", "moss", T1, '["x"]'), "clients[0].role", '"mos"'),
    ],
)
def test_bad_mos_entries(tmp_path: Path, text: str, key: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load(tmp_path, text)
    assert key in str(info.value)


def test_token_new_makes_a_mos_entry_the_loader_accepts(tmp_path: Path) -> None:
    done = run_cli("token", "new", "--role", "mos", "--name", "mos1", "--mihf-id", "mos1.example.net", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert 'mihf_ids = ["mos1.example.net"]' in out["toml"]
    settings = load(tmp_path, out["toml"])
    (entry,) = settings.clients  # type: ignore[attr-defined]
    assert entry.role == "mos" and entry.mihf_ids == ("mos1.example.net",)
    missing = run_cli("token", "new", "--role", "mos", "--name", "mos1")
    assert missing.returncode != 0 and "--mihf-id" in missing.stderr
    wrong = run_cli("token", "new", "--role", "aaa", "--name", "r", "--mihf-id", "x")
    assert wrong.returncode != 0 and "only role mos" in wrong.stderr

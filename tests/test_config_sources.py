"""aaa_fmip.config.sources: environment text converted per field type, variables derived from the models,
settings that only the environment may give, and errors that never carry a value."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pytest
from pydantic import BaseModel, Field, ValidationError

from aaa_fmip.config import ENV_PREFIX, Settings, load_settings
from aaa_fmip.config.fields import SECTION
from aaa_fmip.config.sources import environment_names, key_of
from aaa_fmip.errors import ConfigError

KEK = "ab" * 32


def error(text: str | None, env: dict[str, str], tmp_path: Path) -> ConfigError:
    path = None
    if text is not None:
        path = tmp_path / "c.toml"
        path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env)
    return info.value


@pytest.mark.parametrize(
    ("value", "expected"), [("true", True), ("1", True), ("Yes", True), ("on", True), ("0", False), ("OFF", False)]
)
def test_booleans_from_the_environment(value: str, expected: bool) -> None:
    assert load_settings(None, {"AAA_FMIP_RADIUS_PUSH_KEYS": value}).radius.push_keys is expected


def test_numbers_from_the_environment() -> None:
    s = load_settings(
        None,
        {
            "AAA_FMIP_DIAMETER_ORIGIN_HOST": "k.example",
            "AAA_FMIP_DIAMETER_ORIGIN_REALM": "example",
            "AAA_FMIP_DIAMETER_VENDOR_ID": " 0x7ED9 ",
            "AAA_FMIP_LIMITS_HEADER_TIMEOUT": "2.5",
            "AAA_FMIP_LIMITS_MAX_CONNECTIONS": "100",
        },
    )
    assert s.diameter is not None and s.diameter.vendor_id == 0x7ED9
    assert (s.limits.header_timeout, s.limits.max_connections) == (2.5, 100)


def test_bounds_are_named_as_documented(tmp_path: Path) -> None:
    assert str(error("[limits]\nheader_timeout = 0\n", {}, tmp_path)) == "limits.header_timeout: must be in 0.1..3600"
    assert (
        str(error(None, {"AAA_FMIP_LIMITS_CALLER_BURST": "0"}, tmp_path))
        == "limits.caller_burst (from AAA_FMIP_LIMITS_CALLER_BURST): must be in 1..1000000000"
    )


def test_arrays_of_tables_come_from_the_file_only(tmp_path: Path) -> None:
    names = {name for name, _, _ in environment_names(Settings, ENV_PREFIX)}
    assert not any(
        n.startswith(("AAA_FMIP_ACCESS_ROUTERS", "AAA_FMIP_CLIENTS", "AAA_FMIP_DIAMETER_PEERS")) for n in names
    )
    assert load_settings(None, {"AAA_FMIP_ACCESS_ROUTERS": "[]", "AAA_FMIP_CLIENTS": "x"}).access_routers == ()
    assert error(None, {"AAA_FMIP_DIAMETER_PEERS": "x"}, tmp_path).key == "AAA_FMIP_DIAMETER_PEERS"  # a section's


def test_a_field_added_to_a_section_is_settable_from_the_environment() -> None:
    class Perf(BaseModel):
        model_config = SECTION
        workers: Annotated[int, Field(ge=1, le=64)] = 1

    class Extended(BaseModel):
        model_config = SECTION
        perf: Perf = Field(default_factory=Perf)

    assert [(n, p) for n, p, _ in environment_names(Extended, "X_")] == [("X_PERF_WORKERS", ("perf", "workers"))]


def test_a_bad_kek_is_never_echoed_nor_chained(tmp_path: Path) -> None:
    bad = "zz" * 32
    e = error(None, {"AAA_FMIP_KEK": bad}, tmp_path)
    assert e.key == "AAA_FMIP_KEK" and bad not in str(e) and bad not in repr(e.args)
    assert e.__cause__ is None and e.__suppress_context__
    with pytest.raises(ValidationError) as info:  # the model itself, validated directly, hides its input too
        Settings.model_validate({"keys": {"kek": bad}})
    assert bad not in str(info.value)


def test_the_kek_and_the_source_are_not_file_settings(tmp_path: Path) -> None:
    e = error(f'[keys]\nkek = "{KEK}"\n', {}, tmp_path)
    assert e.key == "keys.kek" and "AAA_FMIP_KEK" in str(e) and KEK not in str(e)
    e = error('source = "/elsewhere.toml"\n', {}, tmp_path)
    assert e.key == "source" and "unknown setting" in str(e)


def test_keys_name_items_by_index() -> None:
    assert key_of(("access_routers", 1, "addresses", 0)) == "access_routers[1].addresses[0]"
    assert key_of(("radius", "accounting", "secret")) == "radius.accounting.secret"


def test_a_variable_does_not_hide_a_file_value_that_is_not_a_table(tmp_path: Path) -> None:
    assert error("radius = 3\n", {"AAA_FMIP_RADIUS_PUSH_KEYS": "false"}, tmp_path).key == "radius"
    e = error("[radius]\naccounting = 3\n", {"AAA_FMIP_RADIUS_ACCOUNTING_SECRET": "s"}, tmp_path)
    assert str(e) == "radius.accounting: expected a table"


def test_router_pair_epochs_from_file_and_environment(tmp_path: Path) -> None:
    s = load_settings(None, {"AAA_FMIP_ROUTER_PAIRS_PERIOD": "3600", "AAA_FMIP_ROUTER_PAIRS_OVERLAP": "600"})
    assert (s.router_pairs.period, s.router_pairs.overlap) == (3600, 600)
    assert str(error("[router_pairs]\nperiod = 3600\noverlap = 1800\n", {}, tmp_path)) == (
        "router_pairs.overlap: must be shorter than half of router_pairs.period (3600)"
    )

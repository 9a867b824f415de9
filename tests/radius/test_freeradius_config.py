"""``aaa-fmip freeradius-config``: what it prints, and what it writes into a raddb (idempotently)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from aaa_fmip.errors import ConfigError
from aaa_fmip.radius import freeradius_config as frc
from tests.support.freeradius import DIST_RADDB, require_freeradius
from tests.support.service_proc import run_cli


def test_prints_module_policy_site_dictionary_and_environment(tmp_path: Path) -> None:
    config = tmp_path / "aaa-fmip.toml"
    config.write_text("[radius]\nvendor_id = 4242\n")
    result = run_cli("freeradius-config", "--config", str(config), "--python-path", "/opt/aaa-fmip/site-packages")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "python3 aaa_fmip {" in out and "pass_all_vps_dict = yes" in out
    assert "module = aaa_fmip.radius.freeradius_module" in out
    assert f'config_file = "{config}"' in out
    assert 'prepend_sys_path = "/opt/aaa-fmip/site-packages"' in out
    assert "aaa_fmip_nas_source" in out
    assert "VENDOR\t\tAAA-FMIP\t\t\t4242" in out
    assert 'Environment="PYTHONPATH=/opt/aaa-fmip/site-packages"' in out


def test_dictionary_only() -> None:
    result = run_cli("freeradius-config", "--dictionary", "--vendor-id", "77")
    assert result.returncode == 0
    assert result.stdout.startswith("# -*- text -*-") and "AAA-FMIP\t\t\t77" in result.stdout
    assert run_cli("freeradius-config", "--dictionary", "--vendor-id", "0").returncode == 2


def test_rest_mode_prints_the_rest_module() -> None:
    result = run_cli("freeradius-config", "--mode", "rest", "--rest-url", "https://keys.example:8443")
    assert result.returncode == 0, result.stderr
    assert 'connect_uri = "https://keys.example:8443"' in result.stdout
    assert "$ENV{AAA_FMIP_REST_TOKEN}" in result.stdout
    assert "/v1/sessions/revoke" in result.stdout


def _raddb(tmp_path: Path) -> Path:
    require_freeradius()
    raddb = tmp_path / "raddb"
    shutil.copytree(DIST_RADDB, raddb, symlinks=True)
    return raddb


def test_install_is_idempotent_and_switches_modes(tmp_path: Path) -> None:
    raddb = _raddb(tmp_path)
    for _ in range(2):
        result = run_cli("freeradius-config", "--raddb", str(raddb), "--python-path", "/x")
        assert result.returncode == 0, result.stderr
    site = (raddb / "sites-available" / "default").read_text()
    assert site.count(frc.BEGIN_MARK) == 2  # one block in post-auth, one in accounting
    post_auth = site[site.index("\npost-auth {") :]
    assert re.match(r"\npost-auth \{\n\t# aaa-fmip begin[^\n]*\n\taaa_fmip_nas_source\n\taaa_fmip\n", post_auth)
    assert (raddb / "mods-enabled" / "aaa_fmip").resolve() == (raddb / "mods-available" / "aaa_fmip").resolve()
    dictionary = (raddb / "dictionary").read_text()
    assert dictionary.count("$INCLUDE dictionary.aaa-fmip") == 1

    assert run_cli("freeradius-config", "--raddb", str(raddb), "--mode", "rest").returncode == 0
    site = (raddb / "sites-available" / "default").read_text()
    assert site.count(frc.BEGIN_MARK) == 2 and "aaa_fmip_rest_post_auth" in site and "\taaa_fmip\n" not in site
    assert not (raddb / "mods-enabled" / "aaa_fmip").exists()
    assert (raddb / "mods-enabled" / "aaa_fmip_rest").exists()


def test_install_refuses_what_is_not_a_raddb(tmp_path: Path) -> None:
    result = run_cli("freeradius-config", "--raddb", str(tmp_path))
    assert result.returncode == 2 and "no radiusd.conf" in result.stderr
    raddb = _raddb(tmp_path)
    assert run_cli("freeradius-config", "--raddb", str(raddb), "--site", "nope").returncode == 2


def test_text_helpers() -> None:
    with pytest.raises(ConfigError):
        frc.rest_module_text("ftp://x")
    with pytest.raises(ConfigError):
        frc.python_module_text(frc.PythonModuleOptions(python_path=('/a"b',)))
    assert frc.default_python_path()[0] == str(Path(frc.__file__).resolve().parents[2])


def test_version_warning(tmp_path: Path) -> None:
    fake = tmp_path / "rlm_python3.so"
    fake.write_bytes(b"\x7fELF...libpython3.9.so.1.0...")
    warning = frc.version_warning(fake)
    assert warning is not None and "embeds Python 3.9" in warning
    assert "made with /usr/bin/python3.9 (/usr/bin/python3.9 -m venv /opt/aaa-fmip)" in warning
    assert frc.version_warning(tmp_path / "missing.so") is None

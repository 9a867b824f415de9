"""The vendor dictionary: one rendering, read by pyrad and by FreeRADIUS (for the default and another vendor id)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from pyrad.dictionary import Dictionary

from aaa_fmip.radius.dictionary import (
    ATTRIBUTE_NAMES,
    DEFAULT_VENDOR_ID,
    VendorAttribute,
    pyrad_dictionary,
    render_dictionary,
)
from aaa_fmip.radius.freeradius_config import install_dictionary
from tests.support.freeradius import FreeRadius, Pki, require_freeradius

REPO = Path(__file__).resolve().parents[2]


def test_shipped_file_is_the_default_rendering() -> None:
    assert (REPO / "dictionaries" / "dictionary.aaa-fmip").read_text() == render_dictionary(DEFAULT_VENDOR_ID)


def test_pyrad_reads_the_shipped_file() -> None:
    d = Dictionary(str(REPO / "dictionaries" / "dictionary.aaa-fmip"))
    hk = d.attributes[ATTRIBUTE_NAMES[VendorAttribute.HK]]
    assert (hk.vendor, hk.code, hk.type, hk.encrypt) == ("AAA-FMIP", 1, "octets", 2)
    assert d.vendors["AAA-FMIP"] == DEFAULT_VENDOR_ID
    assert d.attributes["AAA-FMIP-AR-Address"].type == "ipv6addr"
    assert d.attributes["AAA-FMIP-HK-Algorithm"].values.GetForward("HMAC-SHA1-96") == (1).to_bytes(4, "big")


def test_pyrad_dictionary_with_another_vendor_id() -> None:
    d = pyrad_dictionary(4242)
    assert d.vendors["AAA-FMIP"] == 4242
    assert d.attributes["Acct-Status-Type"].values.GetForward("Stop") == (2).to_bytes(4, "big")


@pytest.mark.parametrize("vendor_id", [0, -1, 2**24, True])
def test_vendor_id_range(vendor_id: int) -> None:
    with pytest.raises(ValueError):
        render_dictionary(vendor_id)


@pytest.mark.parametrize("vendor_id", [DEFAULT_VENDOR_ID, 4242])
def test_freeradius_loads_the_dictionary(vendor_id: int, pki: Pki, tmp_path: Path) -> None:
    radius = FreeRadius(tmp_path, pki, mode=None).prepare()
    install_dictionary(radius.raddb, vendor_id)
    result = subprocess.run(
        [require_freeradius(), "-C", "-x", "-d", str(radius.raddb)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # radclient (FreeRADIUS' own client library) resolves our names with the same dictionary tree.
    out = subprocess.run(
        ["radclient", "-x", "-d", str(radius.raddb), "-D", "/usr/share/freeradius", "-c", "1", "-t", "1", "-r", "1",
         "127.0.0.1:9", "auth", "x"],
        input='User-Name = "u"\nAAA-FMIP-SPI = 7\nAAA-FMIP-HK-Name = 0x0102030405060708\n',
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert "AAA-FMIP-SPI = 7" in out.stdout, out.stdout + out.stderr

"""The shipped Wireshark dictionary, checked by Wireshark itself on traffic that really went over loopback.

dumpcap records one Handover-Key exchange (CER/CEA, a key query, an FBU verification) between an AR client and
our node; tshark decodes it first with its own dictionary only (our command, application and vendor AVPs are
unknown there) and then with a data directory that adds ``dictionaries/wireshark-aaa-fmip.xml`` the way
docs/diameter.md tells operators to (Custom.xml including it).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import pytest

from aaa_fmip import mn
from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.diameter import wireshark
from aaa_fmip.diameter.dictionary import DiameterDictionary, default_dictionary_path, load_dictionary
from aaa_fmip.diameter.server import PeerConfig
from aaa_fmip.model import SessionRequest, VisitedKeys
from tests.diameter.peers import MobileNode
from tests.diameter.stack import AAA, NCOA, PAR1, PCOA, REALM, start_stack
from tests.diameter.tshark import LoopbackCapture, tshark_text
from tests.support.redis_server import RedisServer


def test_shipped_file_is_rendered_from_the_dictionary() -> None:
    shipped = default_dictionary_path().parent / wireshark.FILE_NAME
    assert shipped.read_text(encoding="utf-8") == wireshark.render(load_dictionary())


@pytest.fixture(scope="module")
def capture(redis_server: RedisServer, dictionary: DiameterDictionary) -> Iterator[tuple[Path, int]]:
    with tempfile.TemporaryDirectory(prefix="diameter-capture-") as directory:
        stack = start_stack(redis_server.url, dictionary, (PeerConfig("ar1.fmip.test", "ar"),))
        try:
            with LoopbackCapture(stack.port, Path(directory)) as cap:
                node = MobileNode("wanda@home.test")
                info = stack.service.ingest_session(
                    AAA,
                    SessionRequest(
                        user_name=node.user_name,
                        keys=VisitedKeys(SecretBytes(node.dsrk(REALM)), node.emsk_name),
                        lifetime=600,
                    ),
                )
                with stack.client("ar1.fmip.test") as ar1:
                    assert ar1.handover_key(PAR1, spi=info.spi).ok
                    master = mn.derive_master_key(dsrk=node.dsrk(REALM), emsk_name=node.emsk_name)
                    fbu = mn.build_fbu(
                        mn.derive_handover_key(master, PAR1),
                        sequence=1,
                        lifetime_seconds=30,
                        pcoa=PCOA,
                        ncoa=NCOA,
                        par=PAR1,
                    )
                    assert ar1.verify_fbu(ar_address=PAR1, source=PCOA, mh=fbu).accepted
                # The client's stop ends with DPR/DPA (RFC 6733 §5.4): once both are captured, so is the rest.
                cap.wait_for("diameter.cmd.code == 282", 2)
                cap.wait_for("diameter.cmd.code == 257", 2)  # and the CER/CEA that opened the connection
        finally:
            stack.stop()
        yield cap.path, stack.port


@pytest.mark.slow
def test_tshark_without_our_dictionary_shows_them_unknown(capture: tuple[Path, int]) -> None:
    text = tshark_text(*capture)
    assert "Command Code: Capabilities-Exchange (257)" in text  # it is Diameter to tshark, ...
    assert "val=Unknown (2128150529)" in text  # ... but our application, ...
    assert "AVP: Unknown(2) l=30 f=VM- vnd=32473" in text  # ... our vendor AVPs ...
    assert "AVP: Unknown(581) l=100 f=-M-" in text  # ... and the RFC 6734 Key AVP are unknown
    for name in ("aaa-fmip Handover-Key", "FMIP-AR-Address", "Keying-Material"):
        assert name not in text


@pytest.mark.slow
def test_tshark_names_our_command_application_and_avps(
    capture: tuple[Path, int], dictionary: DiameterDictionary
) -> None:
    with tempfile.TemporaryDirectory(prefix="wireshark-data-") as directory:
        os.chmod(directory, 0o755)
        data_dir = wireshark.overlay(Path(directory) / "wireshark", dictionary)
        text = tshark_text(*capture, data_dir=data_dir)
    for line in (
        "Command Code: Handover-Key (16777214)",
        "ApplicationId: aaa-fmip Handover-Key (2128150529)",
        "AVP: Auth-Application-Id(258) l=12 f=-M- val=aaa-fmip Handover-Key (2128150529)",
        "AVP: Vendor-Specific-Application-Id(260) l=32 f=-M-",  # CER/CEA (RFC 6733 §6.11)
        "AVP: FMIP-Request-Type(1) l=16 f=VM- vnd=aaa-fmip val=HANDOVER_KEY (1)",
        "AVP: FMIP-AR-Address(2) l=30 f=VM- vnd=aaa-fmip val=000220010db8000100000000000000000001",
        "AVP: Key(581) l=100 f=-M-",
        "Key-Type: FMIPv6-HK (32473)",
        "AVP: Keying-Material(583) l=40 f=-M-",
        "AVP: Key-SPI(585) l=12 f=-M-",
        "AVP: FMIP-Mobility-Header(5) l=68 f=VM- vnd=aaa-fmip",
        "AVP: FMIP-FBU-Verdict(6) l=16 f=VM- vnd=aaa-fmip val=ACCEPTED (1)",
        "AVP: FMIP-Auth-Algorithm(11) l=16 f=VM- vnd=aaa-fmip val=HMAC-SHA1-96 (1)",
    ):
        assert line in text, line
    assert "Unknown" not in text
    assert "Malformed" not in text


def test_render_follows_the_configured_ids_and_is_well_formed() -> None:
    d = load_dictionary().with_overrides(application_id=2128150530, vendor_id=99999, command_code=16777215)
    body = wireshark.render(d).split("?>", 1)[1]
    root = ElementTree.fromstring(f"<dictionary>{body}</dictionary>")  # a fragment, included as an entity
    vendor, application = list(root)
    assert (vendor.tag, vendor.get("code")) == ("vendor", "99999")
    assert {a.get("vendor-id") for a in vendor} == {"aaa-fmip"}
    assert (application.get("id"), application[0].get("code")) == ("2128150530", "16777215")
    names = [a.get("name") for a in application if a.tag == "avp"]
    assert names == ["Key", "Key-Type", "Keying-Material", "Key-Lifetime", "Key-SPI", "Key-Name"]


def test_command_renders_the_configured_ids(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "aaa-fmip.toml"
    config.write_text(
        '[diameter]\norigin_host = "keys.example.net"\norigin_realm = "example.net"\n'
        "application_id = 2128150530\nvendor_id = 99999\n",
        encoding="utf-8",
    )
    assert wireshark.main(["--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert '<vendor vendor-id="aaa-fmip" code="99999"' in out and '<application id="2128150530"' in out
    assert wireshark.main(["--config", str(tmp_path / "absent.toml")]) == 2
    assert "absent.toml" in capsys.readouterr().err

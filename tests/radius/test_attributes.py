"""Parsing the lists rlm_python3 passes (shapes as FreeRADIUS 3.2.1 produced them with pass_all_vps_dict)."""

from __future__ import annotations

import contextlib
import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aaa_fmip.errors import DecodeError
from aaa_fmip.radius.attributes import (
    AttributeLists,
    class_value,
    eap_method,
    parse_accounting,
    parse_lists,
    parse_post_auth,
)

EMSK = bytes(range(64))
SID = b"\x0d" + bytes(range(64))

# As logged from FreeRADIUS 3.2.1 after EAP-TLS (values shortened where irrelevant).
POST_AUTH = {
    "request": (
        ("User-Name", "alice@fmip.test"),
        ("NAS-IP-Address", "127.0.0.1"),
        ("Calling-Station-Id", "02-00-00-00-00-01"),
        ("NAS-Port-Type", "Wireless-802.11"),
        ("NAS-Identifier", "ar1.fmip.test"),
        ("EAP-Message", "0x020900060d00"),
        ("Message-Authenticator", "0x" + "00" * 16),
        ("FreeRADIUS-Client-IP-Address", "127.0.0.1"),
    ),
    "reply": (
        ("MS-MPPE-Recv-Key", "0x" + "11" * 32),
        ("EAP-MSK", "0x" + "22" * 64),
        ("EAP-EMSK", "0x" + EMSK.hex()),
        ("EAP-Session-Id", "0x" + SID.hex()),
        ("Session-Timeout", "3600"),
    ),
    "config": (("Auth-Type", "EAP"),),
    "session-state": None,
    "proxy-request": None,
    "proxy-reply": None,
}


def test_post_auth_from_dict() -> None:
    request = parse_post_auth(parse_lists(POST_AUTH))
    assert request.user_name == "alice@fmip.test"
    assert request.emsk is not None and request.emsk.reveal() == EMSK
    assert "redacted" in repr(request.emsk) and EMSK.hex() not in repr(request)
    assert request.eap_session_id == SID
    assert request.is_eap and request.eap_type == "TLS"
    assert request.calling_station_id == "02-00-00-00-00-01"
    assert request.session_timeout == 3600
    assert request.nas.nas_identifier == "ar1.fmip.test"
    assert request.nas.nas_ip_address == ipaddress.IPv4Address("127.0.0.1")
    assert request.nas.source_address == ipaddress.IPv4Address("127.0.0.1")
    assert request.nas.label() == "ar1.fmip.test"


def test_the_six_tuple_form_and_the_inner_identity() -> None:
    lists = parse_lists(
        (POST_AUTH["request"], POST_AUTH["reply"], None, (("User-Name", "alice"),), None, None),
    )
    assert parse_post_auth(lists).user_name == "alice"


def test_pwd_has_no_emsk_and_its_method_comes_from_the_eap_message() -> None:
    lists = AttributeLists(
        request=(("User-Name", "alice"), ("EAP-Message", "0x02d2000b3403aabbccddee")),
        reply=(("MS-MPPE-Recv-Key", "0x" + "11" * 32),),
    )
    request = parse_post_auth(lists)
    assert request.emsk is None and request.is_eap and request.eap_type == "PWD"


def test_the_method_of_an_eap_message_whose_first_fragment_is_short() -> None:
    # RFC 3579 §3.1: consecutive EAP-Message values concatenate; Type is the 5th octet of the whole.
    lists = AttributeLists(request=(("EAP-Message", "0x02d2"), ("EAP-Message", "0x000b3403aabbccddee")))
    assert parse_post_auth(lists).eap_type == "PWD"
    lists = AttributeLists(request=(("EAP-Message", "0x02d2"), ("EAP-Message", "not-hex")))
    assert parse_post_auth(lists).eap_type is None


def test_not_eap() -> None:
    request = parse_post_auth(AttributeLists(request=(("User-Name", "bob"), ("User-Password", "x"))))
    assert not request.is_eap and request.emsk is None


@pytest.mark.parametrize(
    ("message", "method"),
    [(b"\x02\x01\x00\x06\x04\x10", "MD5"), (b"\x02\x01\x00\x05\x34", "PWD"), (b"\x02\x01\x00\x05\xc8", "type 200")],
)
def test_eap_method(message: bytes, method: str) -> None:
    assert eap_method(message) == method


def test_eap_method_of_non_responses() -> None:
    assert eap_method(b"\x03\x01\x00\x04") is None
    assert eap_method(b"\x02\x01") is None


@pytest.mark.parametrize(
    "bad",
    [
        {"request": (("User-Name",),)},
        {"request": "User-Name"},
        {"request": (("User-Name", 7),)},
        {"reply": (("EAP-EMSK", "not-hex"),)},
        {"reply": (("EAP-EMSK", "0xzz"),)},
        {"reply": (("Session-Timeout", "soon"),)},
        {"request": (("NAS-IP-Address", "999.1.1.1"),)},
    ],
)
def test_malformed_lists_raise_decode_error(bad: dict[str, object]) -> None:
    with pytest.raises(DecodeError):
        parse_post_auth(parse_lists(bad))


@given(st.recursive(st.none() | st.text() | st.integers(), lambda s: st.lists(s) | st.tuples(s, s), max_leaves=8))
def test_any_shape_parses_or_raises_decode_error(value: object) -> None:
    with contextlib.suppress(DecodeError):
        parse_post_auth(parse_lists({"request": value, "reply": value}))


def test_accounting_stop_with_our_class() -> None:
    ours = class_value("0123456789abcdef0123456789abcdef")
    lists = parse_lists(
        {
            "request": (
                ("Acct-Status-Type", "Stop"),
                ("User-Name", "alice"),
                ("Calling-Station-Id", "02-00-00-00-00-01"),
                ("Class", "0x" + b"other".hex()),
                ("Class", "0x" + ours.hex()),
                ("Class", "0x" + b"aaa-fmip:NOT-HEX".hex()),
                ("Acct-Session-Id", "abc"),
            )
        }
    )
    request = parse_accounting(lists)
    assert request.is_stop
    assert request.our_class_tokens() == ("0123456789abcdef0123456789abcdef",)
    assert request.acct_session_id == "abc"


@pytest.mark.parametrize(("status", "stop"), [("Stop", True), ("2", True), ("Start", False), (None, False)])
def test_accounting_status(status: str | None, stop: bool) -> None:
    pairs = (("Acct-Status-Type", status),) if status is not None else ()
    assert parse_accounting(AttributeLists(request=pairs)).is_stop is stop

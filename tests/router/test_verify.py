"""Local FBU verification: parse + BADF + replay, and replay state that survives a restart."""

from __future__ import annotations

import contextlib
from ipaddress import IPv6Address
from pathlib import Path
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aaa_fmip.errors import DecodeError
from aaa_fmip.router.verify import (
    FileReplayJournal,
    ParsedFbu,
    ReceivedMh,
    ReplayState,
    _parse_common,
    parse_fbu,
    sequence_newer,
    verify_with_key,
)
from aaa_fmip.wire import mh as mhwire
from tests.router._pair import NCOA, PAR, PCOA, predictive_fbu, reactive_fbu, router_key


def _received(sequence: int = 1) -> ReceivedMh:
    p = predictive_fbu(sequence=sequence)
    return ReceivedMh(p.source, p.destination, p.home_address, p.mh)


def test_parse_predictive_and_reactive() -> None:
    parsed = parse_fbu(_received())
    assert (parsed.pcoa, parsed.ncoa, parsed.predictive) == (PCOA, NCOA, True)
    r = reactive_fbu()
    parsed = parse_fbu(ReceivedMh(r.source, r.destination, r.home_address, r.mh))
    assert (parsed.pcoa, parsed.ncoa, parsed.predictive) == (PCOA, NCOA, False)


def test_bad_checksum_is_a_decode_error() -> None:
    p = _received()
    with pytest.raises(DecodeError) as info:
        parse_fbu(ReceivedMh(NCOA, p.destination, None, p.mh))  # wrong pseudo-header source
    assert info.value.field == "mh.checksum"


@pytest.mark.parametrize(
    ("candidate", "last", "newer"),
    [(2, 1, True), (1, 1, False), (0, 1, False), (0, 0xFFFF, True), (0x8000, 0, False), (0x7FFF, 0, True)],
)
def test_serial_arithmetic(candidate: int, last: int, newer: bool) -> None:
    assert sequence_newer(candidate, last) is newer


def test_verdicts() -> None:
    replay = ReplayState()
    key = router_key()
    v = verify_with_key(parse_fbu(_received(5)), [key], replay, now=0.0)
    assert (v.outcome, v.lifetime, v.key) == ("accepted", 60, key)
    assert verify_with_key(parse_fbu(_received(5)), [key], replay, now=0.0).outcome == "retransmission"
    v = verify_with_key(parse_fbu(_received(4)), [key], replay, now=0.0)
    assert (v.outcome, v.reason) == ("rejected", "replay")
    assert verify_with_key(parse_fbu(_received(6)), [], replay, now=0.0).reason == "unknown-spi"
    assert verify_with_key(parse_fbu(_received(6)), [router_key(expires_at=1.0)], replay, now=2.0).reason == "expired"
    other = router_key(par=NCOA)  # a key for another AR-ID never verifies an FBU sent to this one
    assert verify_with_key(parse_fbu(_received(6)), [other], replay, now=0.0).reason == "expired"


def test_lifetime_capped_by_the_key() -> None:
    v = verify_with_key(parse_fbu(_received()), [router_key(expires_at=20.5)], ReplayState(), now=0.0)
    assert v.lifetime == 20


def test_replay_state_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "replay.journal"
    key = router_key()
    first = ReplayState(FileReplayJournal(path, now=0.0))
    assert verify_with_key(parse_fbu(_received(7)), [key], first, now=0.0).outcome == "accepted"
    with path.open("a") as f:
        f.write('["torn",1')  # a crash mid-line
    second = ReplayState(FileReplayJournal(path, now=1.0))
    assert len(second) == 1
    assert verify_with_key(parse_fbu(_received(7)), [key], second, now=1.0).outcome == "retransmission"
    assert verify_with_key(parse_fbu(_received(6)), [key], second, now=1.0).reason == "replay"
    assert verify_with_key(parse_fbu(_received(8)), [key], second, now=1.0).outcome == "accepted"
    third = ReplayState(FileReplayJournal(path, now=1.0))
    assert verify_with_key(parse_fbu(_received(8)), [key], third, now=1.0).outcome == "retransmission"
    assert len(path.read_text().splitlines()) == 1  # compacted to the live entry
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    gone = ReplayState(FileReplayJournal(path, now=key.expires_at + 1))
    assert len(gone) == 0  # expired with its key


@given(st.binary(max_size=64))
def test_parse_raises_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        parse_fbu(ReceivedMh(PCOA, PAR, None, data))


_addresses = st.builds(IPv6Address, st.integers(min_value=0, max_value=2**128 - 1))
_options = st.lists(
    st.one_of(
        st.builds(mhwire.AlternateCareOfAddress, _addresses),
        st.builds(mhwire.MHLinkLayerAddress, st.integers(0, 255), st.binary(max_size=10)),
        st.builds(mhwire.MHIPv6AddressPrefix, st.integers(1, 4), st.integers(0, 128), _addresses),
        st.builds(mhwire.UnknownMobilityOption, st.integers(9, 20), st.binary(max_size=6)),
    ),
    max_size=4,
)


def _slow(packet: ReceivedMh) -> ParsedFbu:
    with patch("aaa_fmip.router.verify._parse_common", return_value=None):
        return parse_fbu(packet)


@settings(max_examples=400, deadline=None)
@given(
    _options,
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.booleans(),
    st.sampled_from([12, 16]),
    st.integers(0, 200),
    st.integers(0, 255),
)
def test_the_fast_path_agrees_with_the_full_decoder(
    options: list[mhwire.MobilityOption],
    sequence: int,
    lifetime: int,
    home: bool,
    auth_length: int,
    flip_at: int,
    flip: int,
) -> None:
    badf_option = mhwire.BindingAuthorizationDataForFMIPv6(7, bytes(range(auth_length)))
    fbu = mhwire.FBU(sequence, lifetime, (*options, badf_option))
    mh = mhwire.encode_mh(fbu, source=PCOA, destination=PAR)
    source = PCOA if not home else NCOA
    variants = [mh, mh[:flip_at] + bytes((flip,)) + mh[flip_at + 1 :] if flip_at < len(mh) else mh[:-1]]
    for data in variants:
        packet = ReceivedMh(source, PAR, PCOA if home else None, data)
        fast = _parse_common(packet)
        try:
            slow = _slow(packet)
        except DecodeError:
            assert fast is None
            continue
        if fast is not None:
            assert fast == slow
    assert _parse_common(ReceivedMh(source, PAR, PCOA if home else None, mh)) is not None or any(
        isinstance(o, mhwire.MHIPv6AddressPrefix | mhwire.UnknownMobilityOption)
        or (isinstance(o, mhwire.MHLinkLayerAddress) and o.option_code > 7)
        for o in options
    )

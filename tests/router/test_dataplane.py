"""The sans-IO data plane (aaa_fmip.router.dataplane): forwarding, buffering, flushing and drops, time passed in."""

from __future__ import annotations

import contextlib
from ipaddress import IPv6Address
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aaa_fmip.errors import ConfigError, DecodeError
from aaa_fmip.router import core
from aaa_fmip.router.config import load_settings
from aaa_fmip.router.core import HandoverFinished, HiAccepted, Notice
from aaa_fmip.router.dataplane import (
    AddCapture,
    DataPlane,
    DataPlaneEffect,
    DataPlaneLimits,
    Deliver,
    Dropped,
    Encapsulate,
    RemoveCapture,
)
from aaa_fmip.router.verify import ReceivedMh
from aaa_fmip.wire.icmpv6 import (
    NeighborAdvertisement,
    TargetLinkLayerAddress,
    UnknownIcmpv6Message,
    decode_nd_message,
    encode_nd_message,
)
from tests.router._pair import MN_LLA, Pair, make_core, predictive_fbu, reactive_fbu
from tests.router._pair import NAR as PAIR_NAR
from tests.router._pair import NCOA as PAIR_NCOA
from tests.router._pair import PAR as PAIR_PAR
from tests.router._pair import PCOA as PAIR_PCOA
from tests.support.service_proc import run_cli

PAR = IPv6Address("2001:db8:1::1")
NAR = IPv6Address("2001:db8:2::1")
PCOA = IPv6Address("2001:db8:1::1:0:0:7")
NCOA = IPv6Address("2001:db8:2::1:0:0:7")
MAC = bytes.fromhex("020000000001")
CN = IPv6Address("2001:db8:cc::2")


def packet(seq: int, destination: IPv6Address = PCOA) -> bytes:
    payload = seq.to_bytes(4, "big")
    return (
        bytes((0x60, 0, 0, 0))
        + len(payload).to_bytes(2, "big")
        + bytes((17, 63))
        + CN.packed
        + destination.packed
        + payload
    )


def hop(p: bytes) -> bytes:
    """``p`` as the NAR forwards it: Hop Limit one less."""
    return p[:7] + bytes((p[7] - 1,)) + p[8:]


def finished(status: int | None = 0, lifetime: int = 40, pcoa: IPv6Address = PCOA) -> HandoverFinished:
    return HandoverFinished("accepted", status, 7, 1, pcoa, NCOA, NAR, 1, 0.01, lifetime)


def hi(buffer: bool = True, reactive: bool = False, mn_lla: bytes | None = MAC, par: IPv6Address = PAR) -> HiAccepted:
    return HiAccepted(par, PCOA, NCOA, mn_lla, buffer, reactive)


def without_notices(effects: list[DataPlaneEffect]) -> list[DataPlaneEffect]:
    return [e for e in effects if not isinstance(e, Notice)]


def delivered(effects: list[DataPlaneEffect]) -> list[int]:
    return [int.from_bytes(e.packet[-4:], "big") for e in effects if isinstance(e, Deliver)]


# --- PAR ---------------------------------------------------------------------------------------------------------


def test_par_captures_after_an_accepted_fback_and_tunnels_to_the_nar() -> None:
    plane = DataPlane(PAR)
    assert without_notices(plane.captured(packet(1), 0.0)) == [Dropped("no-binding")]
    assert without_notices(plane.handover_finished(finished(), 1.0)) == [AddCapture(PCOA)]
    assert plane.captured(packet(2), 1.5) == [Encapsulate(PAR, NAR, packet(2))]
    assert plane.captured(packet(3, destination=NCOA), 1.5) == [Dropped("no-binding")]
    assert plane.captured(b"\x45" + bytes(39), 1.5) == [Dropped("malformed")]
    assert plane.captured(packet(4, destination=IPv6Address("ff02::16")), 1.5) == []  # the kernel's MLD


@pytest.mark.parametrize("status", [None, 128, 129, 130])
def test_par_does_not_forward_for_a_rejected_fbu(status: int | None) -> None:
    plane = DataPlane(PAR)
    assert plane.handover_finished(finished(status=status), 1.0) == []
    assert plane.par_bindings() == {}


def test_par_binding_ends_with_its_lifetime_and_the_capture_goes() -> None:
    plane = DataPlane(PAR)
    plane.handover_finished(finished(lifetime=40), 0.0)
    assert plane.next_deadline() == 40.0
    assert without_notices(plane.handle_timer(39.9)) == []
    assert without_notices(plane.handle_timer(40.0)) == [RemoveCapture(PCOA)]
    assert plane.par_bindings() == {} and plane.next_deadline() is None
    assert plane.captured(packet(1), 40.1) == [Dropped("no-binding")]


def test_par_a_later_fbu_extends_and_lifetime_zero_ends() -> None:
    plane = DataPlane(PAR)
    plane.handover_finished(finished(lifetime=40), 0.0)
    assert without_notices(plane.handover_finished(finished(lifetime=40), 30.0)) == []  # no second route
    assert plane.next_deadline() == 70.0
    assert without_notices(plane.handover_finished(finished(lifetime=0), 31.0)) == [RemoveCapture(PCOA)]  # §5.6
    assert plane.par_bindings() == {}


def test_close_removes_every_capture_and_drops_the_buffers() -> None:
    plane = DataPlane(PAR)
    plane.handover_finished(finished(), 0.0)
    plane.hi_accepted(HiAccepted(NAR, IPv6Address("2001:db8:9::1"), NCOA, MAC, True, False), 0.0)
    plane.tunnelled(NAR, packet(1, IPv6Address("2001:db8:9::1")), 0.1)
    effects = without_notices(plane.close())
    assert RemoveCapture(PCOA) in effects and Dropped("binding-ended", 1) in effects
    assert plane.buffered == 0 and plane.next_deadline() is None


# --- NAR ---------------------------------------------------------------------------------------------------------


def test_nar_without_buffering_delivers_at_once() -> None:
    plane = DataPlane(NAR)
    plane.hi_accepted(hi(buffer=False), 0.0)
    assert plane.tunnelled(PAR, packet(1), 0.1) == [Deliver(MAC, NCOA, None, hop(packet(1)))]
    expiring = packet(2)[:7] + b"\x01" + packet(2)[8:]
    assert plane.tunnelled(PAR, expiring, 0.1) == [Dropped("hop-limit")]


def test_nar_takes_tunnelled_packets_only_from_the_par_of_the_hi_and_only_for_its_pcoa() -> None:
    plane = DataPlane(NAR)
    assert plane.tunnelled(PAR, packet(1), 0.0) == [Dropped("no-binding")]
    plane.hi_accepted(hi(buffer=False), 0.0)
    assert plane.tunnelled(IPv6Address("2001:db8:66::1"), packet(1), 0.1) == [Dropped("not-neighbour")]
    assert plane.tunnelled(PAR, packet(1, IPv6Address("2001:db8:1::99")), 0.1) == [Dropped("no-binding")]
    assert plane.tunnelled(PAR, b"\x60" + bytes(10), 0.1) == [Dropped("malformed")]


def test_nar_buffers_until_the_una_then_flushes_in_order() -> None:
    plane = DataPlane(NAR, DataPlaneLimits(drain_factor=0))
    plane.hi_accepted(hi(buffer=True), 0.0)
    for seq in range(10):
        assert plane.tunnelled(PAR, packet(seq), 0.1 + seq * 0.001) == []
    assert plane.buffered == 10
    effects = plane.node_attached(NCOA, MAC, 4, 0.2)
    assert delivered(effects) == list(range(10))
    assert all(e.interface == 4 for e in effects if isinstance(e, Deliver))
    assert plane.buffered == 0
    assert delivered(plane.tunnelled(PAR, packet(10), 0.3)) == [10]  # attached, empty queue: straight through


def test_flush_is_a_burst_of_five_then_paced_and_keeps_the_order() -> None:
    plane = DataPlane(NAR)  # drain_burst 5, drain_factor 2
    plane.hi_accepted(hi(buffer=True), 0.0)
    for seq in range(21):  # 1 packet per ms: 20 ms span, 1000/s
        plane.tunnelled(PAR, packet(seq), 1.0 + seq * 0.001)
    assert delivered(plane.node_attached(NCOA, MAC, 4, 1.1)) == [0, 1, 2, 3, 4]
    assert plane.next_deadline() == pytest.approx(1.1005)  # paced at 2000/s
    # a packet arriving while the backlog drains joins its tail
    assert plane.tunnelled(PAR, packet(21), 1.1001) == []
    assert delivered(plane.handle_timer(1.1005)) == [5]
    assert delivered(plane.handle_timer(1.1025)) == [6, 7, 8, 9]  # a late timer catches up (due at .1010-.1025)
    rest = delivered(plane.handle_timer(2.0))
    assert rest == list(range(10, 22))
    assert plane.buffered == 0 and plane.next_deadline() == pytest.approx(1.1001 + 30.0)


def test_buffer_is_bounded_in_packets_and_counts_the_drops() -> None:
    plane = DataPlane(NAR, DataPlaneLimits(buffer_packets=3, drain_factor=0))
    plane.hi_accepted(hi(buffer=True), 0.0)
    results = [plane.tunnelled(PAR, packet(seq), 0.1) for seq in range(5)]
    assert results == [[], [], [], [Dropped("buffer-full")], [Dropped("buffer-full")]]
    assert delivered(plane.node_attached(NCOA, MAC, 1, 0.2)) == [0, 1, 2]


def test_buffer_total_bound_across_nodes() -> None:
    plane = DataPlane(NAR, DataPlaneLimits(total_buffer_packets=2))
    plane.hi_accepted(hi(buffer=True), 0.0)
    other = IPv6Address("2001:db8:1::1:0:0:8")
    plane.hi_accepted(HiAccepted(PAR, other, IPv6Address("2001:db8:2::8"), MAC, True, False), 0.0)
    assert plane.tunnelled(PAR, packet(1), 0.1) == []
    assert plane.tunnelled(PAR, packet(2, other), 0.1) == []
    assert plane.tunnelled(PAR, packet(3, other), 0.1) == [Dropped("buffer-full")]


def test_buffered_packets_expire_after_buffer_seconds() -> None:
    plane = DataPlane(NAR, DataPlaneLimits(buffer_seconds=2.0))
    plane.hi_accepted(hi(buffer=True), 0.0)
    plane.tunnelled(PAR, packet(1), 1.0)
    plane.tunnelled(PAR, packet(2), 1.5)
    assert plane.next_deadline() == 3.0
    assert plane.handle_timer(3.0) == [Dropped("buffer-expired", 1)]
    assert plane.buffered == 1
    assert delivered(plane.node_attached(NCOA, MAC, 1, 3.4)) == [2]


def test_nar_binding_ends_and_drops_what_it_held() -> None:
    plane = DataPlane(NAR, DataPlaneLimits(nar_lifetime=5.0, buffer_seconds=60))
    plane.hi_accepted(hi(buffer=True), 0.0)
    plane.tunnelled(PAR, packet(1), 1.0)  # traffic keeps it alive: now until 6.0
    assert Dropped("binding-ended", 1) in plane.handle_timer(6.0)
    assert plane.nar_bindings() == {} and plane.buffered == 0


def test_una_from_another_link_layer_address_does_not_flush() -> None:
    plane = DataPlane(NAR, DataPlaneLimits(drain_factor=0))
    plane.hi_accepted(hi(buffer=True), 0.0)
    plane.tunnelled(PAR, packet(1), 0.1)
    effects = plane.node_attached(NCOA, bytes.fromhex("02000000beef"), 1, 0.2)
    assert delivered(effects) == [] and [e.event for e in effects if isinstance(e, Notice)] == [
        "dataplane.una-lla-mismatch"
    ]
    assert delivered(plane.node_attached(NCOA, MAC, 1, 0.3)) == [1]


def test_reactive_hi_means_attached_and_an_earlier_una_is_remembered() -> None:
    plane = DataPlane(NAR)
    plane.node_attached(NCOA, MAC, 9, 0.0)  # the node's UNA came before the HI (reactive mode)
    plane.hi_accepted(hi(buffer=True, reactive=True, mn_lla=None), 0.5)
    assert plane.tunnelled(PAR, packet(1), 0.6) == [Deliver(MAC, NCOA, 9, hop(packet(1)))]


def test_without_any_link_layer_address_packets_are_dropped_counted() -> None:
    plane = DataPlane(NAR)
    plane.hi_accepted(hi(buffer=False, mn_lla=None), 0.0)
    assert plane.tunnelled(PAR, packet(1), 0.1) == [Dropped("no-lla")]


def test_observe_takes_only_the_forwarding_effects() -> None:
    plane = DataPlane(PAR)
    assert plane.observe(Notice("hi.answered"), 0.0) == []
    assert AddCapture(PCOA) in plane.observe(finished(), 0.0)
    assert plane.observe(hi(), 0.0) != []


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["packet", "una", "tick"]), st.floats(min_value=0.0, max_value=0.05)),
        max_size=120,
    ),
    st.integers(min_value=0, max_value=20),
)
def test_property_buffered_packets_leave_once_in_order_or_are_counted(
    steps: list[tuple[str, float]], capacity: int
) -> None:
    """Whatever the interleaving: every tunnelled packet is delivered once, in order, or counted as dropped."""
    plane = DataPlane(NAR, DataPlaneLimits(buffer_packets=capacity, buffer_seconds=1.0))
    plane.hi_accepted(hi(buffer=True), 0.0)
    now, sent, out, dropped = 0.0, 0, [], 0
    for kind, dt in steps:
        now += dt
        if kind == "packet":
            effects = plane.tunnelled(PAR, packet(sent), now)
            sent += 1
        elif kind == "una":
            effects = plane.node_attached(NCOA, MAC, 1, now)
        else:
            effects = plane.handle_timer(now)
        out += delivered(effects)
        dropped += sum(e.count for e in effects if isinstance(e, Dropped))
    for effect in plane.close():
        dropped += effect.count if isinstance(effect, Dropped) else 0
    assert out == sorted(out) and len(set(out)) == len(out)
    assert len(out) + dropped == sent
    assert plane.buffered == 0


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError):
        DataPlaneLimits(buffer_seconds=0)
    with pytest.raises(ValueError):
        DataPlaneLimits(drain_burst=0)


# --- the UNA codec (RFC 4861 §4.4, RFC 5568 §6.3) -----------------------------------------------------------------


def _decode_na(data: bytes, **addresses: IPv6Address) -> NeighborAdvertisement:
    decoded = decode_nd_message(data, **addresses)
    assert isinstance(decoded, NeighborAdvertisement)
    return decoded


def test_una_round_trip_and_bytes() -> None:
    una = NeighborAdvertisement(NCOA, options=(TargetLinkLayerAddress(MAC),))
    data = encode_nd_message(una, source=NCOA, destination=IPv6Address("ff02::1"))
    assert data[0] == 136 and data[1] == 0 and data[4] == 0 and data[8:24] == NCOA.packed
    assert data[24:32] == bytes((2, 1)) + MAC  # Target LLA option, length 1 (8 octets)
    decoded = _decode_na(data, source=NCOA, destination=IPv6Address("ff02::1"))
    assert decoded == una and decoded.unsolicited_for_fmip and decoded.target_lla == MAC
    flagged = NeighborAdvertisement(NCOA, router=True, solicited=True, override=True)
    assert encode_nd_message(flagged, source=NCOA, destination=NAR)[4] == 0xE0
    assert not _decode_na(encode_nd_message(flagged, source=NCOA, destination=NAR)).unsolicited_for_fmip


def test_una_bad_checksum_and_garbage_raise_decode_error() -> None:
    data = bytearray(encode_nd_message(NeighborAdvertisement(NCOA), source=NCOA, destination=NAR))
    data[10] ^= 1
    with pytest.raises(DecodeError):
        _decode_na(bytes(data), source=NCOA, destination=NAR)
    assert isinstance(decode_nd_message(bytes((135,)) + bytes(23)), UnknownIcmpv6Message)  # a Neighbor Solicitation


@given(st.binary(max_size=64))
def test_na_decoder_raises_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_nd_message(data)


# --- the router core feeds the data plane ------------------------------------------------------------------------


def _nar_effects(pair: Pair) -> list[core.Effect]:
    """Record what the NAR core answers (Pair passes only MH on)."""
    seen: list[core.Effect] = []
    receive = pair.nar.receive_mh

    def recording(packet: ReceivedMh, now: float) -> list[core.Effect]:
        effects = receive(packet, now)
        seen.extend(effects)
        return effects

    pair.nar.receive_mh = recording  # type: ignore[method-assign]
    return seen


def test_a_predictive_handover_with_u_drives_both_data_planes_end_to_end() -> None:
    pair = Pair(par=make_core("par", request_buffering=True))
    seen = _nar_effects(pair)
    pair.fbu(predictive_fbu(sequence=9), now=1.0)
    [accepted] = [e for e in seen if isinstance(e, core.HiAccepted)]
    assert accepted == core.HiAccepted(PAIR_PAR, PAIR_PCOA, PAIR_NCOA, MN_LLA, True, False)
    [done] = pair.finished
    assert done.lifetime == 60  # the lifetime granted in the FBack: how long the PAR forwards
    par, nar = DataPlane(PAIR_PAR), DataPlane(PAIR_NAR)
    assert AddCapture(PAIR_PCOA) in par.observe(done, 1.0)
    nar.observe(accepted, 1.0)
    [tunnel] = par.captured(packet(1, PAIR_PCOA), 1.1)
    assert isinstance(tunnel, Encapsulate) and (tunnel.source, tunnel.destination) == (PAIR_PAR, PAIR_NAR)
    assert nar.tunnelled(tunnel.source, tunnel.packet, 1.1) == []  # buffered: the node is not there yet
    assert nar.node_attached(PAIR_NCOA, MN_LLA, 3, 1.2)[-1] == Deliver(MN_LLA, PAIR_NCOA, 3, hop(packet(1, PAIR_PCOA)))


def test_a_reactive_hi_is_accepted_as_attached_and_a_refused_hi_opens_nothing() -> None:
    pair = Pair()
    seen = _nar_effects(pair)
    pair.fbu(reactive_fbu(sequence=3), now=1.0)
    [accepted] = [e for e in seen if isinstance(e, core.HiAccepted)]
    assert accepted.reactive and not accepted.buffer and accepted.pcoa == PAIR_PCOA
    refused = Pair(nar=make_core("nar", access_prefixes=()))  # no access prefixes: HAck 128
    seen = _nar_effects(refused)
    refused.fbu(predictive_fbu(), now=1.0)
    assert not [e for e in seen if isinstance(e, core.HiAccepted)]
    assert [d.status for d in refused.finished] == [128]


# --- [dataplane] in the router configuration ----------------------------------------------------------------------

CONFIG = """
[router]
addresses = ["2001:db8:1::1"]
replay_state = "{state}"
"""


def test_dataplane_settings_defaults_file_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "router.toml"
    path.write_text(CONFIG.format(state=tmp_path / "replay"), encoding="utf-8")
    assert load_settings(path).dataplane.enable is False  # off unless asked for
    path.write_text(
        CONFIG.format(state=tmp_path / "replay") + "[dataplane]\nenable = true\nbuffer_packets = 50\n", encoding="utf-8"
    )
    monkeypatch.setenv("AAA_FMIP_ROUTER_DATAPLANE__BUFFER_SECONDS", "0.5")
    settings = load_settings(path)
    assert settings.dataplane.enable and settings.dataplane.mode == "auto"
    assert settings.dataplane.limits() == DataPlaneLimits(buffer_packets=50, buffer_seconds=0.5)
    result = run_cli("router", "--config", str(path), "--check")
    assert result.returncode == 0, result.stderr
    assert (
        "data plane: on (auto), buffer 50 packets / 2.0 s" in result.stdout
    )  # run_cli drops the test's AAA_FMIP_* environment


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("route_table = 254", "dataplane.route_table"),
        ("buffer_seconds = 0", "dataplane.buffer_seconds"),
        ('mode = "magic"', "dataplane.mode"),
        ("tun_name = 'a-name-longer-than-15'", "dataplane.tun_name"),
        ("buffers = 3", "dataplane.buffers"),
    ],
)
def test_bad_dataplane_settings_name_the_field(tmp_path: Path, line: str, key: str) -> None:
    path = tmp_path / "router.toml"
    path.write_text(CONFIG.format(state=tmp_path / "replay") + f"[dataplane]\n{line}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert info.value.key == key


def test_par_a_later_fbu_to_another_nar_moves_the_tunnel() -> None:
    plane = DataPlane(PAR)
    plane.handover_finished(finished(), 0.0)
    other = IPv6Address("2001:db8:3::1")
    moved = HandoverFinished("accepted", 0, 7, 2, PCOA, IPv6Address("2001:db8:3::7"), other, 1, 0.01, 40)
    assert without_notices(plane.handover_finished(moved, 5.0)) == [AddCapture(PCOA)]
    assert plane.captured(packet(1), 5.1) == [Encapsulate(PAR, other, packet(1))]


@given(
    st.binary(min_size=16, max_size=16),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.lists(st.binary(min_size=6, max_size=6), max_size=2),
)
def test_na_round_trip(target: bytes, router: bool, solicited: bool, override: bool, llas: list[bytes]) -> None:
    address = IPv6Address(target)
    if address.is_multicast:
        address = NCOA
    na = NeighborAdvertisement(
        address, tuple(TargetLinkLayerAddress(a) for a in llas), router=router, solicited=solicited, override=override
    )
    data = encode_nd_message(na, source=NCOA, destination=NAR)
    assert _decode_na(data, source=NCOA, destination=NAR) == na
    for cut in range(len(data)):
        with contextlib.suppress(DecodeError):
            _decode_na(data[:cut])


def test_a_reactive_hi_for_a_buffering_binding_flushes_it() -> None:
    """The node sent its FBU again from the new link (no UNA seen): HI Code 1 for the same move means it is here."""
    plane = DataPlane(NAR, DataPlaneLimits(drain_factor=0))
    plane.hi_accepted(hi(buffer=True), 0.0)
    plane.tunnelled(PAR, packet(1), 0.1)
    assert delivered(plane.hi_accepted(hi(buffer=True, reactive=True), 0.2)) == [1]
    assert plane.hi_accepted(hi(buffer=True, reactive=True), 0.3) == []  # and only once

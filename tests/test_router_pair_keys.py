"""Router-pair IKE PSKs (architecture.md §2, §9): vectors from ``openssl mac``, the IRK in a real redis-server
(created once, wrapped), the use case's scoping, epochs and audit, and the swanctl.conf renderer."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from aaa_fmip import keys
from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.crypto.wrap import Kek, KekRing
from aaa_fmip.errors import CryptoError, Forbidden, InvalidRequest, NotFound
from aaa_fmip.model import AccessRouter, Caller
from aaa_fmip.router.ipsec import pair_from_json, render_swanctl
from aaa_fmip.service.router_pairs import EVENT_ISSUED, RouterPairUseCases, epochs_at
from aaa_fmip.store.redis import RedisStore
from tests.crypto.test_kdf_openssl import openssl_kdf
from tests.support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[1]
VECTORS: dict[str, Any] = json.loads((ROOT / "tests" / "vectors" / "router-pair-psk.json").read_text("utf-8"))
DOC = (ROOT / "docs" / "key-hierarchy.md").read_text(encoding="utf-8")
LABEL = b"AR Pair IKE PSK@aaa-fmip.invalid"  # architecture.md §2, copied as text rather than imported
IP = ipaddress.IPv6Address
DAY = 86_400

A1, A2 = IP("2001:db8:1::1"), IP("2001:db8:1::2")  # router "par": two addresses
B1 = IP("2001:db8:2::1")  # router "nar"
C1 = IP("2001:db8:3::1")  # router "other"
PAR = AccessRouter("par", frozenset({A1, A2}), key_address=A1)
NAR = AccessRouter("nar", frozenset({B1}), key_address=B1)
OTHER = AccessRouter("other", frozenset({C1}), key_address=C1)
ROUTERS = (PAR, NAR, OTHER)


def caller(router: AccessRouter) -> Caller:
    return Caller(router.name, "ar", router)


# --- the derivation ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=[v["id"] for v in VECTORS["vectors"]])
def test_vectors_match_openssl_and_the_package(vector: dict[str, Any]) -> None:
    assert shutil.which("openssl"), "scripts/install-deps installs openssl"
    irk = bytes.fromhex(vector["irk"])
    a, b = IP(vector["ar_a"]), IP(vector["ar_b"])
    data = min(a.packed, b.packed) + max(a.packed, b.packed) + struct.pack("!I", vector["epoch"])
    assert data.hex() == vector["kdf_data"]
    assert VECTORS["label"] == LABEL.decode() == keys.LABEL_ROUTER_PAIR_PSK.decode()
    assert openssl_kdf(irk, LABEL, data, 32).hex() == vector["psk"]
    derived = keys.derive_router_pair_psk(irk, a, b, vector["epoch"])
    assert derived.psk.hex() == vector["psk"] and derived.epoch == vector["epoch"]
    assert derived.ar_ids == tuple(sorted((a, b), key=lambda x: x.packed))
    assert keys.derive_router_pair_psk(SecretBytes(irk), b, a, vector["epoch"]).psk == derived.psk


def test_vectors_are_published_in_the_docs() -> None:
    flat = "".join(DOC.split())
    for vector in VECTORS["vectors"]:
        assert vector["psk"] in flat and vector["irk"] in flat
    assert LABEL.decode() in DOC


def test_the_key_depends_on_every_input() -> None:
    irk = os.urandom(32)
    base = keys.derive_router_pair_psk(irk, A1, B1, 7).psk
    assert keys.derive_router_pair_psk(irk, A1, B1, 8).psk != base
    assert keys.derive_router_pair_psk(irk, A2, B1, 7).psk != base
    assert keys.derive_router_pair_psk(os.urandom(32), A1, B1, 7).psk != base


@pytest.mark.parametrize(
    ("irk", "a", "b", "epoch", "message"),
    [
        (bytes(31), A1, B1, 0, "IRK must be 32..256 octets"),
        (bytes(32), A1, A1, 0, "two different AR-IDs"),
        (bytes(32), A1, IP("ff02::2"), 0, "not a unicast address"),
        (bytes(32), A1, "2001:db8:2::1", 0, "must be an IPv6Address"),
        (bytes(32), A1, B1, -1, "epoch must be an integer"),
        (bytes(32), A1, B1, 2**32, "epoch must be an integer"),
        (bytes(32), A1, B1, True, "epoch must be an integer"),
    ],
)
def test_invalid_inputs(irk: bytes, a: Any, b: Any, epoch: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        keys.derive_router_pair_psk(irk, a, b, epoch)


def test_repr_never_shows_the_key() -> None:
    derived = keys.derive_router_pair_psk(bytes(range(32)), A1, B1, 1)
    assert derived.psk.hex() not in repr(derived) and derived.psk.hex() not in str(derived.psk)


# --- epochs ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        (0, (99, 100)),  # at the boundary: the previous epoch's key still comes (within the overlap after it)
        (3_599, (99, 100)),
        (3_600, (100,)),
        (DAY - 3_601, (100,)),
        (DAY - 3_600, (100, 101)),  # within the overlap before the next boundary: the next epoch's key too
        (DAY - 1, (100, 101)),
    ],
)
def test_epochs_around_a_boundary(offset: int, expected: tuple[int, ...]) -> None:
    current, epochs = epochs_at(100 * DAY + offset, DAY, 3_600)
    assert (current, epochs) == (100, expected)


@given(
    now=st.floats(min_value=DAY, max_value=2**40, allow_nan=False),
    overlap=st.integers(1, DAY // 2 - 1),
    apart=st.floats(min_value=-0.999, max_value=0.999),
)
def test_two_routers_refreshing_within_the_overlap_share_a_key(now: float, overlap: int, apart: float) -> None:
    """docs/router.md's promise: the key one router initiates with (its current epoch's) is among those the other
    accepts, when their last refreshes lie less than ``overlap`` apart."""
    current, _ = epochs_at(now, DAY, overlap)
    _, accepted = epochs_at(now + apart * overlap, DAY, overlap)
    assert current in accepted


def test_bad_epoch_settings() -> None:
    with pytest.raises(ValueError, match="half the period"):
        epochs_at(0, 100, 50)


# --- the IRK in the store and the use case ------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 20_424 * DAY + 40_000.0  # mid-epoch

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ring() -> KekRing:
    return KekRing(Kek("k1", SecretBytes(os.urandom(32))))


@pytest.fixture
def store(redis_server: RedisServer, ring: KekRing) -> Iterator[RedisStore]:
    s = RedisStore.from_url(redis_server.url, ring, prefix=f"t{os.urandom(4).hex()}")
    yield s
    s.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def pairs(store: RedisStore, clock: Clock) -> RouterPairUseCases:
    return RouterPairUseCases(store, clock, ROUTERS)


def test_the_irk_is_created_once_and_stored_wrapped(
    store: RedisStore, redis_server: RedisServer, ring: KekRing
) -> None:
    made: list[bytes] = []

    def make() -> SecretBytes:
        made.append(os.urandom(32))
        return SecretBytes(made[-1])

    results: list[SecretBytes] = []
    barrier = threading.Barrier(8)

    def first_call() -> None:
        barrier.wait()
        results.append(store.run(store.ops.infrastructure_root_key(make, now=1.0)))

    threads = [threading.Thread(target=first_call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(results) == 8 and all(r == results[0] for r in results)  # one IRK, whoever created it
    assert results[0].reveal() in made
    assert store.run(store.ops.infrastructure_root_key(make, now=2.0)) == results[0]
    key = store.ops.irk_key()
    raw = redis.Redis.from_url(redis_server.url).get(key)
    assert raw is not None and results[0].reveal() not in raw and results[0].hex().encode() not in raw
    assert redis.Redis.from_url(redis_server.url).ttl(key) == -1  # never expires
    # another KEK cannot unwrap it
    other = RedisStore.from_url(redis_server.url, KekRing(Kek("k2", SecretBytes(os.urandom(32)))), prefix=store.ops.p)
    try:
        with pytest.raises(CryptoError, match="KEK 'k1' is not configured"):
            other.run(other.ops.infrastructure_root_key(make, now=3.0))
    finally:
        other.close()


def test_both_routers_of_a_pair_get_the_same_key_and_nobody_else(pairs: RouterPairUseCases, store: RedisStore) -> None:
    from_par = pairs.pair_psk(caller(PAR), peer=B1)
    from_nar = pairs.pair_psk(caller(NAR), peer=A1)
    assert (from_par.local, from_par.peer, from_par.peer_router) == (A1, B1, "nar")
    assert (from_nar.local, from_nar.peer, from_nar.peer_router) == (B1, A1, "par")
    assert [k.epoch for k in from_par.keys] == [20_424] == [from_par.epoch]
    assert from_par.keys == from_nar.keys
    irk = store.run(store.ops.infrastructure_root_key(lambda: SecretBytes(bytes(32)), now=0.0))
    assert from_par.keys[0].psk == keys.derive_router_pair_psk(irk, A1, B1, 20_424).psk
    assert (from_par.keys[0].not_before, from_par.keys[0].not_after) == (20_424 * DAY, 20_425 * DAY)
    # another address of the same router is another pair, another key
    second = pairs.pair_psk(caller(PAR), peer=B1, local=A2)
    assert second.keys[0].psk != from_par.keys[0].psk
    # the third router may ask for its own pairs only
    with pytest.raises(Forbidden) as info:
        pairs.pair_psk(caller(OTHER), peer=B1, local=A1)
    assert info.value.reason == "not-your-address"
    assert pairs.pair_psk(caller(OTHER), peer=B1).keys[0].psk != from_par.keys[0].psk


@pytest.mark.parametrize(
    ("who", "peer", "local", "error", "reason"),
    [
        (Caller("radius", "aaa"), B1, None, Forbidden, "wrong-role"),
        (Caller("mos1", "mos"), B1, None, Forbidden, "wrong-role"),
        (Caller("ghost", "ar", None), B1, None, Forbidden, "not-a-router"),
        (caller(PAR), IP("2001:db8:9::1"), None, NotFound, "unknown-peer"),
        (caller(PAR), A2, None, InvalidRequest, "same-router"),
        (caller(PAR), IP("ff02::2"), None, InvalidRequest, "bad-address"),
        (caller(PAR), B1, B1, Forbidden, "not-your-address"),
    ],
)
def test_refusals(pairs: RouterPairUseCases, who: Caller, peer: Any, local: Any, error: type, reason: str) -> None:
    with pytest.raises(error) as info:
        pairs.pair_psk(who, peer=peer, local=local)
    assert info.value.reason == reason  # type: ignore[attr-defined]


def test_rotation_hands_out_the_neighbouring_epoch_near_a_boundary(pairs: RouterPairUseCases, clock: Clock) -> None:
    clock.now = 20_425 * DAY - 60  # a minute before the boundary
    before = pairs.pair_psk(caller(PAR), peer=B1)
    assert (before.epoch, [k.epoch for k in before.keys]) == (20_424, [20_424, 20_425])
    clock.now = 20_425 * DAY + 60  # a minute after
    after = pairs.pair_psk(caller(NAR), peer=A1)
    assert (after.epoch, [k.epoch for k in after.keys]) == (20_425, [20_424, 20_425])
    assert before.keys == after.keys
    clock.now = 20_425 * DAY + 40_000
    later = pairs.pair_psk(caller(NAR), peer=A1)
    assert [k.epoch for k in later.keys] == [20_425] and later.keys[0] == after.keys[1]


def test_grants_are_audited_without_the_key(pairs: RouterPairUseCases, store: RedisStore) -> None:
    grant = pairs.pair_psk(caller(PAR), peer=B1)
    entries, _ = store.run(store.ops.read_audit(event=EVENT_ISSUED))
    [entry] = entries
    assert entry.fields == {
        "actor": "par",
        "ar": "par",
        "ar_address": str(A1),
        "peer": "nar",
        "peer_address": str(B1),
        "epoch": 20_424,
        "epochs": "20424",
    }
    assert grant.keys[0].psk.hex() not in json.dumps(entry.fields)
    with pytest.raises(NotFound):
        pairs.pair_psk(caller(PAR), peer=IP("2001:db8:9::1"))
    assert len(store.run(store.ops.read_audit(event=EVENT_ISSUED))[0]) == 1  # refusals look up no key
    assert store.verify_audit().ok


# --- the swanctl.conf renderer ---------------------------------------------------------------------------------


def _grant_json(local: str, peer: str, name: str, epoch: int, key_epochs: list[int]) -> dict[str, Any]:
    return {
        "local": local,
        "peer": peer,
        "peer_router": name,
        "epoch": epoch,
        "period": DAY,
        "keys": [{"epoch": e, "psk": f"{e:064x}", "not_before": 0, "not_after": 0} for e in key_epochs],
    }


def test_swanctl_rendering() -> None:
    grants = [
        pair_from_json(_grant_json(str(A1), str(B1), "nar", 11, [10, 11])),
        pair_from_json(_grant_json(str(A1), str(C1), "other.example", 11, [11, 12])),
        pair_from_json(_grant_json(str(A1), "2001:db8:3::2", "other.example", 11, [11])),
    ]
    text = render_swanctl(grants)
    assert "fmip-nar {" in text and "fmip-other-example {" in text and "fmip-other-example-2 {" in text
    assert "local_ts = 2001:db8:1::1/128[135]" in text and "remote_ts = 2001:db8:2::1/128[135]" in text
    assert text.count("mode = transport") == 3 and text.count("auth = psk") == 6
    assert "start_action = trap" in text
    # the current epoch's secret comes last for its pair, whether the other one is older or newer
    assert text.index("ike-fmip-nar-10 {") < text.index("ike-fmip-nar-11 {")
    assert text.index("ike-fmip-other-example-12 {") < text.index("ike-fmip-other-example-11 {")
    assert f"secret = 0x{11:064x}" in text
    assert text.count("{") == text.count("}")
    assert "start_action = none" in render_swanctl(grants[:1], start_action="none")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"local": "10.0.0.1"}, "not an IPv6 address"),
        ({"keys": []}, "non-empty list"),
        ({"keys": [{"epoch": 11, "psk": "00" * 31}]}, "32 octets"),
        ({"keys": [{"epoch": 11, "psk": "ZZ" * 32}]}, "32 octets"),
        ({"keys": [{"epoch": 10, "psk": "00" * 32}]}, "no key for its current epoch"),
        ({"epoch": "11"}, "epoch is not"),
    ],
)
def test_malformed_grants_are_refused_without_echoing_keys(change: dict[str, Any], message: str) -> None:
    doc = {**_grant_json(str(A1), str(B1), "nar", 11, [11]), **change}
    with pytest.raises(ValueError, match=message) as info:
        pair_from_json(doc)
    assert "00" * 16 not in str(info.value)
    good = _grant_json(str(A1), str(B1), "nar", 11, [11])
    with pytest.raises(ValueError, match="no 'peer'"):
        pair_from_json({k: v for k, v in good.items() if k != "peer"})

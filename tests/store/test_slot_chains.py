"""Slot chains (``store.slot_chains``): an accepted FBU's audit entry goes to a chain of its writer's (``store.writer``)
in the one script that also checks liveness and replay, on a Cluster the one in its session's hash slot; everything
else stays in the main chain. Checked on one redis-server (slot chains switched on: one chain per writer) and on a
3-node Cluster (on by default there): where the entries land, that writers never meet at a head, that reads merge
the chains, that checkpoints seal them (a slot chain cut or wiped below its seal is found), that an entry cannot be
moved between chains, and that export and retention follow every chain."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aaa_fmip.audit_export import AuditExporter, JsonLinesSink, verify_export
from aaa_fmip.crypto.audit import slot_genesis
from aaa_fmip.crypto.wrap import KekRing
from aaa_fmip.service import HandoverKeyService
from aaa_fmip.store import AuditEntry
from aaa_fmip.store.ops import ChainRef, Command, Op
from aaa_fmip.store.redis import RedisStore
from aaa_fmip.store.slots import CHAINS, SLOTS, chain_number, slot_of, slot_tag
from tests.store.conftest import StoreFactory
from tests.test_fbu_cache import session_request, verify_at_once
from tests.test_service import AAA, AR1, AUDITOR, PAR1, PCOA, Clock, fbu_for, new_mn

Node = tuple[bytes, bytes]


def test_every_slot_has_a_tag_that_hashes_to_it() -> None:
    assert all(slot_of(f"x:{{{slot_tag(slot)}}}:audit-head") == slot for slot in range(SLOTS))
    assert len({slot_tag(slot) for slot in range(SLOTS)}) == SLOTS
    numbers = [*range(SLOTS), *(chain_number(slot, writer) for slot in (0, 1, 16383) for writer in (1, 2, 255))]
    assert len({slot_genesis(number) for number in numbers}) == len(numbers)  # no two chains start alike
    assert chain_number(16383, 255) == CHAINS - 1


#: On one Redis each writer has one chain: the tests there give the i-th session's FBUs to writer i (as if verified
#: by the i-th of several processes), so that sessions' entries go to distinct chains as on a Cluster.
_writer_of: dict[Node, int] = {}


@pytest.fixture(params=["redis", "cluster"])
def service(request: pytest.FixtureRequest, make_store: StoreFactory) -> Iterator[HandoverKeyService]:
    if request.param == "redis":
        store = make_store(request.getfixturevalue("redis_server").url, slot_chains=True)
    else:
        store = make_store(request.getfixturevalue("redis_cluster").url)  # on by default on a Cluster
    yield HandoverKeyService(store, clock=Clock())


def redis_store(service: HandoverKeyService) -> RedisStore:
    store = service.store
    assert isinstance(store, RedisStore)
    return store


def call(store: RedisStore, *args: str | int | bytes) -> Any:
    """One raw command, sent to the node of its key: what anyone who can write to Redis can do."""

    def op() -> Op[Any]:
        return (yield Command(args))

    return store.run(op(), "test")


def rewrite(store: RedisStore, stream: str, rows: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
    """Replace a stream by ``rows`` (Redis has no in-place edit: delete and add again with the same ids)."""
    call(store, "DEL", stream)
    for entry_id, fields in rows:
        call(store, "XADD", stream, entry_id.decode(), *[x for kv in fields.items() for x in kv])


def verify(service: HandoverKeyService, node: Node, sequence: int) -> str:
    store = redis_store(service)
    if not store.ops.cluster:
        store.ops.writer = _writer_of.get(node, 0)
    verdict = service.verify_fbu(AR1, source=PCOA, destination=PAR1, mh=fbu_for(*node, PAR1, sequence))
    return verdict.verdict if verdict.valid else f"rejected:{verdict.reason}"


def sessions(service: HandoverKeyService, count: int) -> tuple[list[Node], list[int]]:
    """``count`` sessions whose accepted FBUs go to distinct chains, and those chains' numbers: on a Cluster
    sessions in distinct hash slots (one more is made for each that lands in a slot already taken:
    :func:`created` counts them all), on one Redis the i-th verified by writer i (:data:`_writer_of`)."""
    ops = redis_store(service).ops
    nodes: list[Node] = []
    numbers: list[int] = []
    while len(nodes) < count:
        node = new_mn()
        info = service.ingest_session(AAA, session_request(f"u{len(nodes)}", *node))
        slot = slot_of(ops.session_key(info.hmk_name))
        number = chain_number(slot, 0) if ops.cluster else chain_number(0, len(nodes))
        if number not in numbers:
            _writer_of[node] = number // SLOTS
            nodes.append(node)
            numbers.append(number)
    return nodes, numbers


def chain_of(store: RedisStore, slot: int) -> ChainRef:
    return store.ops.slot_chain(slot)


def created(service: HandoverKeyService) -> int:
    """How many sessions were made (their entries are in the main chain)."""
    return sum(e.event == "session.created" for e in everything(service))


def everything(service: HandoverKeyService) -> list[AuditEntry]:
    entries, cursor = service.read_audit(AUDITOR, limit=1000)
    assert cursor is None
    return entries


def in_pages(service: HandoverKeyService, limit: int) -> list[AuditEntry]:
    """The whole trail read in pages of ``limit``, each cursor naming the last entry's chain."""
    paged: list[AuditEntry] = []
    cursor: str | None = None
    while True:
        page, cursor = service.read_audit(AUDITOR, limit=limit, cursor=cursor)
        paged += page
        if cursor is None:
            return paged
        if page[-1].slot is not None:
            assert cursor == f"{page[-1].id}.{page[-1].slot}"


def test_accepted_fbus_go_to_their_slot_chains_the_rest_to_the_main_chain(service: HandoverKeyService) -> None:
    store = redis_store(service)
    assert store.ops.slot_chains
    nodes, slots = sessions(service, 3)
    for node in nodes:
        assert verify(service, node, 1) == "accepted"
        assert verify(service, node, 2) == "accepted"
    assert verify(service, nodes[0], 2) == "retransmission"
    assert verify(service, nodes[0], 1) == "rejected:replay"
    for slot in slots:
        ref = chain_of(store, slot)
        rows = call(store, "XRANGE", ref.stream, "-", "+")
        assert [r[1][b"n"] for r in rows] == [b"1", b"2"]
        assert rows[0][1][b"prev"].decode() == slot_genesis(slot)  # each slot chain starts from its own genesis
        assert call(store, "GET", ref.head).decode().startswith("2:")
    entries = everything(service)
    accepted = [e for e in entries if e.event == "fbu.verified" and e.fields["verdict"] == "accepted"]
    assert len(accepted) == 6 and {e.slot for e in accepted} == set(slots)
    others = [e for e in entries if e not in accepted]
    assert all(e.slot is None for e in others)
    assert [e.event for e in others if e.event.startswith("fbu.")] == ["fbu.verified", "fbu.rejected"]
    check = store.verify_audit()
    assert check.ok, check.problem
    assert check.entries == len(entries) and check.n == len(others)  # n: the main chain's position


def test_verifications_at_once_chain_per_slot(service: HandoverKeyService) -> None:
    """Verifications waiting together go in one pipeline, each chained onto the one before in its chain: on a
    Cluster two of one session in its slot chain, the others each in their own; on one Redis all five in the
    writer's one chain."""
    nodes, slots = sessions(service, 4)
    for node in nodes:  # cache every session: then the verifications reach the commit in the order sent
        assert verify(service, node, 1) == "accepted"
    store = redis_store(service)
    store.ops.writer = 0  # on one Redis: all five by writer 0, into its one chain (on a Cluster: by slot)
    fbus = [fbu_for(*node, PAR1, 2) for node in nodes] + [fbu_for(*nodes[0], PAR1, 3)]
    verdicts = verify_at_once(service, fbus)
    assert [v.verdict for v in verdicts] == ["accepted"] * 5
    heads = [call(store, "GET", chain_of(store, slot).head).decode() for slot in slots]
    assert [h.split(":")[0] for h in heads] == (["3", "2", "2", "2"] if store.ops.cluster else ["6", "1", "1", "1"])
    assert store.verify_audit().ok


def test_reads_merge_the_chains_in_stream_order_and_page_on(service: HandoverKeyService) -> None:
    nodes, _ = sessions(service, 3)
    for sequence in (1, 2, 3):
        for node in nodes:
            assert verify(service, node, sequence) == "accepted"
    whole = everything(service)
    assert len(whole) == created(service) + 9  # the sessions created, nine FBUs accepted
    keys = [(*map(int, e.id.split("-")), -1 if e.slot is None else e.slot) for e in whole]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert in_pages(service, 2) == whole
    only, _ = service.read_audit(AUDITOR, event="fbu.verified", limit=1000)
    assert len(only) == 9 and all(e.slot is not None for e in only)


def test_checkpoint_seals_the_slot_chains_and_a_cut_below_a_seal_is_found(service: HandoverKeyService) -> None:
    store = redis_store(service)
    nodes, slots = sessions(service, 2)
    for sequence in (1, 2, 3):
        for node in nodes:
            assert verify(service, node, sequence) == "accepted"
    kept = store.checkpoint(now=5000.0)
    seals = [e for e in everything(service) if e.event == "audit.seal"]
    assert len(seals) == 1 and seals[0].slot is None
    stated = dict(item.split(":", 1) for item in str(seals[0].fields["slots"]).split(","))
    assert set(stated) == {str(s) for s in slots} and all(v.startswith("3:") for v in stated.values())
    assert store.checkpoint(now=5001.0).n == kept.n  # nothing moved: no new seal
    assert store.verify_audit(kept).checkpoint == "matches"
    # cut the newest entry of one slot chain and move its head back: consistent in Redis, but below the seal
    ref = chain_of(store, slots[0])
    rows = call(store, "XRANGE", ref.stream, "-", "+")
    call(store, "XDEL", ref.stream, rows[-1][0].decode())
    call(store, "SET", ref.head, f"2:{rows[1][1][b'mac'].decode()}")
    check = store.verify_audit()
    assert not check.ok
    assert check.problem == f"slot chain {slots[0]}: shorter than its last seal in the main chain: cut or wiped since"
    # wipe another slot chain altogether
    other = chain_of(store, slots[1])
    call(store, "DEL", other.stream)
    call(store, "DEL", other.head)
    assert redis_store(service).audit_chains()[1:] == [ref]  # no longer seen as a chain at all
    problems = store.verify_audit().problem
    assert problems is not None and problems.startswith(f"slot chain {slots[0]}:")
    rewrite(store, ref.stream, rows)  # the cut chain put back as it was
    call(store, "SET", ref.head, f"3:{rows[-1][1][b'mac'].decode()}")
    assert store.verify_audit().problem == f"slot chain {slots[1]}: sealed at n=3 but gone from Redis: wiped"


def test_an_entry_moved_to_another_slot_chain_does_not_verify(service: HandoverKeyService) -> None:
    store = redis_store(service)
    nodes, slots = sessions(service, 2)
    for node in nodes:
        assert verify(service, node, 1) == "accepted"
    a, b = chain_of(store, slots[0]), chain_of(store, slots[1])
    (row,) = call(store, "XRANGE", a.stream, "-", "+")
    (own,) = call(store, "XRANGE", b.stream, "-", "+")
    rewrite(store, b.stream, [(own[0], row[1])])  # a's entry at b's first position
    check = store.verify_audit()
    assert not check.ok and check.first_bad_id == f"{own[0].decode()}.{slots[1]}"
    assert check.problem == f"slot chain {slots[1]}: an entry was edited, forged, inserted or deleted"


def test_export_and_retention_follow_every_chain(
    service: HandoverKeyService, tmp_path: Path, kek_ring: KekRing
) -> None:
    store = redis_store(service)
    nodes, slots = sessions(service, 2)
    for sequence in (1, 2, 3, 4):
        for node in nodes:
            assert verify(service, node, sequence) == "accepted"
    path = tmp_path / "audit.jsonl"
    exporter = AuditExporter(store, [JsonLinesSink(path)], retain=1, clock=lambda: 6000.0)
    made = created(service)
    assert exporter.export_once() == made + 8
    lines = path.read_text().splitlines()
    by_chain: dict[int | None, list[int]] = {}
    for line in lines:
        doc = json.loads(line)
        by_chain.setdefault(doc.get("slot"), []).append(doc["n"])
    assert by_chain == {None: list(range(1, made + 1)), slots[0]: [1, 2, 3, 4], slots[1]: [1, 2, 3, 4]}
    assert verify_export(lines, kek_ring).ok
    assert store.audit_exported(slots[0])[0] == 4 and store.audit_exported()[0] == made
    assert exporter.export_once() == 0
    assert exporter.trim() == made - 1 + 3 + 3  # each chain keeps its newest entry
    assert verify(service, nodes[0], 5) == "accepted"  # chains on from the anchor
    check = store.verify_audit()
    assert check.ok, check.problem
    assert exporter.export_once() == 1
    lines = path.read_text().splitlines()
    assert verify_export(lines, kek_ring).ok
    assert json.loads(lines[-1])["slot"] == slots[0] and json.loads(lines[-1])["n"] == 5
    # a slot chain's line moved out of order in the copy is found
    assert not verify_export([*lines[:2], lines[3], lines[2], *lines[4:]], kek_ring).ok


def test_a_group_written_but_not_recorded_is_not_written_twice(
    service: HandoverKeyService, tmp_path: Path, kek_ring: KekRing
) -> None:
    """A crash between a sink's write and the recorded positions: the group's lines (of several chains) are at
    the end of the file, and at the next start the file sink skips what it holds, chain by chain."""
    store = redis_store(service)
    nodes, slots = sessions(service, 3)
    assert verify(service, nodes[0], 1) == "accepted"
    path = tmp_path / "audit.jsonl"
    made = created(service)
    assert AuditExporter(store, [JsonLinesSink(path)], clock=lambda: 1.0).export_once() == made + 1
    assert verify(service, nodes[0], 2) == "accepted"
    assert verify(service, nodes[1], 1) == "accepted"
    unrecorded = [store.read_audit_raw(None, 10, chain_of(store, slot))[-1] for slot in slots[:2]]
    with path.open("a") as f:  # the new entries reached the file, their positions did not reach Redis
        f.writelines(_line(stored) + "\n" for stored in unrecorded)
    assert verify(service, nodes[2], 1) == "accepted"  # and a third chain moved meanwhile
    assert AuditExporter(store, [JsonLinesSink(path)], clock=lambda: 1.0).export_once() == 3
    lines = path.read_text().splitlines()
    assert len(lines) == made + 1 + 2 + 1 and verify_export(lines, kek_ring).ok
    want: dict[int | None, tuple[int, str | None, str]] = {slot: store.audit_exported(slot) for slot in slots}
    assert store.audit_exported_all() == {None: store.audit_exported(), **want}
    assert [store.audit_exported(slot)[0] for slot in slots] == [2, 1, 1]


def _line(stored: Any) -> str:
    from aaa_fmip.audit_export import export_line

    return export_line(stored.entry, stored.at_text)


def test_a_chain_lost_with_the_registry_is_started_again_and_registered(service: HandoverKeyService) -> None:
    """Slot chains and their registry lost (as after a flush): the next accepted FBU starts its chain again and
    adds its slot to the registry again, so that whole-trail operations see the chain."""
    store = redis_store(service)
    (node,), (slot,) = sessions(service, 1)
    assert verify(service, node, 1) == "accepted"
    ref = chain_of(store, slot)
    assert call(store, "SMEMBERS", store.ops.slot_chains_key()) == {str(slot).encode()}
    for key in (store.ops.slot_chains_key(), ref.head, ref.stream):
        call(store, "DEL", key)
    assert store.audit_chains() == [store.ops.main_chain()]
    assert verify(service, node, 2) == "accepted"
    assert call(store, "GET", ref.head).decode().startswith("1:")
    assert store.audit_chains() == [store.ops.main_chain(), ref]  # registered again
    assert [e.fields["sequence"] for e in everything(service) if e.slot == slot] == [2]


def test_a_sealed_chain_is_verified_even_if_the_registry_lost_it(service: HandoverKeyService) -> None:
    store = redis_store(service)
    nodes, slots = sessions(service, 2)
    for node in nodes:
        assert verify(service, node, 1) == "accepted"
    store.checkpoint(now=7000.0)  # seals both chains
    call(store, "SREM", store.ops.slot_chains_key(), str(slots[0]))
    assert store.audit_chains()[1:] == [chain_of(store, slots[1])]  # no longer read as part of the trail
    check = store.verify_audit()
    assert check.ok and check.entries == created(service) + 1 + 2  # sessions, the seal, both FBUs: still checked
    ref = chain_of(store, slots[0])
    rows = call(store, "XRANGE", ref.stream, "-", "+")
    rewrite(store, ref.stream, [(rows[0][0], {**rows[0][1], b"at": b"1.000000"})])  # and still protected
    assert store.verify_audit().problem == f"slot chain {slots[0]}: an entry was edited, forged, inserted or deleted"


@pytest.mark.parametrize("numbers", [(0, 1), (0, 0)], ids=["writers-of-their-own", "one-writer-number"])
@pytest.mark.parametrize("backend", ["redis", "cluster"])
def test_writers_never_meet_at_a_head(
    request: pytest.FixtureRequest,
    make_store: StoreFactory,
    kek_ring: KekRing,
    tmp_path: Path,
    backend: str,
    numbers: tuple[int, int],
) -> None:
    """Two processes verifying the FBUs of the same sessions in turn (as two workers do, whichever gets the
    connection). With writer numbers of their own each appends to chains of its own, and no script of either is
    refused for a head the other moved; with one number between them (as before writers were numbered) they
    refuse each other's nearly every time, each refusal a call more. The trail stays whole either way: merged
    reads, seals, verification and export cover the chains of both writers."""
    url = request.getfixturevalue("redis_server" if backend == "redis" else "redis_cluster").url
    a = make_store(url, slot_chains=True, writer=numbers[0])
    b = RedisStore.from_url(url, kek_ring, prefix=a.ops.p, slot_chains=True, writer=numbers[1])
    try:
        one, two = HandoverKeyService(a, clock=Clock()), HandoverKeyService(b, clock=Clock())
        nodes = [new_mn() for _ in range(3)]
        infos = [one.ingest_session(AAA, session_request(f"w{i}", *node)) for i, node in enumerate(nodes)]
        for node in nodes:
            for sequence in range(1, 7):
                by = one if sequence % 2 else two
                verdict = by.verify_fbu(AR1, source=PCOA, destination=PAR1, mh=fbu_for(*node, PAR1, sequence))
                assert verdict.valid and verdict.verdict == "accepted"
        moved = a.ops.chain.moved + b.ops.chain.moved
        slots = [slot_of(a.ops.session_key(info.hmk_name)) if backend == "cluster" else 0 for info in infos]
        chains = {chain_number(slot, n) for slot in slots for n in numbers}
        if numbers[0] != numbers[1]:
            assert moved == 0
        else:
            assert moved >= 15  # every FBU but each session's first found the other process had moved the head
        accepted = [e for e in everything(one) if e.event == "fbu.verified"]
        assert len(accepted) == 18 and {e.slot for e in accepted} == chains
        assert in_pages(one, 4) == everything(two)
        a.checkpoint(now=8000.0)
        (seal,) = [e for e in everything(one) if e.event == "audit.seal"]
        assert {int(item.split(":")[0]) for item in str(seal.fields["slots"]).split(",")} == chains
        check = b.verify_audit()
        assert check.ok and check.entries == 3 + 1 + 18, check.problem
        path = tmp_path / "audit.jsonl"
        assert AuditExporter(b, [JsonLinesSink(path)], clock=lambda: 1.0).export_once() == 3 + 1 + 18
        assert verify_export(path.read_text().splitlines(), kek_ring).ok
    finally:
        b.close()


def test_a_cursor_names_any_slot_chain() -> None:
    from aaa_fmip.store.audit import entry_cursor, parse_cursor

    last = entry_cursor("1700000000000-3", CHAINS - 1)
    assert parse_cursor(last) == ((1700000000000, 3), CHAINS - 1)
    assert parse_cursor(f"1700000000000-3.{CHAINS}") is None


def test_an_export_pass_reads_the_chains_the_writers_said_they_moved(
    service: HandoverKeyService, tmp_path: Path, kek_ring: KekRing
) -> None:
    """Periodic export passes read the heads of the chains writers said they appended to (at most once a second
    each, off the FBU's way) instead of every chain's; a chain appended to and never said (the writer crashed
    first) waits for the next full pass, and nothing is exported twice or lost."""
    store = redis_store(service)
    nodes, numbers = sessions(service, 3)
    path = tmp_path / "audit.jsonl"
    exporter = AuditExporter(store, [JsonLinesSink(path)], clock=lambda: 1.0)
    made = created(service)
    assert exporter.export_once() == made  # a full pass
    assert verify(service, nodes[0], 1) == "accepted"  # said at once: this process had not said anything yet
    store.ops.moved_reported_at = math.inf  # from here on, as if always within the second of the last saying
    assert verify(service, nodes[1], 1) == "accepted"  # kept for the next time
    assert store.ops.moved_pending == {numbers[1]}
    assert exporter.export_once(full=False) == 1
    assert json.loads(path.read_text().splitlines()[-1])["slot"] == numbers[0]
    store.report_moved(now=time.time())  # as when the second is over, or the store closes
    assert exporter.export_once(full=False) == 1
    assert json.loads(path.read_text().splitlines()[-1])["slot"] == numbers[1]
    store.ops.moved_reported_at = math.inf
    assert verify(service, nodes[2], 1) == "accepted"
    store.ops.moved_pending.clear()  # appended, never said: the writer died first
    assert exporter.export_once(full=False) == 0
    assert exporter.export_once(full=True) == 1  # the full pass finds it
    lines = path.read_text().splitlines()
    assert len(lines) == made + 3 and verify_export(lines, kek_ring).ok
    assert exporter.export_once(full=False) == 0 and exporter.export_once(full=True) == 0

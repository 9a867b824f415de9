"""Hash slots and the hash tags that name them: where a slot's audit chain lives (docs/api.md,
"Slot chains").

A Redis Cluster places a key by the CRC16 of its hash tag (the text between the first ``{`` and the next ``}``)
modulo 16384; redis-py computes it (:func:`redis.crc.key_slot`). A script may only touch keys of one slot, so an
FBU verification can write its audit entry in the same script as the replay state only if the chain it appends
to lives in the session's slot. The session keys are tagged by the HMK-Name, so such a chain needs a key whose
tag hashes to that very slot: :func:`slot_tag` is the inverse of the slot function over a fixed family of tags
(``s`` followed by a number in hex, the first of the family that lands in each slot). redis-py has the forward
function only; the inverse is a table built once per process (about 300 000 CRCs, a fraction of a second).

Each writer (a process that verifies FBUs: ``store.writer``) appends to chains of its own, so that writers never
wait for one another at a head: a chain is numbered ``slot + 16384 * writer`` (:func:`chain_number`), its keys
carry the slot's tag, and those of writer 0 keep the names slot chains had before writers were numbered.
"""

from __future__ import annotations

import threading
from binascii import crc_hqx
from typing import Final

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

SLOTS: Final = REDIS_CLUSTER_HASH_SLOTS
WRITERS: Final = 256  # store.writer is 0-255
CHAINS: Final = SLOTS * WRITERS  # slot-chain numbers are 0 to CHAINS - 1

_table: list[str] | None = None
_table_lock = threading.Lock()


def slot_of(key: str) -> int:
    """The hash slot of ``key`` (its hash tag's, when it has one), as a Redis Cluster computes it."""
    return key_slot(key.encode())


def _build() -> list[str]:
    table: list[str | None] = [None] * SLOTS
    missing = SLOTS
    i = 0
    while missing:
        tag = f"s{i:x}"
        slot = crc_hqx(tag.encode(), 0) % SLOTS  # key_slot() of a tag without braces, without its search
        if table[slot] is None:
            table[slot] = tag
            missing -= 1
        i += 1
    return [t for t in table if t is not None]


def slot_tag(slot: int) -> str:
    """A hash tag whose keys live in ``slot`` (the same tag for the same slot in every process and version)."""
    global _table
    if not 0 <= slot < SLOTS:
        raise ValueError("a hash slot is 0-16383")
    table = _table
    if table is None:
        with _table_lock:
            if _table is None:
                _table = _build()
            table = _table
    return table[slot]


def chain_number(slot: int, writer: int) -> int:
    """The number of the chain of ``writer`` in ``slot`` (the module docstring)."""
    if not 0 <= slot < SLOTS or not 0 <= writer < WRITERS:
        raise ValueError("a hash slot is 0-16383 and a writer 0-255")
    return slot + SLOTS * writer

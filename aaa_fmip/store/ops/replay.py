"""FBU replay state and verification commits (RFC 5568 §6.2.3 sequence numbers), and SEND nonces."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import cast

from aaa_fmip.errors import ReplayNotReplicated, StoreError, StoreUnavailable
from aaa_fmip.store import (
    ReplayOutcome,
)
from aaa_fmip.store import audit as chain
from aaa_fmip.store import scripts as lua
from aaa_fmip.store.ops.audit import AuditOps
from aaa_fmip.store.ops.base import (
    AUDIT_APPEND_ATTEMPTS,
    SEQ_MODULUS,
    Arg,
    Command,
    CommitResult,
    Op,
    Pipeline,
    Script,
    VerifyCommit,
    _check_name,
    _verdict,
    _verify_outcome,
)


class ReplayOps(AuditOps):
    """FBU replay state and verification commits (RFC 5568 §6.2.3 sequence numbers), and SEND nonces."""

    # --- replay ------------------------------------------------------------------------------------------

    def check_replay(
        self, scope: bytes, ar_id: bytes, sequence: int, authenticator: bytes, *, ttl: int
    ) -> Op[ReplayOutcome]:
        """Atomically check and record an FBU Sequence Number for (scope, AR) (architecture.md §3).

        Newer than the last accepted (serial arithmetic mod 2^16, window 2^15) or no state: "accepted" and
        recorded with the SHA-256 of the authenticator; same number and same authenticator:
        "retransmission"; anything else: "replay". State lives ``ttl`` seconds after the last acceptance.
        """
        _check_name(scope, what="scope")
        if not ar_id:
            raise ValueError("ar_id must not be empty")
        if not 0 <= sequence < SEQ_MODULUS:
            raise ValueError("sequence must be a 16-bit unsigned integer")
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        ah = hashlib.sha256(authenticator).hexdigest()
        keys = (self.replay_prefix(scope) + ar_id.hex(), self.replay_ars_key(scope))
        wait = self.replay_wait
        acks: int | None = None
        if wait is None:
            out = yield Script(lua.REPLAY, keys, (sequence, ah, ttl * 1000, ar_id.hex(), 0))
        else:
            # WAIT right behind the script on its connection: no extra round trip (store/durability.py)
            script = Script(lua.REPLAY, keys, (sequence, ah, ttl * 1000, ar_id.hex(), 1))
            out, acks_reply = yield Pipeline((script, Command(("WAIT", *wait))), node_key=keys[0])
            acks = int(acks_reply)
        if out not in (b"accepted", b"retransmission", b"replay"):
            raise StoreError("unexpected replay-check reply from Redis")
        outcome = cast(ReplayOutcome, out.decode())
        if wait is not None and acks is not None and outcome != "replay" and acks < wait[0]:
            # a "replay" wrote nothing: it stands; any other verdict stands on an update too few replicas hold
            raise ReplayNotReplicated(
                f"the FBU's replay update was acknowledged by {acks} of {wait[0]} replica(s) in time; "
                "it is not accepted"
            )
        return outcome

    def verify_commit(self, commit: VerifyCommit) -> Op[CommitResult]:
        """The commit of one FBU verification (architecture.md §3; :class:`VerifyCommit` says what it checks).

        Where there are no hash slots and no WAIT is configured (:attr:`verify_audits_inline`), it is
        :meth:`verify_commit_many` of one: liveness, replay and an accepted verdict's audit entry in one script
        (another verdict's entry is left to the caller). On a Cluster (the audit stream lives in another slot) or
        with ``replay_wait``, liveness and replay are one script in the record's slot and the entry is left to
        the caller. Returns the verdict (None: the record was revoked or replaced since it was read; nothing was
        written) and whether the entry was written."""
        if self.verify_audits_inline:
            (result,) = yield from self.verify_commit_many([commit])
            if isinstance(result, BaseException):
                raise result
            return result
        wait = self.replay_wait
        if wait is None:
            (result,) = yield from self.verify_slot_many([commit])
            return result
        script = self._slot_script(commit)
        # WAIT right behind the script on its connection (store/durability.py)
        reply, acks_reply = yield Pipeline((script, Command(("WAIT", *wait))), node_key=commit.record_key)
        acks = int(acks_reply)
        outcome = _verify_outcome(reply)
        if outcome not in (None, "replay") and acks < wait[0]:
            raise ReplayNotReplicated(
                f"the FBU's replay update was acknowledged by {acks} of {wait[0]} replica(s) in time; "
                "it is not accepted"
            )
        return outcome, False

    def verify_commit_many(self, commits: Sequence[VerifyCommit]) -> Op[list[CommitResult | BaseException]]:
        """Several FBU verifications, each one script (no WAIT) that writes an accepted verdict's audit entry with
        its replay state, pipelined in one round trip (on a Cluster, one per node, the nodes in parallel). The
        entry goes to the main chain, or with :attr:`slot_chains` to this writer's slot chain (:meth:`fbu_chain`). Each
        script's entry is chained onto the head the previous one of its chain leaves when it accepts (the common
        case). A verdict other than accepted writes nothing (its entry is the caller's, as on a Cluster without
        slot chains). A script whose head is not the expected one (the previous FBU was not accepted, or another
        writer appended meanwhile) writes nothing and is sent again, chained onto the head Redis reported.
        Results in order; a script past its deadline gives StoreUnavailable for that verification alone. The
        caller holds this process's turn for the audit chain."""
        prepared = []
        for c in commits:
            if c.accepted is None:
                raise ValueError("a commit with its entry needs the accepted verdict's entry")
            prepared.append((c, *self._verify_args(c), chain.pending([c.accepted]), self.fbu_chain(c.record_key)))
        if not self.slot_chains and self.chain.head_hint is None:
            self.chain.head_hint = chain.parse_head((yield Command(("GET", self.audit_head_key()))))
        results: list[CommitResult | BaseException | None] = [None] * len(commits)
        todo = list(range(len(commits)))
        for _ in range(AUDIT_APPEND_ATTEMPTS):
            slots = {slot for i in todo if (slot := prepared[i][5].slot) is not None}
            if new := sorted(slots - self.slot_chains_registered):
                # before a chain's first entry: its slot in the registry that whole-trail operations read (once per
                # slot and process)
                yield Command(("SADD", self.slot_chains_key(), *map(str, new)))
                self.slot_chains_registered.update(new)
            at = yield from self.server_deadline(None)
            calls: list[Command | Script] = []
            heads_after: list[tuple[int, str]] = []
            expected_of: dict[int | None, tuple[int, str]] = {}  # per chain, the head the batch leaves so far
            for i in todo:
                commit, record_key, replay_keys, replay_args, entry, ref = prepared[i]
                expected = expected_of.get(ref.slot) or self._head_hint(ref.slot)
                entry_args, _, chained = self.chain.append_args(entry, expected, ref.genesis)
                calls.append(
                    Script(
                        lua.VERIFY_AUDITED,
                        (ref.head, ref.stream, record_key, *replay_keys),
                        (at, chain.head_value(expected), commit.digest, *replay_args, *entry_args),
                    )
                )
                expected_of[ref.slot] = (chained[0][0], chained[0][2])
                heads_after.append(expected_of[ref.slot])
            replies = yield (calls[0] if len(calls) == 1 else Pipeline(tuple(calls)))
            if len(calls) == 1:
                replies = [replies]
            again: list[int] = []
            for i, after, reply in zip(todo, heads_after, replies, strict=True):
                slot = prepared[i][5].slot
                if not isinstance(reply, list) or not reply or not isinstance(reply[0], int):
                    raise StoreError("unexpected FBU-verification reply from Redis")
                if reply[0] == -1:
                    results[i] = StoreUnavailable("the FBU verification reached Redis after its deadline; not written")
                elif reply[0] == 0 and len(reply) == 2:
                    held = chain.parse_head(reply[1])  # what Redis holds: chain the retry onto it
                    self.chain.moved += 1
                    if slot is not None and held[0] == 0 and self._head_hint(slot)[0] > 0:
                        self.slot_chains_registered.clear()  # a chain this process wrote is gone: maybe the registry
                    self._set_head_hint(slot, held)
                    again.append(i)
                elif reply[0] == 4 and len(reply) == 2:
                    results[i] = (_verdict(reply[1]), False)  # not accepted: nothing written
                else:
                    outcome = _verify_outcome(reply[:2])
                    if outcome is not None:
                        if outcome != "accepted":
                            raise StoreError("unexpected FBU-verification reply from Redis")
                        self._set_head_hint(slot, after)
                        if slot is not None:
                            self.moved_pending.add(slot)
                    results[i] = (outcome, outcome is not None)
            if not again:
                if self.moved_pending:  # once a second: the slot chains moved, for the exporter
                    yield from self.report_moved(now=self.clock())
                return [r for r in results if r is not None]
            todo = again
        raise StoreError(f"audit append lost {AUDIT_APPEND_ATTEMPTS} races in a row; try again")

    def _head_hint(self, slot: int | None) -> tuple[int, str]:
        """The head this process last saw of a chain (an unknown slot chain: empty; a wrong guess costs a retry)."""
        if slot is None:
            return self.chain.head_hint or chain.GENESIS_HEAD
        return self.chain.slot_heads.get(slot, chain.GENESIS_HEAD)

    def _set_head_hint(self, slot: int | None, head: tuple[int, str]) -> None:
        if slot is None:
            self.chain.head_hint = head
        else:
            self.chain.slot_heads[slot] = head

    def verify_slot_many(self, commits: Sequence[VerifyCommit]) -> Op[list[CommitResult]]:
        """Several FBU verifications where the audit entry cannot go with the script (a Cluster, no WAIT): each
        one's liveness and replay script in its record's slot, sent together (on a Cluster, one round trip per
        node, the nodes in parallel). Results in order, none with its entry written (the caller appends them).
        A failure fails them all, as one script's failure would fail that one (StoreUnavailable, ...)."""
        if self.replay_wait is not None:
            raise ValueError("with WAIT each verification needs its own connection: use verify_commit")
        scripts = [self._slot_script(commit) for commit in commits]
        if len(scripts) == 1:
            return [(_verify_outcome((yield scripts[0])), False)]
        replies = yield Pipeline(tuple(scripts))
        return [(_verify_outcome(reply), False) for reply in replies]

    def _slot_script(self, commit: VerifyCommit) -> Script:
        """The liveness-and-replay script of one verification, in its record's slot (``scripts.VERIFY_SLOT``)."""
        record_key, replay_keys, replay_args = self._verify_args(commit)
        return Script(lua.VERIFY_SLOT, (record_key, *replay_keys), (commit.digest, *replay_args))

    def _verify_args(self, commit: VerifyCommit) -> tuple[str, tuple[str, str], tuple[Arg, ...]]:
        _check_name(commit.scope, what="scope")
        if not commit.ar_id:
            raise ValueError("ar_id must not be empty")
        if not 0 <= commit.sequence < SEQ_MODULUS:
            raise ValueError("sequence must be a 16-bit unsigned integer")
        if commit.ttl <= 0:
            raise ValueError("ttl must be positive")
        ah = hashlib.sha256(commit.authenticator).hexdigest()
        ar = commit.ar_id.hex()
        replay_keys = (self.replay_prefix(commit.scope) + ar, self.replay_ars_key(commit.scope))
        flag = "0" if self.replay_wait is None else "1"
        return commit.record_key, replay_keys, (commit.sequence, ah, commit.ttl * 1000, ar, flag)

    def remember_nonce(self, scope: bytes, nonce: bytes, *, ttl: int) -> Op[bool]:
        """True the first time (scope, nonce) is seen within ``ttl`` seconds, False afterwards (SEND replay)."""
        _check_name(scope, what="scope")
        if not nonce:
            raise ValueError("nonce must not be empty")
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        return bool((yield Command(("SET", self.nonce_key(scope, nonce), b"1", "NX", "EX", ttl))))

"""Random interleavings of FBUs (fresh, repeated, forged, old), lost HIs and HAcks, and the clock, through a PAR and
a NAR core: nothing raises, no handover stays open once its timers have run, an FBU gets at most one FBack
octet string however often it is repeated while the PAR remembers it (a run stays under the 30 s it does), and
no HI goes out more than 1 + HI_RETRIES times."""

from __future__ import annotations

from collections import Counter

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from aaa_fmip import mn
from aaa_fmip.router import core
from aaa_fmip.router.verify import ReceivedMh
from tests.router._pair import PAR, PCOA, Pair, node_key, predictive_fbu

_OTHER = mn.derive_handover_key(mn.derive_master_key(emsk=bytes(64), eap_session_id=b"z" * 8), PAR)
_FORGED = type(_OTHER)(_OTHER.hk, _OTHER.hk_name, node_key().spi)
_PACKETS = {seq: predictive_fbu(sequence=seq) for seq in range(1, 9)}
_FORGERIES = {seq: predictive_fbu(sequence=seq, key=_FORGED) for seq in range(1, 9)}


class PairMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.pair = Pair()
        self.now = 0.0
        self.lose_to_nar = False

    def _deliver(self, effects: list[core.Effect]) -> None:
        self.pair.deliver_to_nar = not self.lose_to_nar
        self.pair.run(effects, self.now)

    @rule(seq=st.integers(1, 8), forged=st.booleans())
    def fbu(self, seq: int, forged: bool) -> None:
        packet = (_FORGERIES if forged else _PACKETS)[seq]
        received = ReceivedMh(packet.source, packet.destination, packet.home_address, packet.mh)
        self._deliver(self.pair.par.receive_mh(received, self.now))

    @rule(lose=st.booleans())
    def link_to_nar(self, lose: bool) -> None:
        self.lose_to_nar = lose

    @rule(seconds=st.sampled_from([0.01, 0.1, 0.25, 0.5, 1.0]))
    def time_passes(self, seconds: float) -> None:
        target = self.now + seconds
        while True:  # every timer at its own time, the earliest first, as a driver would run them
            due = [d for r in (self.pair.par, self.pair.nar) if (d := r.next_deadline()) is not None and d <= target]
            if not due:
                break
            self.now = min(due)
            for router in (self.pair.par, self.pair.nar):
                self._deliver(router.handle_timer(self.now))
        self.now = target

    @invariant()
    def bounded_his(self) -> None:
        his = Counter(s.mh for s in self.pair.wire if s.destination != PAR)
        assert all(n <= 1 + core.HI_RETRIES for n in his.values())

    @invariant()
    def one_fback_per_fbu(self) -> None:
        by_sequence: dict[int, set[bytes]] = {}
        for sent in self.pair.to_node:
            by_sequence.setdefault(int.from_bytes(sent.mh[8:10], "big"), set()).add(sent.mh)
        assert all(len(v) == 1 for v in by_sequence.values())
        assert all(s.destination == PCOA for s in self.pair.to_node)

    def teardown(self) -> None:
        self.time_passes(100.0)
        assert self.pair.par.open_handovers() == 0
        assert self.pair.par.next_deadline() is None and self.pair.nar.next_deadline() is None


PairMachine.TestCase.settings = settings(max_examples=80, stateful_step_count=25, deadline=None)
test_pair_machine = PairMachine.TestCase

"""The asyncio driver's own decisions, without sockets: what leaves when verification itself fails."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aaa_fmip.router import core
from aaa_fmip.router.driver import RouterAgent
from aaa_fmip.router.keycache import HandoverKeyCache, Verifier
from aaa_fmip.router.verify import FileReplayJournal, ReceivedMh, ReplayState
from aaa_fmip.wire import mh as mhwire
from tests.router._pair import PAR, PCOA, make_core, predictive_fbu, router_key


class _Captured(RouterAgent):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.sent: list[core.SendMh] = []

    def _send_mh(self, effect: core.SendMh) -> None:
        self.sent.append(effect)


def test_a_failing_replay_journal_gives_fback_128_not_a_dead_handover(tmp_path: Path) -> None:
    journal = FileReplayJournal(tmp_path / "replay", now=0.0)
    replay = ReplayState(journal)
    journal.close()  # every later write fails, as on a vanished disk
    cache = HandoverKeyCache()
    cache.put(router_key())
    par = make_core("par")
    agent = _Captured(par, Verifier(cache, replay, None, clock=lambda: 1.0), clock=lambda: 1.0)
    packet = predictive_fbu()

    async def go() -> None:
        effects = par.receive_mh(ReceivedMh(packet.source, packet.destination, packet.home_address, packet.mh), 1.0)
        [verify] = [e for e in effects if isinstance(e, core.VerifyFbu)]
        await agent._verify(verify)

    asyncio.run(go())
    [sent] = agent.sent
    fback = mhwire.decode_mh(sent.mh, source=PAR, destination=PCOA)
    assert isinstance(fback, mhwire.FBack) and fback.status == mhwire.FBackStatus.REASON_UNSPECIFIED
    assert par.open_handovers() == 0

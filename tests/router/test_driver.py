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


def test_verdict_reports_are_bounded_and_kept_through_an_outage(tmp_path: Path) -> None:
    import httpx

    from aaa_fmip.router.keycache import RestKeyService
    from tests.support.redis_server import free_port

    cache = HandoverKeyCache()
    cache.put(router_key())
    par = make_core("par")

    async def go() -> tuple[int, float, float]:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{free_port()}", timeout=0.5) as client:
            service = RestKeyService(client)  # nothing listens: the service is down
            verifier = Verifier(cache, ReplayState(), None, clock=lambda: 1.0)
            agent = _Captured(par, verifier, clock=lambda: 1.0, service=service, max_buffered_verdicts=2)
            assert agent.report_verdicts
            for seq in (1, 2, 3):
                packet = predictive_fbu(sequence=seq)
                received = ReceivedMh(packet.source, packet.destination, packet.home_address, packet.mh)
                [verify] = [e for e in par.receive_mh(received, 1.0) if isinstance(e, core.VerifyFbu)]
                await agent._verify(verify)  # the handover goes on: an HI each time
            assert agent.verdicts is not None
            try:
                await agent.verdicts.flush()
            except Exception as exc:
                assert type(exc).__name__ == "KeyServiceError"
            registry = agent.metrics.registry
            dropped = registry.get_sample_value("aaa_fmip_router_verdict_reports_total", {"result": "dropped"})
            sent = registry.get_sample_value("aaa_fmip_router_verdict_reports_total", {"result": "sent"})
            return len(agent.verdicts), dropped or 0.0, sent or 0.0

    assert asyncio.run(go()) == (2, 1.0, 0.0)  # two kept for the next try, the third counted as dropped

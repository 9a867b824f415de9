"""The FMIPv6 access-router agent (RFC 5568 on real links; architecture.md §8).

Every router is both the previous access router (PAR) for nodes leaving its links and the new access router
(NAR) for nodes arriving. The parts, from the pure core outwards:

* :mod:`~aaa_fmip.router.neighbours`: the neighbour table and the PrRtAdv it answers an RtSolPr with.
* :mod:`~aaa_fmip.router.core`: the sans-IO PAR and NAR state machines. Events in (received datagrams,
  verdicts, the time), effects out (datagrams to send, the next timer deadline, notices). Its parts:
  :mod:`~aaa_fmip.router.effects` (effects, parameters, shared state), :mod:`~aaa_fmip.router.par` and
  :mod:`~aaa_fmip.router.par_handover` (PAR side), :mod:`~aaa_fmip.router.nar` (NAR side),
  :mod:`~aaa_fmip.router.pernode` (per-node prefixes and point-to-point ND).
* :mod:`~aaa_fmip.router.verify`: local FBU verification (parse, BADF, replay) and the replay state that
  survives a restart.
* :mod:`~aaa_fmip.router.keycache`: the handover keys this router holds and where they come from (pushed,
  prefetched by link-layer address, fetched by SPI, or verify-as-a-service).
* :mod:`~aaa_fmip.router.driver`: the asyncio driver on raw sockets (:mod:`~aaa_fmip.router.raw_sockets`),
  with the verdict reports and revocation feed (:mod:`~aaa_fmip.router.service_feeds`) and the notices it logs
  (:mod:`~aaa_fmip.router.notices`); :mod:`~aaa_fmip.router.config` its settings. ``aaa-fmip router --config
  FILE`` runs it.
* :mod:`~aaa_fmip.router.p2p`: per-node point-to-point links (routes, link checks, the state file) and
  :mod:`~aaa_fmip.router.radvd` (radvd's configuration and process); :mod:`~aaa_fmip.router.dataplane` and
  :mod:`~aaa_fmip.router.dataplane_driver`: the handover data plane.
"""

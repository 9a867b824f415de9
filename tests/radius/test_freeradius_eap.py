"""Real EAP through real FreeRADIUS (threaded, module loaded) into the real store, checked from the MN's side.

eapol_test plays the NAS and the peer; the keys it prints are the MN's. The FBU the MN library builds from them
is verified by a real ``aaa-fmip serve`` (POST /v1/fbu/verify) on the same Redis.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import pytest
from pyrad.packet import Packet

from aaa_fmip import mn
from aaa_fmip.model import Caller
from aaa_fmip.radius import ar as ar_side
from aaa_fmip.radius.dictionary import pyrad_dictionary
from aaa_fmip.radius.salt import salt_decrypt
from tests.radius import _fbu
from tests.radius._stack import AR_ADDRESS, AR_NAS_IDENTIFIER, AR_SECOND_ADDRESS, next_mac, wait_for_session
from tests.radius.conftest import Stack
from tests.support.freeradius import SECRET, EapMethod, UdpRecorder, radclient_accounting, run_eapol_test

AUDITOR = Caller(name="test", role="auditor")


def _authenticate(
    stack: Stack, method: EapMethod, tmp_path: Path, *, port: int | None = None
) -> tuple[bytes, bytes, str]:
    mac = next_mac()
    result = run_eapol_test(
        method,
        stack.radius.pki,
        port=port or stack.radius.auth_port,
        work_dir=tmp_path,
        mac=mac,
        nas_identifier=AR_NAS_IDENTIFIER,
    )
    emsk, session_id = result.require_keys()
    return emsk, session_id, mac


@pytest.mark.parametrize("method", ["TLS", "PEAP", "TTLS"])
def test_session_is_stored_and_the_mn_key_authenticates_its_fbu(
    stack: Stack, method: EapMethod, tmp_path: Path
) -> None:
    emsk, session_id, mac = _authenticate(stack, method, tmp_path)
    master = _fbu.master_key(emsk, session_id)

    record = wait_for_session(stack.runtime.store, master.hmk_name)
    assert record is not None, stack.radius.log_tail()
    assert record.spi == master.spi
    assert record.calling_station_id == mac.replace(":", "-")
    # The outer identity (FreeRADIUS' default inner-tunnel does not export the inner one).
    assert record.user_name == ("alice@fmip.test" if method == "TLS" else "anonymous")
    assert record.nas_identifier == AR_NAS_IDENTIFIER
    assert any(e.startswith("radius-class:") for e in record.external_ids)

    with stack.service.client(stack.config.ar) as par:
        mh = _fbu.fbu(master, sequence=1)
        accepted = _fbu.verify(par, mh)
        assert accepted["valid"] is True and accepted["verdict"] == "accepted"
        assert accepted["spi"] == master.spi
        assert _fbu.verify(par, mh)["verdict"] == "retransmission"
        # An FBU redirected to another NCoA (checksum recomputed, authenticator kept) is refused.
        tampered = _fbu.redirect(_fbu.fbu(master, sequence=2))
        rejected = _fbu.verify(par, tampered)
        assert rejected["valid"] is False and rejected["reason"] == "bad-authenticator"
    assert "Error" not in stack.radius.log().split("Ready to process requests", 1)[1]


@pytest.mark.parametrize("method", ["PWD", "MD5"])
def test_method_without_emsk_gets_access_no_session_and_an_audit_entry(
    stack: Stack, method: EapMethod, tmp_path: Path
) -> None:
    before = stack.runtime.store.count_live_sessions()
    result = run_eapol_test(method, stack.radius.pki, port=stack.radius.auth_port, work_dir=tmp_path, mac=next_mac())
    assert result.success, result.output[-2000:]
    assert result.emsk is None
    assert stack.runtime.store.count_live_sessions() == before
    deadline = time.monotonic() + 5
    entries: list[object] = []
    while time.monotonic() < deadline:
        found, _ = stack.runtime.service.read_audit(AUDITOR, event="session.skipped", limit=1000)
        entries = [e for e in found if e.fields.get("method") == method]
        if entries:
            break
        time.sleep(0.05)
    assert entries, f"no session.skipped audit entry for {method}"


def test_access_accept_carries_the_routers_key_and_the_ar_helper_recovers_it(stack: Stack, tmp_path: Path) -> None:
    with UdpRecorder(stack.radius.auth_port) as relay:
        result = run_eapol_test(
            "TLS",
            stack.radius.pki,
            port=relay.port,
            work_dir=tmp_path,
            mac=next_mac(),
            nas_identifier=AR_NAS_IDENTIFIER,
        )
        emsk, session_id = result.require_keys()
        request, accept = relay.exchange(2)
    secret = SECRET.encode()
    pushed = ar_side.decode_access_accept(accept, request=request, secret=secret)
    assert pushed is not None

    master = _fbu.master_key(emsk, session_id)
    assert wait_for_session(stack.runtime.store, master.hmk_name) is not None
    # The key service's answer to ar1 for its first address, the MN's own derivation, and the pushed key agree.
    ar1 = Caller(name="ar1", role="ar", router=stack.runtime.callers.router_by_name("ar1"))
    grant = stack.runtime.service.handover_key(ar1, ar_address=AR_ADDRESS, hmk_name=master.hmk_name)
    mn_hk = mn.derive_handover_key(master, AR_ADDRESS)
    assert pushed.hk == grant.hk
    assert pushed.hk.reveal() == mn_hk.hk.reveal()
    assert pushed.spi == master.spi == grant.spi
    assert pushed.hk_name == grant.hk_name == mn_hk.hk_name
    assert pushed.ar_address == AR_ADDRESS
    assert pushed.algorithm == "HMAC-SHA1-96"
    assert 0 < pushed.lifetime <= 43200
    assert pushed.hk.reveal() != mn.derive_handover_key(master, AR_SECOND_ADDRESS).hk.reveal()

    # The same codec decrypts FreeRADIUS' own MS-MPPE-Recv-Key of this Access-Accept to MSK[0:32]
    # (RFC 2548 §2.4.3; eapol_test printed the MSK): an independent oracle for the codec.
    reply = Packet(packet=accept, dict=pyrad_dictionary())
    recv_key = salt_decrypt(bytes(reply[(311, 17)][0]), secret=secret, request_authenticator=request[4:20])
    assert result.msk is not None and recv_key == result.msk[:32]

    # A wrong secret is refused by the Response Authenticator check.
    with pytest.raises(ar_side.BadResponseAuthenticator):
        ar_side.decode_access_accept(accept, request=request, secret=b"not-the-secret")


def test_no_key_for_a_nas_that_only_claims_to_be_the_router(stack: Stack, tmp_path: Path) -> None:
    # ar1 is registered with nas_address 127.0.0.1; this NAS sends from 127.0.0.2 with ar1's NAS-Identifier.
    with UdpRecorder(stack.radius.auth_port, source_host="127.0.0.2") as relay:
        emsk, session_id, _mac = _authenticate(stack, "TLS", tmp_path, port=relay.port)
        request, accept = relay.exchange(2)
        _authenticate(stack, "TLS", tmp_path / "again", port=relay.port)
    assert ar_side.decode_access_accept(accept, request=request, secret=SECRET.encode()) is None
    # The session itself is stored: the AR can still ask the service, which checks who it is.
    assert wait_for_session(stack.runtime.store, _fbu.master_key(emsk, session_id).hmk_name) is not None
    # The log says why, naming what the request showed and what the router is matched by; once for this NAS.
    line = stack.radius.wait_for_log(
        r"Warning: aaa_fmip: no key pushed to the NAS with source address 127\.0\.0\.2[^\n]*"
    )
    text = line.group(0)
    assert f"NAS-Identifier '{AR_NAS_IDENTIFIER}'" in text
    assert "matched by the packet's source address only, never by NAS-Identifier" in text
    assert f"router ar1 has nas_identifier '{AR_NAS_IDENTIFIER}' but nas_address = 127.0.0.1" in text
    assert stack.radius.log().count("no key pushed to the NAS with source address 127.0.0.2") == 1
    assert emsk.hex() not in stack.radius.log()


@pytest.mark.parametrize("selector", ["class", "calling-station-id"])
def test_accounting_stop_revokes_and_the_fbu_is_then_refused(stack: Stack, selector: str, tmp_path: Path) -> None:
    emsk, session_id, mac = _authenticate(stack, "PEAP", tmp_path)
    master = _fbu.master_key(emsk, session_id)
    record = wait_for_session(stack.runtime.store, master.hmk_name)
    assert record is not None
    with stack.service.client(stack.config.ar) as par:
        assert _fbu.verify(par, _fbu.fbu(master, sequence=1))["valid"] is True

        attrs = f'Acct-Status-Type = Stop\nUser-Name = "alice"\nAcct-Session-Id = "s-{mac}"\n'
        if selector == "class":
            token = next(e for e in record.external_ids if e.startswith("radius-class:")).split(":", 1)[1]
            # The NAS echoes the Class of the Access-Accept; a different MAC proves the Class did the matching.
            attrs += f'Class = 0x{("aaa-fmip:" + token).encode().hex()}\nCalling-Station-Id = "02-ff-ff-ff-ff-ff"\n'
        else:
            attrs += f'Calling-Station-Id = "{mac.upper().replace(":", "-")}"\n'
        radclient_accounting(stack.radius.acct_port, attrs)

        deadline = time.monotonic() + 5
        while stack.runtime.store.get_session(master.hmk_name) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stack.runtime.store.get_session(master.hmk_name) is None
        refused = _fbu.verify(par, _fbu.fbu(master, sequence=2))
        assert refused["valid"] is False and refused["reason"] in ("revoked", "unknown-spi")


def test_accounting_on_from_a_restarted_nas_revokes_all_its_sessions(stack: Stack, tmp_path: Path) -> None:
    # RFC 2866 §5.1: a NAS sends Accounting-On when it (re)starts: none of its earlier sessions is still up.
    restarted = "nas-restart.fmip.test"
    masters = []
    methods: tuple[EapMethod, ...] = ("TLS", "PEAP")
    for i, method in enumerate(methods):
        result = run_eapol_test(
            method,
            stack.radius.pki,
            port=stack.radius.auth_port,
            work_dir=tmp_path / str(i),
            mac=next_mac(),
            nas_identifier=restarted,
        )
        masters.append(_fbu.master_key(*result.require_keys()))
    emsk, session_id, _mac = _authenticate(stack, "TLS", tmp_path / "elsewhere")  # via the usual NAS: untouched
    kept = _fbu.master_key(emsk, session_id)
    for master in masters:
        assert wait_for_session(stack.runtime.store, master.hmk_name) is not None, stack.radius.log_tail()

    radclient_accounting(stack.radius.acct_port, f'Acct-Status-Type = Accounting-On\nNAS-Identifier = "{restarted}"\n')

    deadline = time.monotonic() + 5  # awaited up to store_timeout; a longer revocation goes on behind the answer
    while any(stack.runtime.store.get_session(m.hmk_name) for m in masters) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [stack.runtime.store.get_session(m.hmk_name) for m in masters] == [None, None]
    assert wait_for_session(stack.runtime.store, kept.hmk_name) is not None
    assert "accounting-on from nas-restart.fmip.test: 2 session(s) revoked" in stack.radius.log()


def test_eight_parallel_authentication_loops(stack: Stack, tmp_path: Path) -> None:
    loops, rounds = 8, 8
    methods: tuple[EapMethod, ...] = ("TLS", "PEAP", "TTLS")
    results: list[tuple[bytes, bytes]] = []
    failures: list[str] = []
    lock = threading.Lock()

    def loop(n: int) -> None:
        for r in range(rounds):
            method = methods[(n + r) % len(methods)]
            res = run_eapol_test(
                method,
                stack.radius.pki,
                port=stack.radius.auth_port,
                work_dir=tmp_path / f"loop{n}",
                mac=next_mac(),
                nas_identifier=AR_NAS_IDENTIFIER,
            )
            with lock:
                if res.success and res.emsk is not None and res.session_id is not None:
                    results.append((res.emsk, res.session_id))
                else:
                    failures.append(f"loop {n} round {r} {method}: {res.output[-500:]}")

    threads = [threading.Thread(target=loop, args=(n,)) for n in range(loops)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert not failures, failures[:2]
    assert len(results) == loops * rounds
    assert stack.radius.alive(), stack.radius.log_tail()

    missing = []
    deadline = time.monotonic() + 5
    for emsk, sid in results:
        name = _fbu.master_key(emsk, sid).hmk_name
        while stack.runtime.store.get_session(name) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if stack.runtime.store.get_session(name) is None:
            missing.append(name.hex())
    assert not missing, f"{len(missing)} sessions not stored:\n{stack.radius.log_tail()}"


def test_identity_with_quotes_and_backslashes_is_recorded_as_sent(stack: Stack, tmp_path: Path) -> None:
    identity = '"ali\\"ce\\x@fmip.test"'  # rlm_python3 passes strings unquoted: this must arrive as is
    result = run_eapol_test(
        "TLS", stack.radius.pki, port=stack.radius.auth_port, work_dir=tmp_path, mac=next_mac(), identity=identity
    )
    emsk, session_id = result.require_keys()
    record = wait_for_session(stack.runtime.store, _fbu.master_key(emsk, session_id).hmk_name)
    assert record is not None and record.user_name == identity


def _nice_values(pid: int) -> dict[int, int]:
    """The nice value of each thread of process ``pid`` (proc(5): field 19 of /proc/PID/task/TID/stat)."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            out[int(task.name)] = int(fields[19 - 3])  # fields[0] is field 3 (state)
    return out


def test_the_writes_behind_the_reply_run_at_the_configured_lower_priority(stack: Stack, tmp_path: Path) -> None:
    emsk, session_id, _ = _authenticate(stack, "TLS", tmp_path)
    assert wait_for_session(stack.runtime.store, _fbu.master_key(emsk, session_id).hmk_name) is not None
    assert stack.radius.proc is not None
    pid = stack.radius.proc.pid
    nice = _nice_values(pid)
    main = nice[pid]
    # radius.write_behind_nice defaults to 10: the write threads, and only they, run that much lower.
    lowered = {tid: n for tid, n in nice.items() if n != main}
    assert lowered and set(lowered.values()) == {min(19, main + 10)}, nice
    assert len(lowered) < len(nice) - 1  # FreeRADIUS' own threads (and the plugin's pool) keep their priority
    assert "write_behind=yes, write_behind_nice=10" in stack.radius.log()

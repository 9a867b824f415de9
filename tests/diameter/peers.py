"""The Diameter peers the tests play: a home EAP server and a NAS (python-diameter nodes on loopback).

The home EAP server answers every DER for a known user with a successful DEA that carries, besides the MSK,
an RFC 6734 Key AVP {Key-Type DSRK, Keying-Material = DSRK, Key-Name = EMSKName, Key-Lifetime}: the DSRK is
computed with :func:`aaa_fmip.keys.derive_dsrk` from the user's known EMSK for the visited domain, the EMSKName
with :func:`aaa_fmip.keys.derive_emsk_name` from the EAP Session-Id. No real EAP method runs: the EAP payloads
are fixed (Identity response in, Success out). It also answers STR and can send an ASR.

The NAS sends DER and STR to the agent and answers the ASRs relayed to it.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from diameter.message import MessageHeader
from diameter.message import constants as c
from diameter.message.avp import Avp
from diameter.message.commands import (
    AbortSessionAnswer,
    AbortSessionRequest,
    DiameterEapRequest,
    SessionTerminationAnswer,
    SessionTerminationRequest,
)

from aaa_fmip import keys
from aaa_fmip.diameter.avps import AvpCodec
from aaa_fmip.diameter.dictionary import DiameterDictionary, register
from aaa_fmip.diameter.node import Node, PooledApplication

EAP_APP = 5
EAP_SUCCESS = bytes([3, 1, 0, 4])  # RFC 3748 §4.2 Code 3 Success, Identifier 1, Length 4
EAP_FAILURE = bytes([4, 1, 0, 4])
EAP_TLS_START = bytes([1, 2, 0, 6, 13, 0x20])  # RFC 5216 §3.1: Request, Type 13 (EAP-TLS), S flag
KEY_LIFETIME = 3600
# RFC 4072 §4.1: EAP-Payload (462) and EAP-Master-Session-Key (464) are sent with the M bit, as real home
# servers do (python-diameter's own dictionary would send them without it).
AVP_EAP_PAYLOAD, AVP_EAP_MSK = 462, 464
M = 0x40


def eap_payload(payload: bytes) -> Avp:
    return Avp(AVP_EAP_PAYLOAD, 0, payload, M)


@dataclass(frozen=True)
class MobileNode:
    """What an MN and its home server share after EAP: the EMSK and the EAP Session-Id."""

    user_name: str
    emsk: bytes = field(default_factory=lambda: os.urandom(64), repr=False)
    eap_session_id: bytes = field(default_factory=lambda: b"\x0d" + os.urandom(64))
    calling_station_id: str = field(default_factory=lambda: "02-00-" + "-".join(f"{b:02x}" for b in os.urandom(4)))

    def dsrk(self, domain: str) -> bytes:
        return keys.derive_dsrk(self.emsk, domain.encode("ascii"))

    @property
    def emsk_name(self) -> bytes:
        return keys.derive_emsk_name(self.eap_session_id)


def _answer(request: Any, origin_host: str, origin_realm: str, result_code: int) -> Any:
    answer = request.to_answer()
    answer.session_id = request.session_id
    answer.origin_host = origin_host.encode()
    answer.origin_realm = origin_realm.encode()
    answer.result_code = result_code
    return answer


class HomeEapServer:
    """``home.fmip.test``: listens on ``port``; only ``agent`` may connect."""

    def __init__(
        self,
        dictionary: DiameterDictionary,
        *,
        port: int,
        agent: str,
        visited_domain: str,
        identity: str = "home.fmip.test",
        realm: str = "home.test",
    ) -> None:
        self.codec = AvpCodec(dictionary)
        self.dictionary = dictionary
        self.port = port
        self.agent = agent
        self.visited_domain = visited_domain
        self.identity = identity
        self.realm = realm
        self.users: dict[str, MobileNode] = {}
        self.received: list[Any] = []
        self.lock = threading.Lock()
        self.node: Node | None = None
        self.app: PooledApplication | None = None
        self.include_key = True
        self.challenges: dict[str, int] = {}  # user → how many 1001 MULTI_ROUND_AUTH answers come first
        self.extra_avps: list[Any] = []  # put in every successful DEA before the Key AVPs
        self.delay = 0.0  # seconds to wait before answering a DER

    def start(self) -> HomeEapServer:
        register(self.dictionary)
        node = Node(self.identity, self.realm, ip_addresses=["127.0.0.1"], tcp_port=self.port, vendor_ids=[])
        node.product_name = "test-home-eap-server"
        self.node = node
        peer = node.add_peer(f"aaa://{self.agent}:3868;transport=tcp", self.realm)
        app = PooledApplication(EAP_APP, self._handle, workers=4, name="home")
        node.add_application(app, [peer])
        node.serve(app, [self.agent], application_ids=(0,))
        self.app = app
        node.start()
        return self

    def stop(self) -> None:
        if self.node is not None:
            self.node.stop()
            self.node = None

    def _handle(self, request: Any) -> Any:
        with self.lock:
            self.received.append(request)
        if request.header.command_code == c.CMD_SESSION_TERMINATION:
            return _answer(request, self.identity, self.realm, c.E_RESULT_CODE_DIAMETER_SUCCESS)
        if self.delay:
            time.sleep(self.delay)
        mn = self.users.get(request.user_name or "")
        if mn is None:
            answer = _answer(request, self.identity, self.realm, c.E_RESULT_CODE_DIAMETER_AUTHENTICATION_REJECTED)
            answer.auth_request_type = request.auth_request_type
            answer.append_avp(eap_payload(EAP_FAILURE))
            return answer
        if self.challenges.get(mn.user_name, 0) > 0:
            self.challenges[mn.user_name] -= 1
            answer = _answer(request, self.identity, self.realm, c.E_RESULT_CODE_DIAMETER_MULTI_ROUND_AUTH)
            answer.auth_request_type = request.auth_request_type
            answer.append_avp(eap_payload(EAP_TLS_START))
            return answer
        answer = _answer(request, self.identity, self.realm, c.E_RESULT_CODE_DIAMETER_SUCCESS)
        answer.auth_request_type = request.auth_request_type
        answer.user_name = mn.user_name
        answer.append_avp(eap_payload(EAP_SUCCESS))
        answer.append_avp(Avp(AVP_EAP_MSK, 0, os.urandom(64), M))  # the MSK: for the NAS, untouched by the agent
        for avp in self.extra_avps:
            answer.append_avp(avp)
        if self.include_key:
            codec = self.codec
            answer.append_avp(
                codec.grouped(
                    "Key",
                    [
                        codec.enum("Key-Type", "DSRK"),
                        codec.new("Keying-Material", mn.dsrk(self.visited_domain)),
                        codec.new("Key-Name", mn.emsk_name),
                        codec.new("Key-Lifetime", KEY_LIFETIME),
                    ],
                )
            )
            # An rMSK Key AVP (RFC 6696) is not for the agent: it must pass through untouched.
            answer.append_avp(
                codec.grouped("Key", [codec.enum("Key-Type", "rMSK"), codec.new("Keying-Material", b"\x5a" * 64)])
            )
        return answer

    def abort_session(self, session_id: str, nas: str, nas_realm: str, timeout: float = 5.0) -> Any:
        """Send an ASR for ``session_id`` addressed to ``nas`` through the agent; returns the ASA."""
        assert self.app is not None
        asr = AbortSessionRequest(MessageHeader(application_id=EAP_APP))
        asr.session_id = session_id
        asr.origin_host = self.identity.encode()
        asr.origin_realm = self.realm.encode()
        asr.destination_realm = nas_realm.encode()
        asr.destination_host = nas.encode()
        asr.auth_application_id = EAP_APP
        return self.app.request_to(asr, self.agent, timeout)


class Nas:
    """``nas1.fmip.test``: connects to the agent, sends DER/STR, answers relayed ASRs with 2001."""

    def __init__(self, *, agent: str, agent_port: int, identity: str = "nas1.fmip.test", realm: str = "fmip.test"):
        self.agent = agent
        self.agent_port = agent_port
        self.identity = identity
        self.realm = realm
        self.aborted: list[str] = []
        self.node: Node | None = None
        self.app: PooledApplication | None = None

    def start(self, wait: float = 10.0) -> Nas:
        node = Node(self.identity, self.realm, vendor_ids=[])
        node.product_name = "test-nas"
        self.node = node
        peer = node.add_peer(
            f"aaa://{self.agent}:{self.agent_port};transport=tcp",
            self.realm,
            ip_addresses=["127.0.0.1"],
            is_persistent=True,
        )
        app = PooledApplication(EAP_APP, self._handle, workers=2, name="nas")
        node.add_application(app, [peer])
        node.serve(app, [self.agent], application_ids=(0,))
        self.app = app
        node.start()
        if not node.wait_for_peer(self.agent, wait):
            node.stop()
            raise RuntimeError(f"NAS could not open a connection to {self.agent}")
        return self

    def stop(self) -> None:
        if self.node is not None:
            self.node.stop()
            self.node = None

    def _handle(self, request: Any) -> Any:
        if isinstance(request, AbortSessionRequest):
            self.aborted.append(str(request.session_id))
            answer: AbortSessionAnswer = _answer(request, self.identity, self.realm, c.E_RESULT_CODE_DIAMETER_SUCCESS)
            return answer
        return None

    def new_session_id(self) -> str:
        assert self.node is not None
        return str(self.node.session_generator.next_id())

    def der(
        self,
        mn: MobileNode,
        *,
        home_realm: str = "home.test",
        session_id: str | None = None,
        extra_avps: tuple[Any, ...] = (),
        timeout: float = 5.0,
    ) -> Any:
        assert self.app is not None
        der = DiameterEapRequest(MessageHeader(application_id=EAP_APP))
        der.session_id = session_id or self.new_session_id()
        der.origin_host = self.identity.encode()
        der.origin_realm = self.realm.encode()
        der.destination_realm = home_realm.encode()
        der.auth_application_id = EAP_APP
        der.auth_request_type = c.E_AUTH_REQUEST_TYPE_AUTHORIZE_AUTHENTICATE
        der.user_name = mn.user_name
        der.calling_station_id = mn.calling_station_id
        identity = bytes([2, 1, 0, 5 + len(mn.user_name), 1]) + mn.user_name.encode()  # EAP Identity response
        der.append_avp(eap_payload(identity))
        for avp in extra_avps:
            der.append_avp(avp)
        return self.app.request_to(der, self.agent, timeout)

    def str_(self, session_id: str, *, home_realm: str = "home.test", application_id: int = EAP_APP) -> Any:
        assert self.app is not None
        request = SessionTerminationRequest(MessageHeader(application_id=application_id))
        request.session_id = session_id
        request.origin_host = self.identity.encode()
        request.origin_realm = self.realm.encode()
        request.destination_realm = home_realm.encode()
        request.auth_application_id = EAP_APP
        request.termination_cause = c.E_TERMINATION_CAUSE_DIAMETER_LOGOUT
        answer: SessionTerminationAnswer = self.app.request_to(request, self.agent, 5.0)
        return answer

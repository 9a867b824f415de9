"""JSON bodies of the REST API (docs/api.md). Binary values are lowercase hex, addresses IPv6 text, lifetimes
seconds, instants RFC 3339 UTC strings. Request fields that carry key material are excluded from ``repr`` and
never echoed in error bodies (see :mod:`aaa_fmip.api.problems`)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

MAX_HEX_OCTETS = 4096  # well above any key, Session-Id or Mobility Header this API carries


def parse_hex(value: Any) -> bytes:
    """Hex text, optionally ``0x``-prefixed (FreeRADIUS prints octets that way, e.g. via rlm_rest)."""
    if not isinstance(value, str):
        raise PydanticCustomError("hex_type", "expected a string of hexadecimal digits")
    text = value.strip()
    if text[:2] in ("0x", "0X"):
        text = text[2:]
    if len(text) > 2 * MAX_HEX_OCTETS:
        raise PydanticCustomError("hex_length", "too long")
    if len(text) % 2:
        raise PydanticCustomError("hex_odd", "odd number of hexadecimal digits")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise PydanticCustomError("hex", "not hexadecimal") from None


HexBytes = Annotated[
    bytes,
    PlainValidator(parse_hex),
    PlainSerializer(lambda b: b.hex(), return_type=str),
    WithJsonSchema({"type": "string", "pattern": "^(0[xX])?([0-9a-fA-F]{2})*$"}),
]


HMK_NAME_OCTETS = 8  # HMK-Name (architecture.md §2), like EMSKName (RFC 5295 §3.2)


def parse_hmk_name(value: Any) -> bytes:
    """An HMK-Name: hex of exactly 8 octets."""
    octets = parse_hex(value)
    if len(octets) != HMK_NAME_OCTETS:
        raise PydanticCustomError("hmk_name_length", "an HMK-Name is 8 octets (16 hexadecimal digits)")
    return octets


HmkName = Annotated[
    bytes,
    PlainValidator(parse_hmk_name),
    PlainSerializer(lambda b: b.hex(), return_type=str),
    WithJsonSchema({"type": "string", "pattern": "^(0[xX])?[0-9a-fA-F]{16}$"}),
]


def to_rfc3339(unix_seconds: float) -> str:
    """Unix time → ``2024-05-01T12:00:00Z`` (whole seconds, UTC)."""
    return dt.datetime.fromtimestamp(int(unix_seconds), tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_instant(text: str, *, name: str) -> float:
    """RFC 3339 (with a UTC offset) or Unix seconds → Unix seconds; ValueError names ``name``."""
    stripped = text.strip()
    try:
        return float(stripped)
    except ValueError:
        pass
    try:
        parsed = dt.datetime.fromisoformat(stripped.replace("z", "Z"))
    except ValueError:
        raise ValueError(f"{name}: expected an RFC 3339 date-time or Unix seconds") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{name}: an RFC 3339 date-time needs a UTC offset (e.g. Z)")
    return parsed.timestamp()


IPv6 = Annotated[
    ipaddress.IPv6Address, WithJsonSchema({"type": "string", "format": "ipv6", "examples": ["2001:db8::1"]})
]
Spi = Annotated[int, Field(ge=1, le=0xFFFFFFFF, description="Security Parameter Index of the session (1..2^32-1).")]

# ------------------------------------------------------------------------------------------------- sessions


class SessionCreate(BaseModel):
    """Ingest one EAP session: either the EMSK and EAP Session-Id (home domain), or the DSRK and EMSKName
    (visited domain). The EMSK/DSRK is used once to derive the handover master key and is never stored."""

    model_config = ConfigDict(
        extra="forbid",
        hide_input_in_errors=True,
        json_schema_extra={
            "examples": [
                {
                    "emsk": "0x" + "11" * 64,
                    "eap_session_id": "0d" + "22" * 64,
                    "user_name": "alice@example.net",
                    "calling_station_id": "02-00-00-00-00-01",
                    "nas_identifier": "ar1",
                    "lifetime": 3600,
                }
            ]
        },
    )

    emsk: HexBytes | None = Field(None, repr=False, description="EAP EMSK, 64 octets or more (RFC 5247 §2.1).")
    eap_session_id: HexBytes | None = Field(None, description="EAP Session-Id (RFC 5247 §1.4), raw octets.")
    dsrk: HexBytes | None = Field(None, repr=False, description="Domain-specific root key, 64 octets (RFC 5295 §4).")
    emsk_name: HexBytes | None = Field(None, description="EMSKName, 8 octets (RFC 5295 §3.2).")
    user_name: str = Field(min_length=1, max_length=253, description="User-Name of the EAP peer (audit only).")
    calling_station_id: str | None = Field(
        None, max_length=64, description="Calling-Station-Id (MN MAC); lets an AR look the session up by it."
    )
    nas_identifier: str | None = Field(None, max_length=253, description="NAS-Identifier of the authenticating AR.")
    lifetime: int | None = Field(
        None,
        ge=1,
        le=2**31 - 1,
        description="Session-Timeout or Key-Lifetime from the AAA exchange, seconds; capped by keys.max_lifetime.",
    )

    @model_validator(mode="after")
    def _one_root(self) -> SessionCreate:
        home = self.emsk is not None or self.eap_session_id is not None
        visited = self.dsrk is not None or self.emsk_name is not None
        if home and visited:
            raise PydanticCustomError("key_material", "give emsk and eap_session_id, or dsrk and emsk_name, not both")
        if home and (self.emsk is None or self.eap_session_id is None):
            raise PydanticCustomError("key_material", "emsk and eap_session_id go together")
        if visited and (self.dsrk is None or self.emsk_name is None):
            raise PydanticCustomError("key_material", "dsrk and emsk_name go together")
        if not home and not visited:
            raise PydanticCustomError("key_material", "give emsk and eap_session_id, or dsrk and emsk_name")
        return self


class SessionCreated(BaseModel):
    hmk_name: str = Field(description="HMK-Name (8 octets, hex): the session's name for revocation.")
    spi: int = Field(description="SPI the mobile node puts in its BADF option.")
    expires_at: str = Field(description="When the session and every key derived from it expire (RFC 3339, UTC).")


class RevokeMatching(BaseModel):
    """Revoke every session matching one selector."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    calling_station_id: str | None = Field(None, max_length=64, description="The MN's MAC, any common notation.")
    external_id: str | None = Field(
        None, max_length=253, description='An id given at ingest by the AAA side, e.g. "radius-class:...".'
    )
    cause: str = Field("revoked", max_length=64, pattern="^[a-z0-9-]+$", description="Recorded in the audit trail.")

    @model_validator(mode="after")
    def _one_selector(self) -> RevokeMatching:
        if (self.calling_station_id is None) == (self.external_id is None):
            raise PydanticCustomError("selector", "give exactly one of calling_station_id or external_id")
        return self


class RevokeResult(BaseModel):
    revoked: int = Field(description="How many sessions were revoked.")


# ------------------------------------------------------------------------------------------- handover keys


class HandoverKeyRequest(BaseModel):
    """Ask for the handover key of one session for one of the calling router's own addresses."""

    model_config = ConfigDict(
        extra="forbid",
        hide_input_in_errors=True,
        json_schema_extra={"examples": [{"ar_address": "2001:db8::1", "spi": 305419896}]},
    )

    ar_address: IPv6 = Field(description="The AR-ID: one of the caller's own addresses (the PAR address of the FBU).")
    spi: Spi | None = None
    calling_station_id: str | None = Field(None, max_length=64, description="Select the session by the MN's MAC.")
    hmk_name: HmkName | None = Field(None, description="Select the session by its HMK-Name (8 octets, hex).")

    @model_validator(mode="after")
    def _one_selector(self) -> HandoverKeyRequest:
        given = sum(x is not None for x in (self.spi, self.calling_station_id, self.hmk_name))
        if given != 1:
            raise PydanticCustomError("selector", "give exactly one of spi, calling_station_id or hmk_name")
        return self


class HandoverKeyResponse(BaseModel):
    hk: str = Field(description="The handover key for this AR-ID (32 octets, hex).")
    hk_name: str = Field(description="HK-Name (8 octets, hex).")
    spi: int
    lifetime: int = Field(description="Seconds the key remains valid (never beyond its session).")
    algorithm: str = Field(description='BADF authenticator algorithm, e.g. "HMAC-SHA1-96".')


# --------------------------------------------------------------------------------------------------- FBU


class FbuVerifyRequest(BaseModel):
    """An FBU received by the calling router (the PAR), as it arrived."""

    model_config = ConfigDict(
        extra="forbid",
        hide_input_in_errors=True,
        json_schema_extra={
            "examples": [{"source": "2001:db8:2::100", "destination": "2001:db8::1", "mh": "3b05080000..."}]
        },
    )

    source: IPv6 = Field(description="IPv6 source address of the packet.")
    destination: IPv6 = Field(description="IPv6 destination: the PAR address, one of the caller's own.")
    mh: HexBytes = Field(
        repr=False, description="The whole Mobility Header (RFC 6275 §6.1.1), from Payload Proto to its last option."
    )
    home_address: IPv6 | None = Field(
        None, description="Address in the Home Address destination option (the PCoA), when present."
    )


class FbuAccepted(BaseModel):
    valid: Literal[True] = True
    verdict: Literal["accepted", "retransmission"] = Field(
        description="accepted: a new binding; retransmission: the same FBU again (same sequence, same MAC)."
    )
    spi: int
    sequence: int
    ncoa: str = Field(description="The new care-of address (Alternate CoA option, else the source).")
    lifetime: int = Field(description="Binding lifetime in seconds.")


class FbuRejected(BaseModel):
    valid: Literal[False] = False
    reason: str = Field(
        description="Stable code: unknown-spi, revoked, expired, bad-authenticator, replay, ...",
        examples=["bad-authenticator"],
    )


# ------------------------------------------------------------------------------------------------- audit


class AuditEntryOut(BaseModel):
    id: str = Field(description="Position in its chain's stream; entries are ordered by it (then by `slot`).")
    n: int = Field(description="Position in its chain: 1 for the chain's first entry ever, no gaps.")
    at: str = Field(description="When it happened (RFC 3339, UTC, sub-second).")
    event: str = Field(description="session.created, session.revoked, hk.issued, fbu.verified, fbu.rejected, ...")
    fields: dict[str, str | int | bool] = Field(description="Identifiers only, with their JSON types.")
    prev: str = Field(description="MAC (hex) of the previous entry; 64 zeros before the first.")
    hash: str = Field(
        description="MAC (hex) of this entry: HMAC-SHA-256 under an audit key derived from the KEK `kid`, "
        "which never enters Redis (docs/api.md#audit)."
    )
    kid: str = Field(description="Id of the KEK whose audit key made the MAC.")
    slot: int | None = Field(
        default=None,
        description="The number of the slot chain holding the entry (an accepted FBU's, with `store.slot_chains`): "
        "the hash slot plus 16384 times the writer; null: the main chain. `prev` of a slot chain's first entry is "
        "that chain's own genesis (docs/api.md#slot-chains).",
    )


class AuditPage(BaseModel):
    entries: list[AuditEntryOut]
    next_cursor: str | None = Field(description="Pass as cursor to read on; null at the end of the trail.")


class CheckpointBody(BaseModel):
    """A signed checkpoint, as ``GET /v1/audit/checkpoint`` hands it out; keep it outside the service."""

    n: int = Field(ge=0, lt=2**64, description="Entries in the chain when it was signed.")
    head: str = Field(pattern=r"^[0-9a-f]{64}$", description="MAC of entry n (64 zeros for n = 0).")
    at: str = Field(pattern=r"^\d{1,12}\.\d{6}$", description="When it was signed (Unix seconds, as signed).")
    kid: str = Field(min_length=1, max_length=64, description="Id of the KEK whose checkpoint key signed it.")
    signature: str = Field(
        min_length=1, max_length=200, description="Ed25519 signature (base64, RFC 8032) of the checkpoint."
    )


class CheckpointOut(BaseModel):
    checkpoint: CheckpointBody
    public_keys: dict[str, str] = Field(
        description="Ed25519 public keys (base64, 32 octets) that verify checkpoints, per KEK id: pin them."
    )


class VerifyAuditIn(BaseModel):
    checkpoint: CheckpointBody | None = Field(
        None, description="A checkpoint kept earlier: detects a truncation or wipe of the trail since."
    )


class AuditCheckOut(BaseModel):
    ok: bool = Field(description="True when every entry's MAC, position and link hold, and the head names the last.")
    entries: int = Field(description="Entries in the trail now (after retention).")
    n: int = Field(0, description="Position of the last entry.")
    first_n: int = Field(1, description="Position of the first entry kept (retention trims exported entries).")
    head: str = Field(description="MAC of the last entry.")
    first_bad_id: str | None = Field(None, description="The first entry that fails, if any.")
    problem: str | None = Field(None, description="Why the trail does not verify, in words.")
    checkpoint: str | None = Field(
        None, description="Against the checkpoint given: matches, differs, not reached, or older than the trail."
    )


# --------------------------------------------------------------------------------------------- admin/ops


class AccessRouterOut(BaseModel):
    name: str
    addresses: list[str]
    diameter_identity: str | None
    nas_identifier: str | None


class Health(BaseModel):
    status: Literal["ok", "ready"]


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = Field(examples=["https://aaa-fmip.invalid/problems/not-found"])
    title: str
    status: int
    detail: str
    reason: str = Field(description="Stable kebab-case code for programs (docs/api.md lists them).")
    errors: list[dict[str, str]] | None = Field(None, description="Request validation errors: field and message.")


def rfc3339_precise(unix_seconds: float) -> str:
    moment = dt.datetime.fromtimestamp(unix_seconds, tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"

"""Market identities: the operator verifies an organisation; the organisation registers keys.

DSL art. 33 asks an exchange to verify both parties' identities before a trade. The
operator checks an organisation's unified social credit code (统一社会信用代码,
GB 32100-2015, check character verified here) and records it on the ledger. Each
party signs agreements with keys it holds; the platform stores public keys only and
verifies every signature against them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

import crypto
from audit.catalogue import Event
from exchange.accounts import Caller, OrgKind
from exchange.errors import Forbidden, InvalidInput, NotFound, PartyNotVerified
from exchange.market._common import record, z
from exchange.market.models import Party, PartyKey
from exchange.models import Organisation
from exchange.trail import Trail

__all__ = [
    "KeyCreate",
    "PartyPublic",
    "VerifyParty",
    "check_signature",
    "credit_code_valid",
    "get_party",
    "register_key",
    "require_verified",
    "verify_party",
]

_CODE_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_CODE_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
PARTY_ALGORITHMS = ("ed25519", "sm2-sm3")


def credit_code_valid(code: str) -> bool:
    """GB 32100-2015 section 5: 18 characters, the last a mod-31 check character."""
    if len(code) != 18 or any(c not in _CODE_CHARS for c in code):
        return False
    total = sum(_CODE_CHARS.index(c) * w for c, w in zip(code[:17], _CODE_WEIGHTS, strict=True))
    return _CODE_CHARS[(31 - total % 31) % 31] == code[17]


class VerifyParty(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    credit_code: str = Field(min_length=18, max_length=18, description="GB 32100-2015")


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    algorithm: str = Field(description="ed25519 or sm2-sm3")
    public_key: str = Field(min_length=1, max_length=200, description="base64 raw public key")


class KeyPublic(BaseModel):
    id: str
    algorithm: str
    public_key: str
    registered_at: str | None


class PartyPublic(BaseModel):
    org_id: str
    name: str
    verified: bool
    verified_at: str | None
    keys: list[KeyPublic]
    ledger_index: int | None = None


def _public(session: Session, org: Organisation, ledger_index: int | None = None) -> PartyPublic:
    party = session.get(Party, org.id)
    keys = session.scalars(
        select(PartyKey).where(PartyKey.org_id == org.id).order_by(PartyKey.registered_at)
    )
    return PartyPublic(
        org_id=org.id,
        name=org.name,
        verified=party is not None,
        verified_at=z(party.verified_at) if party else None,
        keys=[
            KeyPublic(
                id=k.id,
                algorithm=k.algorithm,
                public_key=k.public_key,
                registered_at=z(k.registered_at),
            )
            for k in keys
        ],
        ledger_index=ledger_index,
    )


def _org(session: Session, org_id: str) -> Organisation:
    org = session.get(Organisation, org_id)
    if org is None or org.kind not in (OrgKind.PROVIDER, OrgKind.ENTERPRISE):
        raise NotFound("no such provider or enterprise", org_id=org_id)
    return org


def verify_party(
    session: Session, caller: Caller, org_id: str, body: VerifyParty, *, now: datetime, trail: Trail
) -> PartyPublic:
    """The operator records that it checked an organisation's identity."""
    org = _org(session, org_id)
    code = body.credit_code.upper()
    if not credit_code_valid(code):
        raise InvalidInput("not a valid unified social credit code", field="credit_code")
    party = session.get(Party, org.id, with_for_update=True)
    if party is None:
        party = Party(
            org_id=org.id, credit_code=code, verified_by=caller.client_id, verified_at=now
        )
        session.add(party)
    else:
        party.credit_code, party.verified_by, party.verified_at = code, caller.client_id, now
    index = record(
        session, trail, caller, Event.MARKET_PARTY_VERIFIED, "verify", row=party,
        object_type="party", object_id=org.id, now=now, detail=f"credit_code={code}",
    ).ledger_index  # fmt: skip
    return _public(session, org, index)


def register_key(
    session: Session, caller: Caller, org_id: str, body: KeyCreate, *, now: datetime, trail: Trail
) -> PartyPublic:
    """A party registers the public half of a key it signs agreements with."""
    org = _org(session, org_id)
    if caller.org_id != org.id:
        raise Forbidden("an organisation registers its own keys")
    if body.algorithm not in PARTY_ALGORITHMS:
        raise InvalidInput("algorithm must be ed25519 or sm2-sm3", field="algorithm")
    try:
        raw = base64.b64decode(body.public_key, validate=True)
        crypto.load_verifying_key(body.algorithm, raw)
    except (binascii.Error, ValueError, crypto.CryptoError):
        raise InvalidInput(
            "not a valid public key for that algorithm", field="public_key"
        ) from None
    key_id = "sha256:" + hashlib.sha256(body.algorithm.encode() + b":" + raw).hexdigest()
    if session.get(PartyKey, key_id) is None:
        session.add(
            PartyKey(
                id=key_id, org_id=org.id, algorithm=body.algorithm,
                public_key=base64.b64encode(raw).decode(), registered_by=caller.client_id,
                registered_at=now,
            )
        )  # fmt: skip
        session.flush()
    receipt = record(
        session, trail, caller, Event.MARKET_KEY_REGISTERED, "register",
        object_type="party_key", object_id=key_id, now=now, detail=f"algorithm={body.algorithm}",
    )  # fmt: skip
    return _public(session, org, receipt.ledger_index)


def get_party(session: Session, org_id: str) -> PartyPublic:
    return _public(session, _org(session, org_id))


def require_verified(session: Session, *org_ids: str) -> None:
    """Refuse unless every organisation's identity has been verified by the operator."""
    for org_id in org_ids:
        if session.get(Party, org_id) is None:
            org = session.get(Organisation, org_id)
            name = org.name if org else org_id
            raise PartyNotVerified(
                f"{name}'s identity has not been verified by the operator (DSL art. 33)",
                org_id=org_id,
                requirement="verified_party",
            )


def check_signature(
    session: Session, org_id: str, key_id: str, message: bytes, signature_b64: str
) -> dict[str, str]:
    """Verify a party's signature with a key it registered; the stored signature record."""
    key = session.get(PartyKey, key_id)
    if key is None or key.org_id != org_id:
        raise InvalidInput("no such key registered by this party", field="key_id")
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except binascii.Error:
        raise InvalidInput("the signature is not base64", field="signature") from None
    verifying = crypto.load_verifying_key(key.algorithm, base64.b64decode(key.public_key))
    if not verifying.verify(message, signature):
        raise Forbidden("the signature does not verify under the party's key", field="signature")
    return {
        "org_id": org_id,
        "key_id": key.id,
        "algorithm": key.algorithm,
        "public_key": key.public_key,
        "signature": base64.b64encode(signature).decode(),
    }

"""Provider decisions signed with the provider's own key (ARCHITECTURE "Trust", CRY-06).

A provider may sign its decision with a key its organisation registered
(`exchange.market.parties`, public half only). What is signed, as UTF-8 text:

* approving the run: the `query_digest` (GET /v1/computations/{id}/query), which already
  names the computation, operator, parameters, inputs, ε and job key;
* approving the release: `"{computation_id}:release:sha256:<hex>"`, the digest of the
  output the provider reviewed (SHA-256 of the canonical JSON GET .../review returns,
  the same bytes the output is sealed as);
* rejecting: `"reject:"` followed by the message approving would sign, so a refusal's
  signature can never be presented as a yes.

The verified signature record is kept in the decision and its digest is written into
the provider's ledger entry, so the trail proves the decision to its party.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from exchange.approval_binding import binding_for
from exchange.commitments import plain_digest
from exchange.errors import ApprovalSignatureInvalid, Conflict, Forbidden, SigningKeyUnknown
from exchange.market.models import PartyKey
from exchange.market.parties import check_signature
from exchange.models import Computation

__all__ = [
    "ApprovalSignatureInvalid",
    "PartySignature",
    "SigningKeyUnknown",
    "decision_message",
    "verify_decision",
]


class PartySignature(BaseModel):
    """A signature by a key the deciding provider's organisation registered."""

    model_config = ConfigDict(extra="forbid")

    key_id: str = Field(min_length=1, max_length=80, description="sha256:<hex> of the key")
    signature: str = Field(min_length=1, max_length=400, description="base64 signature")


def decision_message(
    session: Session, comp: Computation, stage: Literal["run", "release"], approve: bool
) -> str:
    """The text a provider signs for this decision on the computation as it stands."""
    if stage == "run":
        message = binding_for(session, comp).digest()
    else:
        if comp.result_digest is None:
            raise Conflict("the computation holds no output to review", state=comp.state)
        message = f"{comp.id}:release:sha256:{comp.result_digest}"
    return message if approve else f"reject:{message}"


def verify_decision(
    session: Session,
    comp: Computation,
    *,
    org_id: str,
    stage: Literal["run", "release"],
    approve: bool,
    signature: PartySignature,
) -> dict[str, Any]:
    """Check the signature with the organisation's registered key; the record to keep.

    Raises `SigningKeyUnknown` (422) or `ApprovalSignatureInvalid` (403); the caller's
    transaction then rolls back, so nothing of the decision is written.
    """
    key = session.get(PartyKey, signature.key_id)
    if key is None or key.org_id != org_id:
        raise SigningKeyUnknown(
            "no such key registered by this provider's organisation; register it at "
            f"POST /v1/market/parties/{org_id}/keys",
            field="signature.key_id",
        )
    message = decision_message(session, comp, stage, approve)
    try:
        record = check_signature(
            session, org_id, key.id, message.encode("utf-8"), signature.signature
        )
    except Forbidden:
        raise ApprovalSignatureInvalid(
            f"the signature does not verify over this {stage} decision; sign "
            + ("the query_digest" if stage == "run" else "the reviewed output's digest"),
            field="signature.signature",
            stage=stage,
        ) from None
    signed: dict[str, Any] = {**record, "signed": message, "stage": stage, "approve": approve}
    signed["digest"] = plain_digest(signed)
    return signed

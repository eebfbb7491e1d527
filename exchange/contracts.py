"""Data-use contracts between an enterprise and a provider: propose, sign, terminate.

A computation on general-2 data and above needs an active contract between the
requesting organisation and each input's provider that covers the dataset, is in force
and names the computation's purpose (policies/README.md: `resource.contract`). The
consumer proposes, the provider signs (`active`), either party terminates. Every
transition is an audit record and a ledger entry in the transaction that makes it.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

import audit
from exchange.accounts import Caller, OrgKind, Role
from exchange.errors import Conflict, Forbidden, InvalidInput, NotFound
from exchange.market.models import Agreement
from exchange.models import Contract, Dataset, Organisation
from exchange.paging import Slice, Window, keyset
from exchange.party_rows import party_row, party_rows
from exchange.resources import (
    contract_for,
    contract_in_force,
    sees_everything,
)
from exchange.timestamps import Timestamp, aware
from exchange.trail import Receipt, Trail
from exchange.views import row_values

__all__ = [
    "ContractCreate",
    "ContractPublic",
    "ContractStatus",
    "contract_for",
    "get_contract",
    "list_contracts",
    "propose_contract",
    "sign_contract",
    "terminate_contract",
]

DEFAULT_TERM = timedelta(days=365)
MAX_DATASETS = 64


class ContractStatus(StrEnum):
    PROPOSED = "proposed"
    ACTIVE = "active"
    TERMINATED = "terminated"


class ContractCreate(BaseModel):
    """What an enterprise proposes to a provider."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    provider_org: str = Field(min_length=1, max_length=36)
    datasets: list[str] = Field(min_length=1, max_length=MAX_DATASETS)
    purpose: str = Field(min_length=3, max_length=500)
    agreement_id: str | None = Field(
        default=None, min_length=1, max_length=128, description="signed data-use agreement"
    )
    not_before: datetime | None = Field(default=None, description="default: now")
    not_after: datetime | None = Field(default=None, description="default: one year on")

    @field_validator("not_before", "not_after")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("times need a timezone")
        return value


class Transition(BaseModel):
    state: str
    at: Timestamp
    by: str
    ledger_index: int | None


class ContractPublic(BaseModel):
    id: str
    consumer_org: str
    provider_org: str
    datasets: list[str]
    purpose: str
    agreement_id: str | None
    not_before: Timestamp
    not_after: Timestamp
    status: ContractStatus
    in_force: bool = Field(description="active and within [not_before, not_after) now")
    proposed_by: str
    proposed_at: Timestamp
    signed_by: str | None
    signed_at: Timestamp | None
    terminated_by: str | None
    terminated_at: Timestamp | None
    termination_reason: str | None
    transitions: list[Transition]
    ledger_index: int | None = Field(
        default=None, description="the ledger entry of the transition this response reports"
    )


in_force = contract_in_force
"""Active and inside its validity window (`exchange.resources.contract_in_force`)."""


def to_public(
    contract: Contract, *, now: datetime, ledger_index: int | None = None
) -> ContractPublic:
    shown = {
        "not_before": aware(contract.not_before),
        "not_after": aware(contract.not_after),
        "in_force": in_force(contract, now),
        "ledger_index": ledger_index,
    }
    return ContractPublic.model_validate({**row_values(ContractPublic, contract), **shown})


def _transition(
    session: Session,
    trail: Trail,
    caller: Caller,
    contract: Contract,
    state: ContractStatus,
    action: str,
    now: datetime,
) -> Receipt:
    """Record one transition: audit record + ledger entry, and the contract's history."""
    receipt = trail.record(
        session,
        caller.subject(),
        audit.AuditEvent(
            audit.Event(f"contract.{state.value}"),  # CONTRACT_PROPOSED, _ACTIVE, _TERMINATED
            action,
            audit.Result.SUCCESS,
            object_id=contract.id,
            purpose=contract.purpose,
            detail=f"consumer={contract.consumer_org} provider={contract.provider_org} "
            f"datasets={len(contract.datasets)}",
        ),
        object_type="contract",
        now=now,
    )
    contract.transitions = [
        *contract.transitions,
        {
            "state": state.value,
            "at": now.isoformat(),
            "by": caller.client_id,
            "ledger_index": receipt.ledger_index,
        },
    ]
    return receipt


def propose_contract(
    session: Session,
    caller: Caller,
    body: ContractCreate,
    *,
    now: datetime,
    trail: Trail,
    default_term: timedelta = DEFAULT_TERM,
) -> ContractPublic:
    """An enterprise proposes a contract covering some of one provider's datasets."""
    caller.require_as(
        Role.DATA_CONSUMER, OrgKind.ENTERPRISE, "only an enterprise proposes contracts"
    )
    provider = session.get(Organisation, body.provider_org)
    if provider is None or provider.kind != OrgKind.PROVIDER:
        raise InvalidInput("provider_org is not a provider organisation", field="provider_org")
    wanted = list(dict.fromkeys(body.datasets))
    owned = set(
        session.scalars(
            select(Dataset.id).where(Dataset.id.in_(wanted), Dataset.owner_org == provider.id)
        )
    )
    missing = [d for d in wanted if d not in owned]
    if missing:
        raise InvalidInput(
            "every dataset must be one of the provider's", field="datasets", datasets=missing
        )
    not_before = body.not_before or now
    not_after = body.not_after or not_before + default_term
    if not_after <= not_before:
        raise InvalidInput("not_after must be later than not_before", field="not_after")
    contract = Contract(
        id=str(uuid.uuid4()),
        consumer_org=caller.org_id,
        provider_org=provider.id,
        datasets=wanted,
        purpose=body.purpose,
        agreement_id=body.agreement_id,
        not_before=not_before,
        not_after=not_after,
        status=ContractStatus.PROPOSED.value,
        proposed_by=caller.client_id,
        proposed_at=now,
        transitions=[],
    )
    session.add(contract)
    session.flush()
    receipt = _transition(session, trail, caller, contract, ContractStatus.PROPOSED, "propose", now)
    return to_public(contract, now=now, ledger_index=receipt.ledger_index)


def _sync_agreement(session: Session, contract: Contract, now: datetime) -> None:
    """Keep the agreement a contract was migrated into (revision 0024) in the same state.

    The policy checks agreements first; a deprecated route that signs or ends a migrated
    contract must sign or end what the policy sees.
    """
    agreement = session.get(Agreement, contract.id, with_for_update=True)
    if agreement is None:
        return
    if contract.status == ContractStatus.TERMINATED:
        agreement.state, agreement.terminated_at = "terminated", now
    elif contract.status == ContractStatus.ACTIVE:
        agreement.state = "finalized"


def _load_for_update(session: Session, contract_id: str) -> Contract:
    contract = session.get(Contract, contract_id, with_for_update=True)
    if contract is None:
        raise NotFound("no such contract", contract_id=contract_id)
    return contract


def sign_contract(
    session: Session, caller: Caller, contract_id: str, *, now: datetime, trail: Trail
) -> ContractPublic:
    """The provider signs a proposed contract: it becomes active."""
    caller.require(Role.DATA_PROVIDER)
    contract = _load_for_update(session, contract_id)
    if contract.provider_org != caller.org_id:
        if contract.consumer_org == caller.org_id:
            raise Forbidden("the provider signs, not the consumer")
        raise NotFound("no such contract", contract_id=contract_id)
    if contract.status != ContractStatus.PROPOSED:
        raise Conflict(
            f"the contract is {contract.status}, not proposed", contract_status=contract.status
        )
    contract.status = ContractStatus.ACTIVE.value
    contract.signed_by = caller.client_id
    contract.signed_at = now
    _sync_agreement(session, contract, now)
    receipt = _transition(session, trail, caller, contract, ContractStatus.ACTIVE, "sign", now)
    return to_public(contract, now=now, ledger_index=receipt.ledger_index)


def terminate_contract(
    session: Session,
    caller: Caller,
    contract_id: str,
    *,
    reason: str,
    now: datetime,
    trail: Trail,
) -> ContractPublic:
    """Either party ends a proposed or active contract; computations under it stop qualifying."""
    contract = _load_for_update(session, contract_id)
    if caller.org_id not in (contract.consumer_org, contract.provider_org):
        raise NotFound("no such contract", contract_id=contract_id)
    if not caller.roles & {Role.DATA_CONSUMER, Role.DATA_PROVIDER}:
        raise Forbidden("only the parties' data roles terminate a contract")
    if contract.status == ContractStatus.TERMINATED:
        raise Conflict("the contract is already terminated", contract_status=contract.status)
    contract.status = ContractStatus.TERMINATED.value
    contract.terminated_by = caller.client_id
    contract.terminated_at = now
    contract.termination_reason = reason[:500] or None
    _sync_agreement(session, contract, now)
    receipt = _transition(
        session, trail, caller, contract, ContractStatus.TERMINATED, "terminate", now
    )
    return to_public(contract, now=now, ledger_index=receipt.ledger_index)


def get_contract(
    session: Session, caller: Caller, contract_id: str, *, now: datetime
) -> ContractPublic:
    """A contract, for its parties, auditors and security administrators."""
    contract = party_row(
        session, Contract, contract_id, caller, noun="contract", sees_all=sees_everything(caller)
    )
    return to_public(contract, now=now)


def list_contracts(
    session: Session,
    caller: Caller,
    *,
    now: datetime,
    window: Window,
    status: ContractStatus | None = None,
) -> Slice[ContractPublic]:
    """The caller's organisation's contracts (every contract for auditors and security).

    Oldest first by (proposed_at, id), a keyset page (`exchange.paging`).
    """
    stmt = party_rows(Contract, caller, sees_all=sees_everything(caller))
    if status is not None:
        stmt = stmt.where(Contract.status == status.value)
    return keyset(
        session, stmt, (Contract.proposed_at, Contract.id), window, lambda c: to_public(c, now=now)
    )

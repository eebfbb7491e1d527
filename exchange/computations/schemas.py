"""The computation API's models (request, views, result, operators) and the public view."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from exchange.computations.context import MAX_INPUTS
from exchange.computations.job_keys import JobKeyIn
from exchange.computations.state import PLATFORM_PARTY, State
from exchange.models import Computation, ComputationInput
from exchange.timestamps import Timestamp
from exchange.views import row_values
from sandbox.operators import OPERATORS

__all__ = [
    "ApprovalPublic",
    "ComputationCreate",
    "ComputationPublic",
    "ComputationResult",
    "InputPublic",
    "OperatorPublic",
    "ParticipantPublic",
    "TransitionPublic",
    "list_operators",
    "to_public",
]


class OperatorPublic(BaseModel):
    name: str
    description: str
    technique: str
    min_providers: int
    parameters: dict[str, Any] = Field(description="JSON Schema of `params`")
    learns: dict[str, str] | None = Field(
        default=None, description="who learns what, per party (joins and vertical learning)"
    )


def list_operators() -> list[OperatorPublic]:
    """The vetted operators a request may name, with their parameters' JSON Schema."""
    return [
        OperatorPublic(
            name=spec.name,
            description=spec.description,
            technique=spec.technique,
            min_providers=spec.min_providers,
            parameters=spec.parameters_schema(),
            learns=dict(spec.learns) if spec.learns else None,
        )
        for spec in OPERATORS.values()
    ]


class ComputationCreate(BaseModel):
    """What an enterprise asks for."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    operator: str = Field(min_length=1, max_length=64)
    inputs: list[str] = Field(min_length=1, max_length=MAX_INPUTS, description="dataset ids")
    params: dict[str, Any] = Field(default_factory=dict)
    purpose: str = Field(min_length=3, max_length=500, description="must equal the contract's")
    legal_basis: str | None = Field(
        default=None, max_length=200, description="consent:<id> or statute:<ref> (PI data)"
    )
    contract_id: str | None = Field(
        default=None, max_length=36, description="deprecated: name the agreement_id"
    )
    agreement_id: str | None = Field(
        default=None, max_length=36, description="the market agreement the request runs under"
    )
    job_key: JobKeyIn | None = Field(
        default=None,
        description="public half of a job key the requester generated (pdx_client.jobkeys); "
        "required when an input is on its provider's own node",
    )


class TransitionPublic(BaseModel):
    state: str = Field(description="snake_case, as `ComputationPublic.state`")
    event: str
    at: Timestamp
    by: str
    ledger_index: int | None
    detail: str | None = None


class ApprovalPublic(BaseModel):
    state: str
    by: str | None
    at: Timestamp | None


class InputPublic(BaseModel):
    dataset_id: str
    provider_org: str
    level: str
    custody: str
    contract_id: str | None
    approval: ApprovalPublic
    release_approval: ApprovalPublic


class ParticipantPublic(BaseModel):
    party: str = Field(description="organisation id, or 'platform' for the coordinator")
    roles: list[Literal["input", "compute", "result"]]
    description: str


class ComputationPublic(BaseModel):
    id: str
    state: State
    operator: str
    params: dict[str, Any]
    purpose: str
    legal_basis: str | None
    requester_org: str
    requested_by: str
    created_at: Timestamp
    updated_at: Timestamp
    inputs: list[InputPublic]
    participants: list[ParticipantPublic]
    decisions: list[dict[str, Any]]
    obligations: dict[str, Any]
    security_model: dict[str, Any]
    transitions: list[TransitionPublic]
    error: dict[str, Any] | None
    epsilon_spent: float | None
    result_available: bool
    ledger_index: int | None = Field(
        default=None, description="the ledger entry of the transition this response reports"
    )


class ComputationResult(BaseModel):
    computation_id: str
    operator: str
    output: dict[str, Any]
    epsilon_spent: float | None
    digest: str = Field(description="`sha256:<hex>` of the output as released (on the ledger)")
    ledger_index: int | None = Field(description="the delivery's ledger entry")


def to_public(comp: Computation, *, ledger_index: int | None = None) -> ComputationPublic:
    providers: dict[str, list[ComputationInput]] = {}
    for inp in comp.inputs:
        providers.setdefault(inp.provider_org, []).append(inp)
    participants = [
        ParticipantPublic(
            party=org,
            roles=["input", "compute"],
            description="provider: its operator runs on its own rows "
            + (
                "on its node"
                if any(i.custody == "node" for i in inputs)
                else "in the platform's sandbox"
            )
            + " and returns only an encrypted partial",
        )
        for org, inputs in providers.items()
    ]
    participants.append(
        ParticipantPublic(
            party=PLATFORM_PARTY,
            roles=["compute"],
            description="coordinator: adds ciphertexts; holds no secret key",
        )
    )
    participants.append(
        ParticipantPublic(
            party=comp.requester_org,
            roles=["result"],
            description="requester: holds the job secret key in its own SDK and decrypts the "
            "encrypted aggregate there"
            if "job_key" in comp.security_model
            else "requester: holds the job secret key (under its KEK), decrypts only "
            "the aggregate, receives what the release gate releases",
        )
    )

    def approval(state: str, by: str | None, at: datetime | None) -> ApprovalPublic:
        return ApprovalPublic(state=state, by=by, at=at)

    return ComputationPublic.model_validate(
        {
            **row_values(ComputationPublic, comp),
            "inputs": [
                InputPublic.model_validate(
                    {
                        **row_values(InputPublic, i),
                        "approval": approval(i.approval, i.approved_by, i.approved_at),
                        "release_approval": approval(
                            i.release_approval, i.release_approved_by, i.release_approved_at
                        ),
                    }
                )
                for i in comp.inputs
            ],
            "participants": participants,
            # Transitions written before 0027 name "awaiting-approval": one spelling on the way out.
            "transitions": [
                TransitionPublic.model_validate({**t, "state": str(t["state"]).replace("-", "_")})
                for t in comp.transitions
            ],
            "result_available": comp.state == State.RELEASED and comp.result_sealed is not None,
            "ledger_index": ledger_index,
        }
    )

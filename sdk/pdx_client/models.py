"""Typed views of the API's responses (unknown fields are kept, so newer servers parse)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Agreement",
    "Computation",
    "ComputationResult",
    "Dataset",
    "InclusionProof",
    "Me",
    "ScanFinding",
    "ScanReport",
    "TrailEntry",
    "TrailVerification",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class Me(_Model):
    client_id: str
    org_id: str
    org_kind: str
    roles: list[str]


class Dataset(_Model):
    id: str
    name: str
    level: str
    owner_org: str | None = None
    rows: int | None = None
    ledger_index: int | None = None


class ScanFinding(_Model):
    type: str
    detail: str
    field: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


class ScanReport(_Model):
    ok: bool
    declared_level: str | None
    required_level: str | None
    rows: int | None
    columns: list[str]
    fields: list[dict[str, Any]]
    findings: list[ScanFinding]


class Agreement(_Model):
    """Today's contract (the market issue renames contracts to agreements)."""

    id: str
    provider_org: str
    datasets: list[str]
    purpose: str
    consumer_org: str | None = None
    requester_org: str | None = None
    status: str | None = None
    state: str | None = None
    ledger_index: int | None = None

    @property
    def lifecycle(self) -> str:
        """`state` (target API) or `status` (today's)."""
        return self.state or self.status or ""


class Computation(_Model):
    id: str
    state: str
    operator: str
    purpose: str
    requester_org: str
    inputs: list[dict[str, Any]] = Field(default_factory=list)
    obligations: dict[str, Any] = Field(default_factory=dict)
    error: dict[str, Any] | None = None
    epsilon_spent: float | None = None
    result_available: bool = False
    ledger_index: int | None = None
    created_at: datetime | None = None

    @property
    def stage(self) -> str:
        """The state in snake_case, whichever spelling the server uses."""
        return self.state.replace("-", "_")


class ComputationResult(_Model):
    computation_id: str
    operator: str
    output: dict[str, Any]
    epsilon_spent: float | None = None
    ledger_index: int | None = None


class InclusionProof(_Model):
    tree_size: int
    hashes: list[str]


class TrailEntry(_Model):
    index: int
    leaf: str
    record: dict[str, Any]
    parties: list[str] = Field(default_factory=list)
    inclusion: InclusionProof | None = None


class TrailVerification(_Model):
    """What `pdx trail verify` checked."""

    org: str
    checkpoint_size: int
    previous_size: int | None
    verified: list[int]
    pending: list[int] = Field(description="entries newer than the checkpoint")

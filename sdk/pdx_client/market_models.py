"""Typed views of the market's responses (unknown fields kept, so newer servers parse)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CatalogItem",
    "CatalogPage",
    "Certificate",
    "Dispute",
    "MarketAgreement",
    "Negotiation",
    "Offer",
    "Party",
    "PartyKeyInfo",
    "Product",
    "Settlement",
    "Statement",
    "Usage",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class PartyKeyInfo(_Model):
    id: str
    algorithm: str
    public_key: str
    registered_at: str | None = None


class Party(_Model):
    """An organisation as a market party: verified by the operator, with its public keys."""

    org_id: str
    name: str
    verified: bool
    verified_at: str | None = None
    keys: list[PartyKeyInfo] = Field(default_factory=list)
    ledger_index: int | None = None

    def holds(self, key_id: str) -> bool:
        return any(k.id == key_id for k in self.keys)


class Offer(_Model):
    id: str
    terms: dict[str, Any]
    policy: dict[str, Any] | None = Field(default=None, description="the ODRL 2.2 offer")


class Product(_Model):
    id: str
    state: str
    provider_org: str
    provider_name: str
    title: str
    description: str
    domain: str
    keywords: list[str] = Field(default_factory=list)
    datasets: list[str] = Field(default_factory=list)
    grade: str | None = None
    provenance: dict[str, Any] | None = None
    rights: dict[str, Any] = Field(default_factory=dict)
    delivery_modes: list[str] = Field(default_factory=list)
    offers: list[Offer] = Field(default_factory=list)
    min_price: str | None = None
    precheck: dict[str, Any] | None = None
    listed_at: str | None = None
    ledger_index: int | None = None


class CatalogItem(_Model):
    """A listed product as the catalog shows it (DCAT fields beside the plain ones)."""

    id: str
    title: str
    description: str
    domain: str
    grade: str | None = None
    provider_org: str
    provider_name: str
    keywords: list[str] = Field(default_factory=list)
    delivery_modes: list[str] = Field(default_factory=list)
    min_price: str | None = None
    listed_at: str | None = None
    offers: list[Offer] = Field(default_factory=list)


class CatalogPage(_Model):
    """What a search found: the items read (every page, up to a cap) and the server's total."""

    items: list[CatalogItem]
    total: int


class Negotiation(_Model):
    id: str
    state: str
    product_id: str
    offer_id: str
    requester_org: str
    provider_org: str
    terms: dict[str, Any]
    requirements: dict[str, Any] = Field(default_factory=dict)
    agreement_document: dict[str, Any] | None = None
    agreement_digest: str | None = None
    signatures: dict[str, Any] = Field(default_factory=dict)
    transitions: list[dict[str, Any]] = Field(default_factory=list)
    agreement_id: str | None = None
    ledger_index: int | None = None

    @property
    def states(self) -> list[str]:
        """The states it went through, in order."""
        return [str(t.get("state")) for t in self.transitions]


class MarketAgreement(_Model):
    """A finalized agreement: the signed ODRL document, both signatures, what was used."""

    id: str
    state: str
    requester_org: str
    provider_org: str
    datasets: list[str]
    purpose: str
    product_id: str | None = None
    negotiation_id: str | None = None
    dua_reference: str | None = None
    legal_basis: str | None = None
    terms: dict[str, Any] = Field(default_factory=dict)
    document: dict[str, Any] | None = None
    digest: str | None = None
    signatures: dict[str, Any] = Field(default_factory=dict)
    not_before: str | None = None
    not_after: str | None = None
    in_force: bool = False
    used: dict[str, Any] = Field(default_factory=dict)
    ledger_index: int | None = None


class Usage(_Model):
    """An agreement's meter: what was used against its limits (None: no limit)."""

    agreement_id: str
    in_force: bool
    computations: int
    rows: int
    epsilon: float
    max_computations: int | None = None
    max_rows: int | None = None
    epsilon_share: float | None = None
    price_model: str | None = None
    price: Decimal | None = None

    @property
    def computations_left(self) -> int | None:
        if self.max_computations is None:
            return None
        return max(0, self.max_computations - self.computations)

    @property
    def epsilon_left(self) -> float | None:
        if self.epsilon_share is None:
            return None
        return max(0.0, self.epsilon_share - self.epsilon)


class Statement(_Model):
    """A signed settlement statement (kind: agreement, provider or requester)."""

    id: str
    settlement_id: str
    kind: str
    org_id: str
    agreement_id: str | None = None
    period_start: str | None = None
    period_end: str | None = None
    statement: dict[str, Any]
    digest: str
    signature: str
    ledger_index: int | None = None

    @property
    def lines(self) -> list[dict[str, Any]]:
        lines: list[dict[str, Any]] = self.statement.get("lines", [])
        return lines

    @property
    def amount(self) -> Decimal:
        """The statement's total (CNY, exact): gross for agreements and providers."""
        body = self.statement
        return Decimal(str(body.get("total") or body.get("gross") or "0"))


class Settlement(_Model):
    settlement_id: str
    period_start: str
    period_end: str
    meter_records: int
    statements: list[Statement]


class Dispute(_Model):
    id: str
    statement_id: str
    line: int
    disputed: dict[str, Any]
    state: str
    opened_by_org: str
    reason: str
    ledger_index: int | None = None


class Certificate(_Model):
    """A data-asset registration certificate with its ledger proof (`proof` once sealed)."""

    certificate: dict[str, Any]
    digest: str
    signature: str
    signer: dict[str, Any]
    ledger_index: int | None = None
    proof: dict[str, Any] | None = None

    @property
    def id(self) -> str:
        return str(self.certificate["id"])

"""Tables the market owns: parties, products, offers, negotiations, agreements, meters."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from exchange.models import ExchangeBase

__all__ = [
    "Agreement",
    "Certificate",
    "Dispute",
    "MeterRecord",
    "Negotiation",
    "Offer",
    "Party",
    "PartyKey",
    "Product",
    "ProductOperator",
    "Statement",
]

# The column kinds the market's tables share (SQLAlchemy 2's `Annotated` column types).
UuidPk = Annotated[str, mapped_column(String(36), primary_key=True)]
OrgRef = Annotated[str, mapped_column(ForeignKey("organisations.id"), index=True)]
ProductRef = Annotated[str, mapped_column(ForeignKey("market_products.id"), index=True)]
LedgerIndex = Annotated[int | None, mapped_column(BigInteger)]
"""The index of the ledger entry that created or last changed the row."""


class Party(ExchangeBase):
    """An organisation's market identity: verified by the operator before it may agree.

    DSL art. 33 asks the exchange to check both sides' identities; the unified social
    credit code (GB 32100-2015) is what the operator checked.
    """

    __tablename__ = "market_parties"

    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), primary_key=True)
    credit_code: Mapped[str] = mapped_column(String(18))
    verified_by: Mapped[str] = mapped_column(String(64))
    verified_at: Mapped[datetime]
    ledger_index: Mapped[LedgerIndex]


class PartyKey(ExchangeBase):
    """A public key an organisation signs agreements with (the private half stays with it)."""

    __tablename__ = "market_party_keys"

    id: Mapped[str] = mapped_column(String(80), primary_key=True)  # sha256:<hex> of the key
    org_id: Mapped[OrgRef]
    algorithm: Mapped[str] = mapped_column(String(32))
    public_key: Mapped[str] = mapped_column(String(200))  # base64 of the raw encoding
    registered_by: Mapped[str] = mapped_column(String(64))
    registered_at: Mapped[datetime]


class Product(ExchangeBase):
    """A data product: datasets packaged with provenance, rights and offers; listed once checked."""

    __tablename__ = "market_products"

    id: Mapped[UuidPk]
    provider_org: Mapped[OrgRef]
    provider_name: Mapped[str] = mapped_column(String(200))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    domain: Mapped[str] = mapped_column(String(64), index=True)
    keywords: Mapped[list[str]] = mapped_column(JSON)
    datasets: Mapped[list[str]] = mapped_column(JSON)
    grade: Mapped[str] = mapped_column(String(16), index=True)  # the highest input level
    open_data: Mapped[int] = mapped_column(Integer)  # 1 when every dataset is `open`
    provenance: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    rights: Mapped[dict[str, Any]] = mapped_column(JSON)
    delivery_modes: Mapped[list[str]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), index=True)
    precheck: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    min_price_fen: Mapped[int | None] = mapped_column(BigInteger, index=True)
    search_tokens: Mapped[str] = mapped_column(Text)
    """jieba tokens of title, description and keywords, space-separated (full-text index)."""
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    listed_at: Mapped[datetime | None] = mapped_column(index=True)
    ledger_index: Mapped[LedgerIndex]

    __table_args__ = (
        Index(
            "ix_market_products_search",
            text("to_tsvector('simple', search_tokens)"),
            postgresql_using="gin",
        ).ddl_if(dialect="postgresql"),
    )


class ProductOperator(ExchangeBase):
    """Which vetted operators some offer of a product permits (the catalog's operator filter)."""

    __tablename__ = "market_product_operators"

    product_id: Mapped[str] = mapped_column(ForeignKey("market_products.id"), primary_key=True)
    operator: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class Offer(ExchangeBase):
    """One ODRL 2.2 offer of a product: its policy (JSON-LD) and the terms pdx enforces."""

    __tablename__ = "market_offers"

    id: Mapped[UuidPk]
    product_id: Mapped[ProductRef]
    terms: Mapped[dict[str, Any]] = mapped_column(JSON)
    policy: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime]


class Negotiation(ExchangeBase):
    """A DSP contract negotiation between an enterprise (consumer) and a provider."""

    __tablename__ = "market_negotiations"

    id: Mapped[UuidPk]
    product_id: Mapped[ProductRef]
    offer_id: Mapped[str] = mapped_column(String(36))
    consumer_org: Mapped[OrgRef]
    provider_org: Mapped[OrgRef]
    state: Mapped[str] = mapped_column(String(16), index=True)
    terms: Mapped[dict[str, Any]] = mapped_column(JSON)
    """The terms on the table now (the last offer or counter-offer)."""
    requirements: Mapped[dict[str, Any]] = mapped_column(JSON)
    """{purpose, dua_reference, legal_basis}: checked here and again at compute time."""
    draft: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """The agreement document both parties sign, fixed when the consumer accepts."""
    draft_digest: Mapped[str | None] = mapped_column(String(80))
    signatures: Mapped[dict[str, Any]] = mapped_column(JSON)
    transitions: Mapped[list[Any]] = mapped_column(JSON)
    agreement_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Agreement(ExchangeBase):
    """A finalized agreement: what the policy checks for a computation (replaces contracts).

    Migrated contracts (revision 0024) keep their ids and have `origin = "contract"`
    and no signatures. `used_*` are the running meter totals, updated in the request's
    transaction under a row lock.
    """

    __tablename__ = "market_agreements"

    id: Mapped[UuidPk]
    origin: Mapped[str] = mapped_column(String(16))
    negotiation_id: Mapped[str | None] = mapped_column(String(36))
    product_id: Mapped[str | None] = mapped_column(String(36), index=True)
    consumer_org: Mapped[OrgRef]
    provider_org: Mapped[OrgRef]
    datasets: Mapped[list[str]] = mapped_column(JSON)
    purpose: Mapped[str] = mapped_column(String(500))
    dua_reference: Mapped[str | None] = mapped_column(String(128))
    legal_basis: Mapped[str | None] = mapped_column(String(200))
    terms: Mapped[dict[str, Any]] = mapped_column(JSON)
    document: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    digest: Mapped[str | None] = mapped_column(String(80))
    signatures: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), index=True)
    not_before: Mapped[datetime]
    not_after: Mapped[datetime]
    used_computations: Mapped[int] = mapped_column(BigInteger)
    used_rows: Mapped[int] = mapped_column(BigInteger)
    used_epsilon: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime]
    terminated_at: Mapped[datetime | None]
    ledger_index: Mapped[LedgerIndex]


class MeterRecord(ExchangeBase):
    """One computation metered under one agreement: count, rows touched, ε, amount (fen)."""

    __tablename__ = "market_meter_records"

    id: Mapped[UuidPk]
    agreement_id: Mapped[str] = mapped_column(ForeignKey("market_agreements.id"), index=True)
    computation_id: Mapped[str] = mapped_column(String(36), index=True)
    consumer_org: Mapped[str] = mapped_column(String(36))
    provider_org: Mapped[str] = mapped_column(String(36), index=True)
    at: Mapped[datetime] = mapped_column(index=True)
    computations: Mapped[int] = mapped_column(Integer)
    rows: Mapped[int] = mapped_column(BigInteger)
    epsilon: Mapped[float] = mapped_column(Float)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    statement_id: Mapped[str | None] = mapped_column(String(36), index=True)
    ledger_index: Mapped[LedgerIndex]


class Statement(ExchangeBase):
    """A settlement statement (per agreement, provider or consumer), signed and on the ledger."""

    __tablename__ = "market_statements"

    id: Mapped[UuidPk]
    settlement_id: Mapped[str] = mapped_column(String(36), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    org_id: Mapped[str] = mapped_column(String(36), index=True)
    agreement_id: Mapped[str | None] = mapped_column(String(36), index=True)
    period_start: Mapped[datetime]
    period_end: Mapped[datetime]
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    digest: Mapped[str] = mapped_column(String(80))
    signature: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    ledger_index: Mapped[LedgerIndex]


class Dispute(ExchangeBase):
    """A party's dispute of one statement line."""

    __tablename__ = "market_disputes"

    id: Mapped[UuidPk]
    statement_id: Mapped[str] = mapped_column(ForeignKey("market_statements.id"), index=True)
    line: Mapped[int] = mapped_column(Integer)
    opened_by_org: Mapped[str] = mapped_column(String(36))
    opened_by: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(1000))
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    ledger_index: Mapped[LedgerIndex]


class Certificate(ExchangeBase):
    """A data-asset registration certificate (数据资产登记) for a listed product."""

    __tablename__ = "market_certificates"

    id: Mapped[UuidPk]
    product_id: Mapped[ProductRef]
    holder_org: Mapped[str] = mapped_column(String(36), index=True)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    signer: Mapped[dict[str, Any]] = mapped_column(JSON)
    digest: Mapped[str] = mapped_column(String(80))
    signature: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    ledger_index: Mapped[LedgerIndex]

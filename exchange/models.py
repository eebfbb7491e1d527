"""Tables `exchange` owns: organisations, service clients, datasets and their fields."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
    selectinload,
)

from audit.models import NAMING_CONVENTION, UtcDateTime
from exchange.errors import NotFound


class ExchangeBase(DeclarativeBase):
    """Declarative base for the tables `exchange` owns."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)

    type_annotation_map = {
        datetime: UtcDateTime,
        dict[str, Any]: JSON,
        list[str]: JSON,
        list[Any]: JSON,
    }


class Organisation(ExchangeBase):
    __tablename__ = "organisations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]

    clients: Mapped[list[Client]] = relationship(back_populates="organisation")


class Client(ExchangeBase):
    """A service client (OAuth 2 client-credentials) belonging to one organisation."""

    __tablename__ = "clients"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the public client_id
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    secret_hash: Mapped[str] = mapped_column(String(256))
    roles: Mapped[list[str]] = mapped_column(JSON)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]
    # The person the client acts for (issue 11): approvals and duties belong to people.
    owner_person_id: Mapped[str | None] = mapped_column(ForeignKey("people.id"), index=True)
    # The person who last set the secret, and so has seen it: an administrator issuing or
    # rotating a client for another person can act as them (the two-person rule counts it).
    secret_issued_by: Mapped[str | None] = mapped_column(String(40))

    organisation: Mapped[Organisation] = relationship(back_populates="clients")

    __table_args__ = (UniqueConstraint("org_id", "name", name="uq_clients_org_name"),)


class Person(ExchangeBase):
    """A human member of an organisation: password (scrypt) plus TOTP (RFC 6238).

    `created_by_person` is whoever invited this person (NULL for an organisation's first
    administrator, invited by the platform operator); separation of duties reads it.
    """

    __tablename__ = "people"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    display_name: Mapped[str] = mapped_column(String(200))
    login: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    totp_key_id: Mapped[str] = mapped_column(String(36))
    totp_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    roles: Mapped[list[str]] = mapped_column(JSON)
    org_admin: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(16))
    created_by_person: Mapped[str | None] = mapped_column(String(40), index=True)
    invited_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]


class Invitation(ExchangeBase):
    """A one-time, expiring invitation to become a person of an organisation.

    Only the SHA-256 of the code is stored (the code is 256 random bits, so a fast
    hash is enough: nothing to brute-force).
    """

    __tablename__ = "person_invitations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    roles: Mapped[list[str]] = mapped_column(JSON)
    org_admin: Mapped[bool] = mapped_column(Boolean)
    invited_by_person: Mapped[str | None] = mapped_column(String(40))
    invited_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    redeemed_at: Mapped[datetime | None]
    person_id: Mapped[str | None] = mapped_column(String(40))


class Dataset(ExchangeBase):
    """A registered dataset: catalogue metadata (GRD-02), content facts, custody."""

    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner_org: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(String(2000))
    classification_path: Mapped[list[str]] = mapped_column(JSON)
    level: Mapped[str] = mapped_column(String(16))
    impact_object: Mapped[str] = mapped_column(String(32))
    impact_degree: Mapped[str] = mapped_column(String(32))
    processing_degree: Mapped[str] = mapped_column(String(16))
    source_agency: Mapped[str] = mapped_column(String(200))
    source_system: Mapped[str | None] = mapped_column(String(200))
    accountable_department: Mapped[str] = mapped_column(String(200))
    pi: Mapped[bool] = mapped_column(Boolean)
    sensitive_pi: Mapped[bool] = mapped_column(Boolean)
    important_data_catalogue: Mapped[bool] = mapped_column(Boolean)
    share_attribute: Mapped[str] = mapped_column(String(16))
    open_attribute: Mapped[str] = mapped_column(String(16))
    graded_at: Mapped[datetime]
    graded_by: Mapped[str] = mapped_column(String(128))
    next_review_at: Mapped[datetime]
    custody: Mapped[str] = mapped_column(String(16))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    rows: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    sm3: Mapped[str] = mapped_column(String(64))
    data_key_id: Mapped[str] = mapped_column(String(36))
    scan: Mapped[dict[str, Any]] = mapped_column(JSON)
    profile: Mapped[dict[str, Any]] = mapped_column(JSON)
    registered_at: Mapped[datetime]
    registered_by: Mapped[str] = mapped_column(String(128))

    fields: Mapped[list[DatasetField]] = relationship(
        back_populates="dataset", order_by="DatasetField.position", cascade="all, delete-orphan"
    )

    __table_args__ = (
        UniqueConstraint("owner_org", "name", name="uq_datasets_owner_name"),
        # The listing (exchange.catalog.list_datasets): its visibility groups are counted
        # from the first, and its pages walk the second in order.
        Index("ix_datasets_visibility", "owner_org", "level", "open_attribute", "pi"),
        Index("ix_datasets_registered", "registered_at", "id"),
    )


class DatasetField(ExchangeBase):
    """One column of a dataset with its own grading (就高从严 is checked across these)."""

    __tablename__ = "dataset_fields"

    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    level: Mapped[str] = mapped_column(String(16))
    pi: Mapped[bool] = mapped_column(Boolean)
    sensitive_pi: Mapped[bool] = mapped_column(Boolean)
    non_empty: Mapped[int] = mapped_column(BigInteger)
    detections: Mapped[dict[str, Any]] = mapped_column(JSON)
    reason: Mapped[str | None] = mapped_column(String(500))

    dataset: Mapped[Dataset] = relationship(back_populates="fields")


def load_dataset(session: Session, dataset_id: str, *, fields: bool = False) -> Dataset:
    """The dataset (with its fields loaded at once if `fields`), or NotFound."""
    options = [selectinload(Dataset.fields)] if fields else []
    ds = session.get(Dataset, dataset_id, options=options)
    if ds is None:
        raise NotFound("no such dataset", dataset_id=dataset_id)
    return ds


class TokenFamily(ExchangeBase):
    """A chain of refresh tokens from one login; revoking it kills every token in it."""

    __tablename__ = "auth_token_families"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id"), index=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(String(64))
    # RFC 8705: the certificate the family is bound to (x5t#S256), when issued over mTLS.
    cnf_x5t: Mapped[str | None] = mapped_column(String(64))


class RefreshToken(ExchangeBase):
    """One refresh token, stored as its SHA-256; usable once (rotation on use)."""

    __tablename__ = "auth_refresh_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    family_id: Mapped[str] = mapped_column(ForeignKey("auth_token_families.id"), index=True)
    issued_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class RevokedToken(ExchangeBase):
    """An access token revoked before expiry (RFC 7009); kept until it would have expired."""

    __tablename__ = "auth_revoked_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(index=True)
    revoked_at: Mapped[datetime]


# -- contracts, computations, privacy budgets, provider nodes (the computation issue) ------


class Contract(ExchangeBase):
    """A data-use contract between an enterprise (consumer) and a provider, purpose-bound.

    `proposed` by the consumer, `active` once the provider signs, `terminated` by either
    party. Whether it is in force at a given time is `not_before <= t < not_after`.
    """

    __tablename__ = "contracts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    consumer_org: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    provider_org: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    datasets: Mapped[list[str]] = mapped_column(JSON)
    purpose: Mapped[str] = mapped_column(String(500))
    agreement_id: Mapped[str | None] = mapped_column(String(128))
    not_before: Mapped[datetime]
    not_after: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16), index=True)
    proposed_by: Mapped[str] = mapped_column(String(64))
    proposed_at: Mapped[datetime]
    signed_by: Mapped[str | None] = mapped_column(String(64))
    signed_at: Mapped[datetime | None]
    terminated_by: Mapped[str | None] = mapped_column(String(64))
    terminated_at: Mapped[datetime | None]
    termination_reason: Mapped[str | None] = mapped_column(String(500))
    transitions: Mapped[list[Any]] = mapped_column(JSON)
    """[{state, at, by, ledger_index}] in order: the contract's history on the ledger."""


class Computation(ExchangeBase):
    """A computation request and its state machine (ARCHITECTURE.md, "Computations").

    requested → awaiting_approval → running → review → released, or rejected / failed.
    The job's HE secret key is sealed under a data key wrapped by the result party's
    KEK (`secret_key_id`, `secret_sealed`) and deleted when the job ends; the released
    output is sealed the same way (`result_key_id`, `result_sealed`) until `retain_until`.
    """

    __tablename__ = "computations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    requester_org: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    requested_by: Mapped[str] = mapped_column(String(64))
    operator: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    purpose: Mapped[str] = mapped_column(String(500))
    legal_basis: Mapped[str | None] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(24), index=True)
    obligations: Mapped[dict[str, Any]] = mapped_column(JSON)
    decisions: Mapped[list[Any]] = mapped_column(JSON)
    security_model: Mapped[dict[str, Any]] = mapped_column(JSON)
    transitions: Mapped[list[Any]] = mapped_column(JSON)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    epsilon_spent: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    secret_key_id: Mapped[str | None] = mapped_column(String(36))
    secret_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    result_key_id: Mapped[str | None] = mapped_column(String(36))
    result_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    result_digest: Mapped[str | None] = mapped_column(String(64))
    retain_until: Mapped[datetime | None]

    inputs: Mapped[list[ComputationInput]] = relationship(
        back_populates="computation",
        order_by="ComputationInput.position",
        cascade="all, delete-orphan",
    )


class ComputationInput(ExchangeBase):
    """One input dataset of a computation, its provider and that provider's approvals."""

    __tablename__ = "computation_inputs"

    computation_id: Mapped[str] = mapped_column(ForeignKey("computations.id"), primary_key=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    provider_org: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    contract_id: Mapped[str | None] = mapped_column(String(36))
    level: Mapped[str] = mapped_column(String(16))
    custody: Mapped[str] = mapped_column(String(16))
    approval: Mapped[str] = mapped_column(String(16))
    """Run approval: `not-required`, `pending`, `approved` or `rejected`."""
    approved_by: Mapped[str | None] = mapped_column(String(64))
    approved_at: Mapped[datetime | None]
    release_approval: Mapped[str] = mapped_column(String(16))
    """Release review: `not-required`, `pending`, `approved` or `rejected`."""
    release_approved_by: Mapped[str | None] = mapped_column(String(64))
    release_approved_at: Mapped[datetime | None]

    computation: Mapped[Computation] = relationship(back_populates="inputs")


class SpentColumns:
    """The last columns of every privacy budget row: the (ε, δ) spent and when it moved."""

    epsilon_spent: Mapped[float] = mapped_column(Float)
    delta_spent: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime]


class ChargeColumns:
    """The last columns of every privacy charge row: the (ε, δ) charged and when."""

    epsilon: Mapped[float] = mapped_column(Float)
    delta: Mapped[float] = mapped_column(Float)
    charged_at: Mapped[datetime]


class PrivacyBudgetAccount(SpentColumns, ExchangeBase):
    """A dataset's (ε, δ) budget and what has been spent of it (docs/compliance.md PI-07)."""

    __tablename__ = "computation_privacy_budget"

    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), primary_key=True)
    epsilon_limit: Mapped[float] = mapped_column(Float)
    delta_limit: Mapped[float] = mapped_column(Float)


class PrivacyCharge(ChargeColumns, ExchangeBase):
    """One charge against a dataset's budget, by one job (the privacy ledger)."""

    __tablename__ = "computation_privacy_charges"

    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(64), primary_key=True)


class ProviderNodeRecord(ExchangeBase):
    """A provider organisation's node: embedded (in-process Datasite) or reached over HTTP.

    For an HTTP node, the account the platform uses there is sealed under a data key
    wrapped by the provider's KEK (`credentials_key_id`, `credentials_sealed`).
    """

    __tablename__ = "provider_nodes"

    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    url: Mapped[str | None] = mapped_column(String(500))
    credentials_key_id: Mapped[str | None] = mapped_column(String(36))
    credentials_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    registered_by: Mapped[str] = mapped_column(String(64))
    registered_at: Mapped[datetime]


class NodeDataset(ExchangeBase):
    """Where a node-held dataset's rows live: the asset on its provider's node."""

    __tablename__ = "node_datasets"

    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    asset_ref: Mapped[str] = mapped_column(String(200))
    uploaded_at: Mapped[datetime]


class ComputationLease(ExchangeBase):
    """Who runs a `running` computation, until when: its run's lease (issue 13).

    The worker running it renews `expires_at` (its heartbeat); once that has passed,
    recovery may run the job again under `attempt + 1`. Every end of a run checks its
    attempt in the transaction that ends it, so the fenced-off runner changes nothing.
    """

    __tablename__ = "computation_leases"

    computation_id: Mapped[str] = mapped_column(ForeignKey("computations.id"), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer)
    holder: Mapped[str] = mapped_column(String(128))
    heartbeat_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)


class DatasetJoinKey(ExchangeBase):
    """A column its provider declared joinable, and the kind of identifier it holds (issue 18).

    Only declared columns may be the key of a private join (`exchange.joinkeys`); the
    declaration is the provider's, recorded on the ledger.
    """

    __tablename__ = "dataset_join_keys"

    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), primary_key=True)
    column: Mapped[str] = mapped_column(String(200), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    declared_by: Mapped[str] = mapped_column(String(128))
    declared_at: Mapped[datetime]

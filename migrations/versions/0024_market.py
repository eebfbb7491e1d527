"""market: parties, products, ODRL offers, DSP negotiations, agreements, meters, statements

Existing contracts become agreements (same ids, origin "contract", no party signatures);
their `agreement_id` becomes the agreement's `dua_reference` (the external data-use
agreement it cites). PostgreSQL gets a GIN full-text index over the products' jieba
tokens; SQLite's FTS5 index is derived at run time (exchange/market/search.py), since a
virtual table and its shadow tables cannot be declared in the models.

Revision ID: 0024
Revises: 0005
Create Date: 2026-12-04 23:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0005"
branch_labels = None
depends_on = None

_STATES = {"active": "finalized", "proposed": "requested", "terminated": "terminated"}


def upgrade() -> None:

    op.create_table(
        "market_statements",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("settlement_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("org_id", sa.String(length=36), nullable=False),
        sa.Column("agreement_id", sa.String(length=36), nullable=True),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("digest", sa.String(length=80), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ledger_index", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_market_statements")),
    )
    op.create_index(
        op.f("ix_market_statements_agreement_id"),
        "market_statements",
        ["agreement_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_market_statements_org_id"), "market_statements", ["org_id"], unique=False
    )
    op.create_index(
        op.f("ix_market_statements_settlement_id"),
        "market_statements",
        ["settlement_id"],
        unique=False,
    )
    op.create_table(
        "market_agreements",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("negotiation_id", sa.String(length=36), nullable=True),
        sa.Column("product_id", sa.String(length=36), nullable=True),
        sa.Column("consumer_org", sa.String(length=36), nullable=False),
        sa.Column("provider_org", sa.String(length=36), nullable=False),
        sa.Column("datasets", sa.JSON(), nullable=False),
        sa.Column("purpose", sa.String(length=500), nullable=False),
        sa.Column("dua_reference", sa.String(length=128), nullable=True),
        sa.Column("legal_basis", sa.String(length=200), nullable=True),
        sa.Column("terms", sa.JSON(), nullable=False),
        sa.Column("document", sa.JSON(), nullable=True),
        sa.Column("digest", sa.String(length=80), nullable=True),
        sa.Column("signatures", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_computations", sa.BigInteger(), nullable=False),
        sa.Column("used_rows", sa.BigInteger(), nullable=False),
        sa.Column("used_epsilon", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("terminated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ledger_index", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["consumer_org"],
            ["organisations.id"],
            name=op.f("fk_market_agreements_consumer_org_organisations"),
        ),
        sa.ForeignKeyConstraint(
            ["provider_org"],
            ["organisations.id"],
            name=op.f("fk_market_agreements_provider_org_organisations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_market_agreements")),
    )
    op.create_index(
        op.f("ix_market_agreements_consumer_org"),
        "market_agreements",
        ["consumer_org"],
        unique=False,
    )
    op.create_index(
        op.f("ix_market_agreements_product_id"), "market_agreements", ["product_id"], unique=False
    )
    op.create_index(
        op.f("ix_market_agreements_provider_org"),
        "market_agreements",
        ["provider_org"],
        unique=False,
    )
    op.create_index(
        op.f("ix_market_agreements_state"), "market_agreements", ["state"], unique=False
    )
    op.create_table(
        "market_disputes",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("statement_id", sa.String(length=36), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("opened_by_org", sa.String(length=36), nullable=False),
        sa.Column("opened_by", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=1000), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ledger_index", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["statement_id"],
            ["market_statements.id"],
            name=op.f("fk_market_disputes_statement_id_market_statements"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_market_disputes")),
    )
    op.create_index(
        op.f("ix_market_disputes_statement_id"), "market_disputes", ["statement_id"], unique=False
    )
    op.create_table(
        "market_parties",
        sa.Column("org_id", sa.String(length=36), nullable=False),
        sa.Column("credit_code", sa.String(length=18), nullable=False),
        sa.Column("verified_by", sa.String(length=64), nullable=False),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ledger_index", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organisations.id"], name=op.f("fk_market_parties_org_id_organisations")
        ),
        sa.PrimaryKeyConstraint("org_id", name=op.f("pk_market_parties")),
    )
    op.create_table(
        "market_party_keys",
        sa.Column("id", sa.String(length=80), nullable=False),
        sa.Column("org_id", sa.String(length=36), nullable=False),
        sa.Column("algorithm", sa.String(length=32), nullable=False),
        sa.Column("public_key", sa.String(length=200), nullable=False),
        sa.Column("registered_by", sa.String(length=64), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organisations.id"], name=op.f("fk_market_party_keys_org_id_organisations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_market_party_keys")),
    )
    op.create_index(
        op.f("ix_market_party_keys_org_id"), "market_party_keys", ["org_id"], unique=False
    )
    op.create_table(
        "market_products",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("provider_org", sa.String(length=36), nullable=False),
        sa.Column("provider_name", sa.String(length=200), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("domain", sa.String(length=64), nullable=False),
        sa.Column("keywords", sa.JSON(), nullable=False),
        sa.Column("datasets", sa.JSON(), nullable=False),
        sa.Column("grade", sa.String(length=16), nullable=False),
        sa.Column("open_data", sa.Integer(), nullable=False),
        sa.Column("provenance", sa.JSON(), nullable=True),
        sa.Column("rights", sa.JSON(), nullable=False),
        sa.Column("delivery_modes", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("precheck", sa.JSON(), nullable=True),
        sa.Column("min_price_fen", sa.BigInteger(), nullable=True),
        sa.Column("search_tokens", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("listed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ledger_index", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["provider_org"],
            ["organisations.id"],
            name=op.f("fk_market_products_provider_org_organisations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_market_products")),
    )
    op.create_index(op.f("ix_market_products_domain"), "market_products", ["domain"], unique=False)
    op.create_index(op.f("ix_market_products_grade"), "market_products", ["grade"], unique=False)
    op.create_index(
        op.f("ix_market_products_listed_at"), "market_products", ["listed_at"], unique=False
    )
    op.create_index(
        op.f("ix_market_products_min_price_fen"), "market_products", ["min_price_fen"], unique=False
    )
    op.create_index(
        op.f("ix_market_products_provider_org"), "market_products", ["provider_org"], unique=False
    )
    op.create_index(op.f("ix_market_products_state"), "market_products", ["state"], unique=False)
    op.create_table(
        "market_certificates",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("product_id", sa.String(length=36), nullable=False),
        sa.Column("holder_org", sa.String(length=36), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("signer", sa.JSON(), nullable=False),
        sa.Column("digest", sa.String(length=80), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ledger_index", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["market_products.id"],
            name=op.f("fk_market_certificates_product_id_market_products"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_market_certificates")),
    )
    op.create_index(
        op.f("ix_market_certificates_holder_org"),
        "market_certificates",
        ["holder_org"],
        unique=False,
    )
    op.create_index(
        op.f("ix_market_certificates_product_id"),
        "market_certificates",
        ["product_id"],
        unique=False,
    )
    op.create_table(
        "market_meter_records",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("agreement_id", sa.String(length=36), nullable=False),
        sa.Column("computation_id", sa.String(length=36), nullable=False),
        sa.Column("consumer_org", sa.String(length=36), nullable=False),
        sa.Column("provider_org", sa.String(length=36), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("computations", sa.Integer(), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("epsilon", sa.Float(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("statement_id", sa.String(length=36), nullable=True),
        sa.Column("ledger_index", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["agreement_id"],
            ["market_agreements.id"],
            name=op.f("fk_market_meter_records_agreement_id_market_agreements"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_market_meter_records")),
    )
    op.create_index(
        op.f("ix_market_meter_records_agreement_id"),
        "market_meter_records",
        ["agreement_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_market_meter_records_at"), "market_meter_records", ["at"], unique=False
    )
    op.create_index(
        op.f("ix_market_meter_records_computation_id"),
        "market_meter_records",
        ["computation_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_market_meter_records_provider_org"),
        "market_meter_records",
        ["provider_org"],
        unique=False,
    )
    op.create_index(
        op.f("ix_market_meter_records_statement_id"),
        "market_meter_records",
        ["statement_id"],
        unique=False,
    )
    op.create_table(
        "market_negotiations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("product_id", sa.String(length=36), nullable=False),
        sa.Column("offer_id", sa.String(length=36), nullable=False),
        sa.Column("consumer_org", sa.String(length=36), nullable=False),
        sa.Column("provider_org", sa.String(length=36), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("terms", sa.JSON(), nullable=False),
        sa.Column("requirements", sa.JSON(), nullable=False),
        sa.Column("draft", sa.JSON(), nullable=True),
        sa.Column("draft_digest", sa.String(length=80), nullable=True),
        sa.Column("signatures", sa.JSON(), nullable=False),
        sa.Column("transitions", sa.JSON(), nullable=False),
        sa.Column("agreement_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["consumer_org"],
            ["organisations.id"],
            name=op.f("fk_market_negotiations_consumer_org_organisations"),
        ),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["market_products.id"],
            name=op.f("fk_market_negotiations_product_id_market_products"),
        ),
        sa.ForeignKeyConstraint(
            ["provider_org"],
            ["organisations.id"],
            name=op.f("fk_market_negotiations_provider_org_organisations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_market_negotiations")),
    )
    op.create_index(
        op.f("ix_market_negotiations_consumer_org"),
        "market_negotiations",
        ["consumer_org"],
        unique=False,
    )
    op.create_index(
        op.f("ix_market_negotiations_product_id"),
        "market_negotiations",
        ["product_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_market_negotiations_provider_org"),
        "market_negotiations",
        ["provider_org"],
        unique=False,
    )
    op.create_index(
        op.f("ix_market_negotiations_state"), "market_negotiations", ["state"], unique=False
    )
    op.create_table(
        "market_offers",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("product_id", sa.String(length=36), nullable=False),
        sa.Column("terms", sa.JSON(), nullable=False),
        sa.Column("policy", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["market_products.id"],
            name=op.f("fk_market_offers_product_id_market_products"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_market_offers")),
    )
    op.create_index(
        op.f("ix_market_offers_product_id"), "market_offers", ["product_id"], unique=False
    )
    op.create_table(
        "market_product_operators",
        sa.Column("product_id", sa.String(length=36), nullable=False),
        sa.Column("operator", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["market_products.id"],
            name=op.f("fk_market_product_operators_product_id_market_products"),
        ),
        sa.PrimaryKeyConstraint("product_id", "operator", name=op.f("pk_market_product_operators")),
    )
    op.create_index(
        op.f("ix_market_product_operators_operator"),
        "market_product_operators",
        ["operator"],
        unique=False,
    )
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.create_index(
            "ix_market_products_search",
            "market_products",
            [sa.text("to_tsvector('simple', search_tokens)")],
            postgresql_using="gin",
        )
    _migrate_contracts(bind)


def _migrate_contracts(bind: sa.engine.Connection) -> None:
    """Every contract becomes an agreement with the same id; `agreement_id` → `dua_reference`.

    One INSERT ... SELECT, so timestamps and JSON are copied as stored on either backend.
    """
    state = " ".join(f"WHEN '{old}' THEN '{new}'" for old, new in _STATES.items())
    bind.execute(
        sa.text(
            "INSERT INTO market_agreements (id, origin, negotiation_id, product_id, "
            "consumer_org, provider_org, datasets, purpose, dua_reference, legal_basis, "
            "terms, document, digest, signatures, state, not_before, not_after, "
            "used_computations, used_rows, used_epsilon, created_at, terminated_at, "
            "ledger_index) "
            "SELECT id, 'contract', NULL, NULL, consumer_org, provider_org, datasets, purpose, "
            "agreement_id, NULL, '{}', NULL, NULL, '{}', "
            f"CASE status {state} ELSE 'terminated' END, not_before, not_after, "
            "0, 0, 0.0, proposed_at, terminated_at, NULL FROM contracts"
        )
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_market_products_search", table_name="market_products")

    op.drop_index(
        op.f("ix_market_product_operators_operator"), table_name="market_product_operators"
    )
    op.drop_table("market_product_operators")
    op.drop_index(op.f("ix_market_offers_product_id"), table_name="market_offers")
    op.drop_table("market_offers")
    op.drop_index(op.f("ix_market_negotiations_state"), table_name="market_negotiations")
    op.drop_index(op.f("ix_market_negotiations_provider_org"), table_name="market_negotiations")
    op.drop_index(op.f("ix_market_negotiations_product_id"), table_name="market_negotiations")
    op.drop_index(op.f("ix_market_negotiations_consumer_org"), table_name="market_negotiations")
    op.drop_table("market_negotiations")
    op.drop_index(op.f("ix_market_meter_records_statement_id"), table_name="market_meter_records")
    op.drop_index(op.f("ix_market_meter_records_provider_org"), table_name="market_meter_records")
    op.drop_index(op.f("ix_market_meter_records_computation_id"), table_name="market_meter_records")
    op.drop_index(op.f("ix_market_meter_records_at"), table_name="market_meter_records")
    op.drop_index(op.f("ix_market_meter_records_agreement_id"), table_name="market_meter_records")
    op.drop_table("market_meter_records")
    op.drop_index(op.f("ix_market_certificates_product_id"), table_name="market_certificates")
    op.drop_index(op.f("ix_market_certificates_holder_org"), table_name="market_certificates")
    op.drop_table("market_certificates")
    op.drop_index(op.f("ix_market_products_state"), table_name="market_products")
    op.drop_index(op.f("ix_market_products_provider_org"), table_name="market_products")
    op.drop_index(op.f("ix_market_products_min_price_fen"), table_name="market_products")
    op.drop_index(op.f("ix_market_products_listed_at"), table_name="market_products")
    op.drop_index(op.f("ix_market_products_grade"), table_name="market_products")
    op.drop_index(op.f("ix_market_products_domain"), table_name="market_products")
    op.drop_table("market_products")
    op.drop_index(op.f("ix_market_party_keys_org_id"), table_name="market_party_keys")
    op.drop_table("market_party_keys")
    op.drop_table("market_parties")
    op.drop_index(op.f("ix_market_disputes_statement_id"), table_name="market_disputes")
    op.drop_table("market_disputes")
    op.drop_index(op.f("ix_market_agreements_state"), table_name="market_agreements")
    op.drop_index(op.f("ix_market_agreements_provider_org"), table_name="market_agreements")
    op.drop_index(op.f("ix_market_agreements_product_id"), table_name="market_agreements")
    op.drop_index(op.f("ix_market_agreements_consumer_org"), table_name="market_agreements")
    op.drop_table("market_agreements")
    op.drop_index(op.f("ix_market_statements_settlement_id"), table_name="market_statements")
    op.drop_index(op.f("ix_market_statements_org_id"), table_name="market_statements")
    op.drop_index(op.f("ix_market_statements_agreement_id"), table_name="market_statements")
    op.drop_table("market_statements")

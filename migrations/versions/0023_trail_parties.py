"""exchange: trail_parties, the ledger entries each organisation's trail lists

Revision ID: 0023
Revises: 0005
Create Date: 2026-12-05 00:30:00

Backfilled here, in the upgrade's transaction: every existing entry is indexed under
the organisation its record names (`subject_org`) and, for a computation's entries,
under the computation's requester and each input's provider, as `Trail.record` indexes
new entries from now on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0005"
branch_labels = None
depends_on = None

BATCH = 1000


def _backfill_rows(conn: sa.Connection) -> Iterator[dict[str, object]]:
    requester = dict(conn.execute(sa.text("SELECT id, requester_org FROM computations")).all())
    providers: dict[str, set[str]] = {}
    for comp, org in conn.execute(
        sa.text("SELECT computation_id, provider_org FROM computation_inputs")
    ):
        providers.setdefault(comp, set()).add(org)
    start = 0
    while True:
        batch = conn.execute(
            sa.text(
                "SELECT idx, leaf FROM ledger_entries WHERE idx >= :start ORDER BY idx LIMIT :n"
            ),
            {"start": start, "n": BATCH},
        ).all()
        if not batch:
            return
        for idx, leaf in batch:
            record = json.loads(bytes(leaf).decode("utf-8"))
            orgs = {record.get("subject_org")}
            if record.get("object_type") == "computation":
                comp = record.get("object_id")
                orgs |= {requester.get(comp), *providers.get(comp, ())}
            for org in sorted(o for o in orgs if isinstance(o, str) and o):
                yield {"org_id": org, "ledger_index": idx}
        start = batch[-1][0] + 1


def upgrade() -> None:
    parties = op.create_table(
        "trail_parties",
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("ledger_index", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "ledger_index", name=op.f("pk_trail_parties")),
    )
    op.create_index(
        "ix_trail_parties_ledger_index", "trail_parties", ["ledger_index"], unique=False
    )
    assert parties is not None
    rows: list[dict[str, object]] = []
    for row in _backfill_rows(op.get_bind()):
        rows.append(row)
        if len(rows) == BATCH:
            op.bulk_insert(parties, rows)
            rows = []
    if rows:
        op.bulk_insert(parties, rows)


def downgrade() -> None:
    op.drop_index("ix_trail_parties_ledger_index", table_name="trail_parties")
    op.drop_table("trail_parties")

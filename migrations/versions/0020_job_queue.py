"""jobs: computation leases; procrastinate's queue schema on PostgreSQL

Revision ID: 0020
Revises: 0005
Create Date: 2026-12-04 23:50:00

On PostgreSQL the job queue is procrastinate's (issue 13). Its schema is applied here, in
a schema of its own (`procrastinate`, reached through the queue connections' search_path)
rather than by `procrastinate schema --apply`: Alembic runs under the platform's start-up
advisory lock (gateway.platform.startup_lock), so N gateways and M workers starting at once
apply it exactly once, and the revision records which procrastinate schema the database
has. procrastinate's own applier is neither idempotent nor versioned; a later procrastinate
upgrade adds a revision that runs its packaged migration files (procrastinate/sql/migrations)
between the pinned versions.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0005"
branch_labels = None
depends_on = None

QUEUE_SCHEMA = "procrastinate"


def _procrastinate_schema() -> str:
    from procrastinate.schema import SchemaManager

    return str(SchemaManager.get_schema())


def upgrade() -> None:
    op.create_table(
        "computation_leases",
        sa.Column("computation_id", sa.String(length=36), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["computation_id"],
            ["computations.id"],
            name=op.f("fk_computation_leases_computation_id_computations"),
        ),
        sa.PrimaryKeyConstraint("computation_id", name=op.f("pk_computation_leases")),
    )
    op.create_index(
        "ix_computation_leases_expires_at", "computation_leases", ["expires_at"], unique=False
    )
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    exists = bind.exec_driver_sql(
        f"SELECT to_regclass('{QUEUE_SCHEMA}.procrastinate_jobs')"
    ).scalar()
    if exists is not None:
        return
    bind.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {QUEUE_SCHEMA}")
    bind.exec_driver_sql(f"SET LOCAL search_path TO {QUEUE_SCHEMA}")
    # Straight to the driver with no parameters, so its RAISE formats keep their `%`
    # (SQLAlchemy would pass an empty parameter list and psycopg would parse them).
    cursor = bind.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(_procrastinate_schema())
    finally:
        cursor.close()
    bind.exec_driver_sql("SET LOCAL search_path TO DEFAULT")


def downgrade() -> None:
    op.drop_index("ix_computation_leases_expires_at", table_name="computation_leases")
    op.drop_table("computation_leases")
    if op.get_bind().dialect.name == "postgresql":
        op.get_bind().exec_driver_sql(f"DROP SCHEMA IF EXISTS {QUEUE_SCHEMA} CASCADE")

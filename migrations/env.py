"""Alembic environment: one metadata per package, online migrations only."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from gateway.platform import SCHEMA

target_metadata = list(SCHEMA)
config = context.config


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()

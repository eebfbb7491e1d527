"""Alembic migration history of every pdx table (one history for all packages)."""

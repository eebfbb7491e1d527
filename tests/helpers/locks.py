"""Holding a transaction open until another thread waits on it."""

from __future__ import annotations

import threading
import time

from sqlalchemy import text
from sqlalchemy.orm import Session


def wait_until_blocked(session: Session, other: threading.Thread) -> None:
    """Until `other` waits on a lock this transaction holds (PostgreSQL), or a moment
    (SQLite, whose single writer blocks `other` before it reads anything)."""
    if session.get_bind().dialect.name != "postgresql":
        time.sleep(0.3)
        return
    deadline = time.monotonic() + 30
    while other.is_alive() and time.monotonic() < deadline:
        if session.scalar(text("SELECT count(*) FROM pg_locks WHERE NOT granted")):
            return
        time.sleep(0.02)

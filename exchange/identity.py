"""Identity of the store: one random id shared by the database and `$PDX_HOME`, checked at start.

A platform's state lives in two places: the database (rows, wrapped keys, the ledger)
and `$PDX_HOME` (encrypted objects, the root key file). Each records the same store
identity at initialisation; start-up compares them and refuses a pair that does not
belong together (a deleted or replaced database beside a home full of objects, or an
empty home beside a populated database) instead of seeding a new platform over it.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Connection, Integer, String, inspect, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from exchange.errors import StoreMismatch
from exchange.models import ExchangeBase

IDENTITY_FILE = "store.json"


class StoreIdentityRow(ExchangeBase):
    """The single row (id 1) naming the store this database belongs to."""

    __tablename__ = "store_identity"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    store_id: Mapped[str] = mapped_column(String(36))
    ledger_origin: Mapped[str] = mapped_column(String(200))
    ledger_key_fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]


@dataclass(frozen=True)
class StoreIdentity:
    store_id: str
    ledger_origin: str
    ledger_key_fingerprint: str

    def to_json(self) -> str:
        return json.dumps(
            {
                "store_id": self.store_id,
                "ledger_origin": self.ledger_origin,
                "ledger_key_fingerprint": self.ledger_key_fingerprint,
            },
            indent=2,
        )


def key_fingerprint(verifier_key: str) -> str:
    """SHA-256 (hex) of the ledger's signed-note verifier key."""
    return hashlib.sha256(verifier_key.encode()).hexdigest()


def read_file(home: Path) -> StoreIdentity | None:
    path = home / IDENTITY_FILE
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StoreMismatch(f"{path} is unreadable ({exc}); restore it from a backup") from None
    try:
        return StoreIdentity(
            str(doc["store_id"]), str(doc["ledger_origin"]), str(doc["ledger_key_fingerprint"])
        )
    except (KeyError, TypeError):
        raise StoreMismatch(f"{path} is not a store identity file") from None


def write_file(home: Path, identity: StoreIdentity) -> None:
    """Write `$PDX_HOME/store.json` atomically (temporary file, fsync, rename)."""
    path = home / IDENTITY_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(identity.to_json())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_row(session: Session) -> StoreIdentity | None:
    row = session.get(StoreIdentityRow, 1)
    if row is None:
        return None
    return StoreIdentity(row.store_id, row.ledger_origin, row.ledger_key_fingerprint)


def write_row(session: Session, identity: StoreIdentity, *, now: datetime) -> None:
    session.add(
        StoreIdentityRow(
            id=1,
            store_id=identity.store_id,
            ledger_origin=identity.ledger_origin,
            ledger_key_fingerprint=identity.ledger_key_fingerprint,
            created_at=now,
        )
    )


@dataclass(frozen=True)
class DatabaseState:
    """What a read-only look at the database found (before any migration)."""

    identity: StoreIdentity | None
    migrated: bool
    """The identity table exists (the schema is at least at this feature's revision)."""
    blank: bool
    """No ledger entry: nothing was ever recorded in this database."""


def database_state(conn: Connection) -> DatabaseState:
    """Inspect without writing: identity row, whether migrated, whether anything happened."""
    tables = set(inspect(conn).get_table_names())
    identity = None
    if StoreIdentityRow.__tablename__ in tables:
        with Session(bind=conn) as session:
            identity = read_row(session)
    blank = True
    if "ledger_entries" in tables:
        blank = conn.execute(text("SELECT 1 FROM ledger_entries LIMIT 1")).first() is None
    return DatabaseState(identity, migrated=StoreIdentityRow.__tablename__ in tables, blank=blank)


class Start(enum.Enum):
    """How start-up proceeds once home and database were compared."""

    FRESH = "fresh"  # empty home, empty database: create a new store
    MATCH = "match"  # both name the same store
    RESUME = "resume"  # a first start stopped between writing the file and the row
    ADOPT = "adopt"  # a store from before identities: record one on both sides


def compare(
    *,
    home: Path,
    file: StoreIdentity | None,
    db: DatabaseState,
    home_has_objects: bool,
    ledger_origin: str,
) -> Start:
    """Decide how to start, or raise `StoreMismatch` naming what does not belong together.

    Read-only: called before migrations, so a refusal leaves the database untouched.
    """
    if file is not None and file.ledger_origin != ledger_origin:
        raise StoreMismatch(
            f"{home} belongs to ledger origin {file.ledger_origin!r} but PDX_LEDGER_ORIGIN "
            f"is {ledger_origin!r}; refusing to start"
        )
    if db.identity is not None and file is not None:
        if db.identity.store_id != file.store_id:
            raise StoreMismatch(
                f"the database belongs to store {db.identity.store_id} but {home} to store "
                f"{file.store_id}: the database or PDX_HOME was replaced; refusing to start"
            )
        return Start.MATCH
    if db.identity is not None:
        raise StoreMismatch(
            f"the database belongs to store {db.identity.store_id} but {home} has no "
            f"{IDENTITY_FILE}: PDX_HOME was replaced or emptied; refusing to start"
        )
    if file is not None:
        if db.migrated and db.blank and not home_has_objects:
            return Start.RESUME  # checked further once the keys are readable
        raise StoreMismatch(
            f"{home} belongs to store {file.store_id} but the database has no store "
            "identity: the database was deleted or replaced; refusing to re-seed over it"
        )
    if db.blank and home_has_objects:
        raise StoreMismatch(
            f"{home} holds dataset objects but the database is empty: the database was "
            "deleted or replaced; refusing to re-seed over it"
        )
    return Start.FRESH if db.blank else Start.ADOPT


def new_identity(*, ledger_origin: str, fingerprint: str) -> StoreIdentity:
    return StoreIdentity(str(uuid.uuid4()), ledger_origin, fingerprint)

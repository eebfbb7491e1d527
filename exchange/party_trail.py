"""A party's own trail: the ledger entries that name an organisation, with inclusion proofs.

Providers and enterprises check what the platform recorded about them against the public
checkpoint (issue 15). An entry concerns the organisation that performed it (the record's
`subject_org`) and, for a computation, its requester and every input's provider. Each
such (organisation, ledger index) pair is a row of `trail_parties`, written by
`Trail.record` in the transaction that appends the entry (migration 0023 backfilled the
entries before it), so a party's listing is a keyed query with a real total. Which
organisation a caller may read is the policy's decision (`ledger.read`, scope `party`);
this module only finds and proves.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, String, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from exchange.errors import InvalidInput
from exchange.models import ExchangeBase
from ledger import Ledger
from ledger.log import StoredEntry
from ledger.records import decode_leaf

__all__ = [
    "PartyEntry",
    "PartyPage",
    "TrailParty",
    "decode_cursor",
    "encode_cursor",
    "entry_parties",
    "index_parties",
    "indexed_parties",
    "party_entries",
    "party_entry",
]


class TrailParty(ExchangeBase):
    """One ledger entry that concerns one organisation (the party index of the trail)."""

    __tablename__ = "trail_parties"

    org_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    ledger_index: Mapped[int] = mapped_column(BigInteger, primary_key=True, index=True)


def index_parties(session: Session, index: int, parties: set[str]) -> None:
    """Index ledger entry `index` under each organisation in `parties` (same transaction)."""
    session.add_all(TrailParty(org_id=org, ledger_index=index) for org in sorted(parties))
    session.flush()


@dataclass(frozen=True)
class PartyEntry:
    """One entry as its party sees it: the exact leaf, its record, and a proof if sealed."""

    index: int
    leaf: bytes
    record: dict[str, Any]
    tree_size: int | None
    proof: list[bytes] | None


@dataclass(frozen=True)
class PartyPage:
    items: list[PartyEntry]
    next_start: int | None
    tree_size: int
    total: int


def entry_parties(record: dict[str, Any]) -> list[str]:
    """The organisation that performed an entry's operation (the record names it)."""
    org = record.get("subject_org")
    return [org] if isinstance(org, str) and org else []


def indexed_parties(session: Session, index: int) -> list[str]:
    """Every organisation entry `index` concerns, from the party index."""
    rows = session.scalars(
        select(TrailParty.org_id)
        .where(TrailParty.ledger_index == index)
        .order_by(TrailParty.org_id)
    )
    return list(rows)


def encode_cursor(start: int) -> str:
    """An opaque cursor for the next page (the next index to scan, base64url)."""
    return base64.urlsafe_b64encode(f"i{start}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        if not text.startswith("i") or not text[1:].isdigit():
            raise ValueError(text)
        return int(text[1:])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput("cursor is not one this server issued", field="cursor") from None


def _proved(
    ledger: Ledger, session: Session, stored: StoredEntry, record: dict[str, Any], sealed: int
) -> PartyEntry:
    if stored.index >= sealed:  # not in a checkpoint yet: no proof to give
        return PartyEntry(stored.index, stored.leaf, record, None, None)
    proof = ledger.inclusion_proof(session, stored.index, sealed)
    return PartyEntry(stored.index, stored.leaf, record, sealed, proof)


def party_entries(
    ledger: Ledger, session: Session, org_id: str, *, start: int, limit: int
) -> PartyPage:
    """Entries concerning `org_id` from index `start`, each proved against the newest seal."""
    sealed = ledger.sealed_size(session)
    mine = select(TrailParty.ledger_index).where(TrailParty.org_id == org_id)
    total = session.scalar(select(func.count()).select_from(mine.subquery())) or 0
    indexes = list(
        session.scalars(
            mine.where(TrailParty.ledger_index >= start)
            .order_by(TrailParty.ledger_index)
            .limit(limit + 1)
        )
    )
    found = []
    for index in indexes[:limit]:
        stored = ledger.entry(session, index)
        found.append(_proved(ledger, session, stored, decode_leaf(stored.leaf), sealed))
    more = len(indexes) > limit
    return PartyPage(found, indexes[limit] if more else None, sealed, total)


def party_entry(
    ledger: Ledger, session: Session, index: int, *, tree_size: int | None = None
) -> PartyEntry:
    """One entry with its inclusion proof in the tree of `tree_size` (default: newest)."""
    stored = ledger.entry(session, index)
    record = decode_leaf(stored.leaf)
    size = ledger.sealed_size(session) if tree_size is None else tree_size
    if index >= size:
        return PartyEntry(stored.index, stored.leaf, record, None, None)
    return PartyEntry(
        stored.index, stored.leaf, record, size, ledger.inclusion_proof(session, index, size)
    )

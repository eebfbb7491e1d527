"""A party's own trail: the ledger entries that name an organisation, with inclusion proofs.

Providers and enterprises check what the platform recorded about them against the public
checkpoint (issue 15). An entry names an organisation through its `subject_org` (the
organisation whose client or person performed the operation). Which organisation a
caller may read is the policy's decision (`ledger.read`, scope `party`); this module
only finds and proves.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from exchange.errors import InvalidInput
from ledger import Ledger
from ledger.log import MAX_PAGE, StoredEntry
from ledger.records import decode_leaf

__all__ = [
    "PartyEntry",
    "PartyPage",
    "decode_cursor",
    "encode_cursor",
    "entry_parties",
    "party_entries",
    "party_entry",
]

# At most this many ledger entries are read to fill one page. The log has no index by
# organisation yet, so a page is found by scanning forward; a party with few entries in
# a long log gets short (even empty) pages with a `next` cursor instead of one slow
# request. An index table written by `Trail.record` would make this a lookup.
SCAN_WINDOW = 20 * MAX_PAGE


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


def entry_parties(record: dict[str, Any]) -> list[str]:
    """The organisations an entry names (today: the acting organisation)."""
    org = record.get("subject_org")
    return [org] if isinstance(org, str) and org else []


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
    """Entries naming `org_id` from index `start`, each proved against the newest seal."""
    sealed = ledger.sealed_size(session)
    found: list[PartyEntry] = []
    position = start
    scanned = 0
    while len(found) < limit and scanned < SCAN_WINDOW:
        batch = ledger.entries(session, start=position, limit=MAX_PAGE)
        if not batch:
            return PartyPage(found, None, sealed)
        for stored in batch:
            position = stored.index + 1
            scanned += 1
            record = decode_leaf(stored.leaf)
            if org_id in entry_parties(record):
                found.append(_proved(ledger, session, stored, record, sealed))
                if len(found) == limit:
                    break
    more = bool(ledger.entries(session, start=position, limit=1))
    return PartyPage(found, position if more else None, sealed)


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

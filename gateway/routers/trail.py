"""/v1/trail: a party reads the ledger entries naming its organisation, with proofs.

The policy decides on `ledger.read` with the entry's parties (scope `party`): providers
and enterprises read their own organisation's entries, auditors any. The checkpoint and
its verifier key are public (`/v1/ledger/checkpoint`, `/v1/ledger/verifier-key`), so a
party checks what it reads against a checkpoint it remembers (`pdx trail verify`).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

import exchange
from exchange import party_trail
from gateway.pep import Enforce, Target
from gateway.platform import Platform
from gateway.routers.ledger import b64, consistency_hashes
from gateway.security import CallerDep, PlatformDep
from ledger.log import MAX_PAGE
from ledger.records import decode_leaf

router = APIRouter(prefix="/v1/trail", tags=["trail"])

MAX_INDEX = 2**53


def _org(request: Request, caller: exchange.Caller) -> str:
    return request.query_params.get("org") or caller.org_id


def _listed_party(
    request: Request, caller: exchange.Caller, platform: Platform, session: Session
) -> list[Target]:
    # The organisation whose entries are listed is the resource's one party: asking for
    # another organisation's is refused by the policy unless the caller may read any.
    return [Target({"type": "ledger.entry", "parties": [_org(request, caller)]})]


def _entry_parties(
    request: Request, caller: exchange.Caller, platform: Platform, session: Session
) -> list[Target]:
    raw = str(request.path_params["index"])
    # The enforcement point runs before FastAPI validates the path: refuse here what the
    # route's own validation would (an index is a decimal integer 0..MAX_INDEX).
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 16 or int(raw) > MAX_INDEX:
        raise exchange.errors.InvalidInput(
            f"index must be an integer from 0 to {MAX_INDEX}", field="index"
        )
    index = int(raw)
    stored = platform.ledger.entry(session, index)
    parties = _parties(session, index, decode_leaf(stored.leaf))
    return [Target({"type": "ledger.entry", "id": str(index), "parties": parties})]


ListOwn = Enforce("ledger.read", resources=_listed_party)
ReadOwn = Enforce("ledger.read", resources=_entry_parties)
# Consistency proofs are hashes of the tree's structure, the same public material as the
# checkpoint and its key (RFC 9162 §4.4 serves them to anyone): any signed-in party may ask.
ReadTree = Enforce("ledger.verifier_key")


class InclusionProofPublic(BaseModel):
    tree_size: int
    hashes: list[str] = Field(description="base64, RFC 9162 §2.1.3 order")


class TrailEntryPublic(BaseModel):
    index: int
    leaf: str = Field(description="base64 of the exact leaf bytes")
    record: dict[str, Any]
    parties: list[str]
    inclusion: InclusionProofPublic | None = Field(
        description="proof against the newest checkpoint; null until the entry is sealed"
    )


class TrailPage(BaseModel):
    items: list[TrailEntryPublic]
    total: int = Field(description="entries concerning the organisation, in every page")
    next: str | None
    tree_size: int


class ConsistencyPublic(BaseModel):
    first: int
    second: int
    hashes: list[str] = Field(description="base64, RFC 9162 §2.1.4 order")


def _parties(session: Session, index: int, record: dict[str, Any]) -> list[str]:
    """The acting organisation and every other one the entry is indexed under."""
    named = party_trail.entry_parties(record)
    return sorted({*named, *party_trail.indexed_parties(session, index)})


def _public(entry: party_trail.PartyEntry, parties: list[str]) -> TrailEntryPublic:
    proof = (
        InclusionProofPublic(tree_size=entry.tree_size, hashes=[b64(h) for h in entry.proof])
        if entry.tree_size is not None and entry.proof is not None
        else None
    )
    return TrailEntryPublic(
        index=entry.index,
        leaf=b64(entry.leaf),
        record=entry.record,
        parties=parties,
        inclusion=proof,
    )


@router.get("/entries", dependencies=[Depends(ListOwn)])
def list_entries(
    request: Request,
    caller: CallerDep,
    platform: PlatformDep,
    org: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> TrailPage:
    """Entries concerning the caller's organisation (or `org`, for auditors), oldest first."""
    party = org or caller.org_id
    start = party_trail.decode_cursor(cursor)
    with platform.session() as session:
        page = party_trail.party_entries(platform.ledger, session, party, start=start, limit=limit)
        items = [_public(e, _parties(session, e.index, e.record)) for e in page.items]
    nxt = None
    if page.next_start is not None:
        query = {"limit": limit, "cursor": party_trail.encode_cursor(page.next_start)}
        if org:
            query["org"] = org
        nxt = f"/v1/trail/entries?{urlencode(query)}"
    return TrailPage(items=items, total=page.total, next=nxt, tree_size=page.tree_size)


@router.get("/entries/{index}", dependencies=[Depends(ReadOwn)])
def get_entry(
    caller: CallerDep,
    platform: PlatformDep,
    index: Annotated[int, Path(ge=0, le=MAX_INDEX)],
    tree_size: Annotated[int | None, Query(ge=1, le=MAX_INDEX)] = None,
) -> TrailEntryPublic:
    """One entry naming the caller's organisation, proved in the tree of `tree_size`."""
    with platform.session() as session:
        entry = party_trail.party_entry(platform.ledger, session, index, tree_size=tree_size)
        return _public(entry, _parties(session, index, entry.record))


@router.get("/consistency", dependencies=[Depends(ReadTree)])
def consistency(
    caller: CallerDep,
    platform: PlatformDep,
    first: Annotated[int, Query(ge=0, le=MAX_INDEX)],
    second: Annotated[int, Query(ge=0, le=MAX_INDEX)],
) -> ConsistencyPublic:
    """RFC 9162 §2.1.4 proof that the tree of `first` entries is a prefix of `second`."""
    hashes = consistency_hashes(platform, first, second)
    return ConsistencyPublic(first=first, second=second, hashes=hashes)

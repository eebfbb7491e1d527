"""/v1/ledger: the auditor's view of the verifiable log (checkpoints, entries, proofs).

Bytes travel as standard base64; proofs use RFC 9162 hash order; the checkpoint is
a C2SP signed note, checkable with the key from `/v1/ledger/verifier-key` alone.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from exchange.backup import record_published
from exchange.paging import Key, Slice
from gateway.pagination import Page, Paging, invalid_cursor, pager
from gateway.pep import Enforce
from gateway.platform import Platform
from gateway.security import CallerDep, PlatformDep
from ledger.log import MAX_PAGE, SealedBlock, StoredEntry
from ledger.publish import published_checkpoint
from ledger.records import decode_leaf

router = APIRouter(prefix="/v1/ledger", tags=["ledger"])
# No token (gateway.app.PUBLIC_PATHS): the checkpoint is signed and its cosignatures are
# the witnesses'; publishing it to anyone is what makes a split view detectable.
public = APIRouter(prefix="/v1/ledger", tags=["ledger"])

ReadLedger = Enforce("ledger.read", target={"type": "ledger.entry"})
ReadVerifierKey = Enforce("ledger.verifier_key")

NOTE_TEXT = "text/plain; charset=utf-8"
# One more than a page is read to know whether another follows: below the log's MAX_PAGE.
T = TypeVar("T")
U = TypeVar("U")

LedgerPagingDep = Annotated[Paging, Depends(pager(default=100, maximum=MAX_PAGE // 2))]


class Entry(BaseModel):
    index: int
    leaf: str
    record: dict[str, Any]


class InclusionProof(BaseModel):
    index: int
    tree_size: int
    hashes: list[str]


class ConsistencyProof(BaseModel):
    first: int
    second: int
    hashes: list[str]


class BlockOut(BaseModel):
    height: int
    prev_block_hash: str
    first_index: int
    tree_size: int
    root: str
    time: str
    signer_key_id: str
    signature: str
    checkpoint: str


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def consistency_hashes(platform: Platform, first: int, second: int) -> list[str]:
    """RFC 9162 §2.1.4: the proof that the tree of `first` entries is a prefix of `second`."""
    with platform.session() as session:
        return [b64(h) for h in platform.ledger.consistency_proof(session, first, second)]


def _entry(stored: StoredEntry) -> Entry:
    return Entry(index=stored.index, leaf=b64(stored.leaf), record=decode_leaf(stored.leaf))


def _block(sealed: SealedBlock) -> BlockOut:
    return BlockOut(**sealed.block.to_json(), checkpoint=sealed.checkpoint)


# Indexes, sizes and heights: never negative, and far below int64 so that `start + page`
# cannot overflow a database integer (2^53: also exact in every JSON reader).
MAX_INDEX = 2**53
Index = Annotated[int, Query(ge=0, le=MAX_INDEX)]
OptionalIndex = Annotated[int | None, Query(ge=0, le=MAX_INDEX)]
PathIndex = Annotated[int, Path(ge=0, le=MAX_INDEX)]


@public.get("/verifier-key", response_class=PlainTextResponse)
def verifier_key(platform: PlatformDep) -> PlainTextResponse:
    """The log's public key as a signed-note verifier key (`origin+hash+base64`)."""
    with platform.session() as session:
        signer = platform.ledger_signer(session)
    return PlainTextResponse(signer.verifier_key() + "\n", media_type=NOTE_TEXT)


@public.get("/checkpoint", response_class=PlainTextResponse)
def checkpoint(platform: PlatformDep) -> PlainTextResponse:
    """The newest checkpoint, a C2SP signed note with the witnesses' cosignature lines."""
    with platform.session() as session:
        size, note = published_checkpoint(platform.ledger, session)
    # A served checkpoint is published: a restore must never go below it (issue 13).
    record_published(platform.settings.published_path, size)
    return PlainTextResponse(note, media_type=NOTE_TEXT)


def _count(
    platform: Platform,
    session: Session,
    start: int,
    end: int | None,
    type: str | None,
    object_id: str | None,
) -> int:
    """How many entries in [start, end) match: arithmetic unfiltered, else counted in pages."""
    size = platform.ledger.size(session)
    stop = size if end is None else min(end, size)
    if type is None and object_id is None:
        return max(0, stop - start)
    total, at = 0, start
    while at < stop:
        found = platform.ledger.entries(
            session, start=at, end=stop, type=type, object_id=object_id, limit=MAX_PAGE
        )
        total += len(found)
        if len(found) < MAX_PAGE:
            break
        at = found[-1].index + 1
    return total


@router.get("/entries", response_model_exclude_none=False, dependencies=[Depends(ReadLedger)])
def entries(
    caller: CallerDep,
    platform: PlatformDep,
    paging: LedgerPagingDep,
    start: Index = 0,
    end: OptionalIndex = None,
    type: Annotated[str | None, Query(max_length=64)] = None,
    object_id: Annotated[str | None, Query(max_length=128)] = None,
) -> Page[Entry]:
    """Entries with start <= index < end (sealed or not), optionally filtered, by index."""
    after, limit = _after(start, paging), paging.window.limit
    with platform.session() as session:
        found = platform.ledger.entries(
            session, start=after, end=end, type=type, object_id=object_id, limit=limit + 1
        )
        total = _count(platform, session, start, end, type, object_id)
    return _page(paging, found, lambda e: e.index, total, _entry)


def _after(start: int, paging: Paging) -> int:
    """The first index (or height) of the page: `start`, or the one after the cursor's."""
    key = paging.window.after
    if key is None:
        return start
    if len(key) != 1 or not isinstance(key[0], int) or isinstance(key[0], bool):
        raise invalid_cursor()
    return max(start, key[0] + 1)


def _page(
    paging: Paging, found: list[T], position: Callable[[T], int], total: int, out: Callable[[T], U]
) -> Page[U]:
    """A page of what was read (one more than the page, to know whether there is a next)."""
    limit = paging.window.limit
    last: Key | None = (position(found[limit - 1]),) if len(found) > limit else None
    return paging.page(Slice(items=[out(x) for x in found[:limit]], total=total, last=last))


@router.get("/entries/{index}", dependencies=[Depends(ReadLedger)])
async def entry(index: PathIndex, caller: CallerDep, platform: PlatformDep) -> Entry:
    """One entry, by index.

    Committed entries never change: a remembered one is served on the event loop,
    without a thread hop or a database read.
    """
    stored = platform.ledger.committed_entry(index)
    if stored is None:
        stored = await run_in_threadpool(_read_committed, platform, index)
    return _entry(stored)


def _read_committed(platform: Platform, index: int) -> StoredEntry:
    with platform.session() as session:  # a fresh, read-only session: it sees commits only
        return platform.ledger.read_committed(session, index)


@router.get("/proof/inclusion", dependencies=[Depends(ReadLedger)])
def inclusion(
    caller: CallerDep, platform: PlatformDep, index: Index, tree_size: Index
) -> InclusionProof:
    """RFC 9162 §2.1.3 inclusion proof of entry `index` in the tree of `tree_size`."""
    with platform.session() as session:
        hashes = platform.ledger.inclusion_proof(session, index, tree_size)
    return InclusionProof(index=index, tree_size=tree_size, hashes=[b64(h) for h in hashes])


@router.get("/proof/consistency", dependencies=[Depends(ReadLedger)])
def consistency(
    caller: CallerDep, platform: PlatformDep, first: Index, second: Index
) -> ConsistencyProof:
    """RFC 9162 §2.1.4 proof that the tree of `first` entries is a prefix of `second`."""
    hashes = consistency_hashes(platform, first, second)
    return ConsistencyProof(first=first, second=second, hashes=hashes)


@router.get("/blocks", dependencies=[Depends(ReadLedger)])
def blocks(
    caller: CallerDep,
    platform: PlatformDep,
    paging: LedgerPagingDep,
    start: Index = 0,
    end: OptionalIndex = None,
) -> Page[BlockOut]:
    """Blocks with start <= height < end, by height."""
    after, limit = _after(start, paging), paging.window.limit
    with platform.session() as session:
        latest = platform.ledger.latest(session)
        height = latest.block.height + 1 if latest is not None else 0
        stop = height if end is None else min(end, height)
        found = platform.ledger.blocks(session, after, min(stop, after + limit + 1))
    return _page(paging, found, lambda b: b.block.height, max(0, stop - start), _block)


@router.get("/blocks/{height}", dependencies=[Depends(ReadLedger)])
def block(height: PathIndex, caller: CallerDep, platform: PlatformDep) -> BlockOut:
    with platform.session() as session:
        return _block(platform.ledger.block(session, height))

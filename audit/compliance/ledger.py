"""Ledger checks: records equal entries, checkpoint consistency, sampled inclusion proofs."""

from __future__ import annotations

import base64
import random
from typing import Any

from sqlalchemy import and_, func, or_, select

from audit.catalogue import Event
from audit.compliance.base import Check, CheckContext, Finding, fail, na, ok, verdict
from audit.models import AuditRecord
from ledger import decode_leaf
from ledger.errors import ProofError
from ledger.merkle import verify_consistency, verify_inclusion
from ledger.models import LedgerEntry


def _start(c: CheckContext) -> int:
    """The period: entries since the previous run's checkpoint (all on a first run)."""
    prev = c.previous
    return int(prev["ledger"]["tree_size"]) if prev else 0


def _aud02(c: CheckContext) -> Finding:
    start = _start(c)
    orphans = c.session.scalars(
        select(LedgerEntry.idx)
        .where(
            LedgerEntry.idx >= start,
            ~LedgerEntry.idx.in_(
                select(AuditRecord.ledger_index).where(AuditRecord.ledger_index.is_not(None))
            ),
        )
        .order_by(LedgerEntry.idx)
        .limit(50)
    ).all()
    return verdict("AUD-02", list(orphans), from_index=start)


def _aud03(c: CheckContext) -> Finding:
    start = _start(c)
    s = c.session
    missing = s.scalars(
        select(AuditRecord.ledger_index)
        .where(
            AuditRecord.ledger_index >= start,
            ~AuditRecord.ledger_index.in_(select(LedgerEntry.idx).where(LedgerEntry.idx >= start)),
        )
        .order_by(AuditRecord.ledger_index)
        .limit(50)
    ).all()
    mismatched = s.scalars(
        select(AuditRecord.ledger_index)
        .join(LedgerEntry, LedgerEntry.idx == AuditRecord.ledger_index)
        .where(
            AuditRecord.ledger_index >= start,
            or_(
                LedgerEntry.type != AuditRecord.event_type,
                and_(AuditRecord.object_id.is_not(None), LedgerEntry.object_id.is_(None)),
                LedgerEntry.object_id != AuditRecord.object_id,
            ),
        )
        .limit(50)
    ).all()
    records = s.scalar(
        select(func.count()).select_from(AuditRecord).where(AuditRecord.ledger_index >= start)
    )
    entries = s.scalar(
        select(func.count()).select_from(LedgerEntry).where(LedgerEntry.idx >= start)
    )
    ev: dict[str, Any] = {"from_index": start, "records_with_index": records, "entries": entries}
    if missing:
        return fail(
            "AUD-03",
            f"{len(missing)} audit records point at missing ledger entries",
            missing_indexes=list(missing),
            **ev,
        )
    if mismatched:
        return fail(
            "AUD-03",
            f"{len(mismatched)} records disagree with their entries",
            mismatched_indexes=list(mismatched),
            **ev,
        )
    return ok("AUD-03", "audit records and ledger entries agree for the period", **ev)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _checkpoint(c: CheckContext) -> tuple[int, bytes] | None:
    latest = c.ledger.latest(c.session)
    if latest is None:
        return None
    return int(latest.block.tree_size), bytes(latest.block.root)


def _aud04(c: CheckContext) -> Finding:
    cp = c.memo("checkpoint", lambda: _checkpoint(c))
    if cp is None:
        return fail("AUD-04", "the ledger has no checkpoint")
    size, root = cp
    ev: dict[str, Any] = {"tree_size": size, "root": _b64(root)}
    prev = c.previous
    if prev:
        first = int(prev["ledger"]["tree_size"])
        first_root = base64.b64decode(prev["ledger"]["root"])
        ev["previous_tree_size"] = first
        try:
            proof = c.ledger.consistency_proof(c.session, first, size)
            verify_consistency(c.ledger.hasher, first, size, first_root, root, proof)
        except (ProofError, ValueError) as exc:
            return fail("AUD-04", f"not consistent with the previous run's checkpoint: {exc}", **ev)
    bad = c.memo("inclusion", lambda: _inclusion(c, size, root))
    ev["sampled"] = c.memo("sampled", list)
    if bad:
        return fail("AUD-04", f"{len(bad)} sampled inclusion proofs fail", offenders=bad, **ev)
    return ok("AUD-04", "checkpoint consistent with the previous run; sampled proofs verify", **ev)


def _inclusion(c: CheckContext, size: int, root: bytes) -> list[str]:
    if size == 0:
        return []
    rng = random.Random(int(c.now.timestamp()))
    indexes = sorted({rng.randrange(size) for _ in range(min(c.sample, size))} | {size - 1})
    sampled: list[int] = c.memo("sampled", list)
    bad = []
    for index in indexes:
        found = c.ledger.entries(c.session, start=index, end=index + 1, limit=1)
        if not found:
            continue  # a missing entry is AUD-03's finding
        sampled.append(index)
        try:
            proof = c.ledger.inclusion_proof(c.session, index, size)
            verify_inclusion(
                c.ledger.hasher, index, size, c.ledger.hasher.leaf(found[0].leaf), proof, root
            )
        except (ProofError, ValueError) as exc:
            bad.append(f"{index}: {exc}")
    return bad


def _pce05(c: CheckContext) -> Finding:
    cp = c.memo("checkpoint", lambda: _checkpoint(c))
    if cp is None:
        return fail("PCE-05", "the ledger has no checkpoint")
    bad = c.memo("inclusion", lambda: _inclusion(c, *cp))
    sampled = c.memo("sampled", list)
    undated = []
    for index in sampled[:8]:
        leaf = c.ledger.entries(c.session, start=index, end=index + 1, limit=1)[0].leaf
        if not decode_leaf(leaf).get("ts"):
            undated.append(index)
    if bad or undated:
        return fail("PCE-05", "sampled entries do not verify", offenders=bad + undated)
    return ok(
        "PCE-05",
        "sampled entries are timestamped and verify against the checkpoint",
        sampled=sampled,
    )


def _dsl03(c: CheckContext) -> Finding:
    comps = c.computations()
    if not comps:
        return na("DSL-03", "no computations yet")
    bad = [x.id for x in comps if x.transitions_with_ledger < x.transitions]
    return verdict("DSL-03", bad, computations=len(comps))


def _pce07(c: CheckContext) -> Finding:
    released = c.ledger.entries(c.session, type=Event.COMPUTATION_RELEASED, limit=50)
    if not released:
        return na("PCE-07", "no result has been released yet")
    plain = [
        e.index
        for e in released
        if not str(decode_leaf(e.leaf).get("payload_digest") or "").startswith("commit")
    ]
    return verdict("PCE-07", plain)


CHECKS: dict[str, Check] = {
    "AUD-02": _aud02,
    "AUD-03": _aud03,
    "AUD-04": _aud04,
    "PCE-05": _pce05,
    "DSL-03": _dsl03,
    "PCE-07": _pce07,
}

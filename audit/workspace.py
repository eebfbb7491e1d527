"""The auditors' workspace: filtered, paged audit records and decision logs, masks, sink.

Pages use an opaque keyset cursor over (ts, id), so a page never shifts when records
are added. Decision logs are returned in OPA's decision-log shape, with sensitive input
fields removed by JSON-pointer masks as OPA's `system.log.mask` does. The HTTP sink is a
cursor over the database (the durable log): a failed push leaves the cursor where it
was, so an outage delays delivery and loses nothing.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from audit.compliance.models import SinkCursor
from audit.decisions import DecisionLog
from audit.models import AuditRecord
from crypto.periodic import Periodic
from crypto.rfc3339 import rfc3339

log = logging.getLogger("pdx.audit.workspace")
MAX_LIMIT = 1000


class BadCursor(ValueError):
    """The page cursor is not one this server issued."""


@dataclass(frozen=True)
class RecordFilter:
    """Filters shared by records and decisions (each applies where the table has it)."""

    since: datetime | None = None
    until: datetime | None = None
    subject: str | None = None
    event_type: str | None = None
    action: str | None = None
    result: str | None = None
    object_id: str | None = None


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    total: int
    next_cursor: str | None


def encode_cursor(ts: datetime, key: str) -> str:
    raw = json.dumps([ts.astimezone(UTC).isoformat(), key]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        ts, key = json.loads(raw)
        return datetime.fromisoformat(ts), str(key)
    except (ValueError, TypeError) as exc:
        raise BadCursor("the cursor is not valid") from exc


def record_json(r: AuditRecord) -> dict[str, Any]:
    return {
        "id": r.id,
        "ts": rfc3339(r.ts),
        "subject_id": r.subject_id,
        "subject_org": r.subject_org,
        "subject_ip": r.subject_ip,
        "object_id": r.object_id,
        "action": r.action,
        "result": r.result,
        "event_type": r.event_type,
        "purpose": r.purpose,
        "data_level": r.data_level,
        "request_id": r.request_id,
        "decision_id": r.decision_id,
        "detail": r.detail,
        "ledger_index": r.ledger_index,
    }


def _time_and_subject(
    f: RecordFilter, ts: InstrumentedAttribute[datetime], subject: InstrumentedAttribute[str | None]
) -> list[ColumnElement[bool]]:
    """The filters audit records and decision logs share: since <= ts < until, subject."""
    conds: list[ColumnElement[bool]] = []
    if f.since is not None:
        conds.append(ts >= f.since)
    if f.until is not None:
        conds.append(ts < f.until)
    if f.subject is not None:
        conds.append(subject == f.subject)
    return conds


_Row = TypeVar("_Row", AuditRecord, DecisionLog)


def _oldest_first(
    session: Session,
    entity: type[_Row],
    ts: InstrumentedAttribute[datetime],
    key: InstrumentedAttribute[str],
    conds: Sequence[ColumnElement[bool]],
    *,
    limit: int,
    cursor: str | None,
) -> tuple[list[_Row], int, bool]:
    """One keyset page of `entity` by (ts, key) after `cursor`: rows, total, whether more."""
    where = and_(True, *conds)
    total = session.scalar(select(func.count()).select_from(entity).where(where)) or 0
    query = select(entity).where(where)
    if cursor is not None:
        after_ts, after_key = decode_cursor(cursor)
        query = query.where(or_(ts > after_ts, and_(ts == after_ts, key > after_key)))
    limit = max(1, min(limit, MAX_LIMIT))
    rows = session.scalars(query.order_by(ts, key).limit(limit + 1)).all()
    return list(rows[:limit]), total, len(rows) > limit


def list_records(session: Session, f: RecordFilter, *, limit: int, cursor: str | None) -> Page:
    """Audit records, oldest first, filtered; `total` counts every match."""
    conds = _time_and_subject(f, AuditRecord.ts, AuditRecord.subject_id)
    if f.event_type is not None:
        conds.append(AuditRecord.event_type == f.event_type)
    if f.action is not None:
        conds.append(AuditRecord.action == f.action)
    if f.result is not None:
        conds.append(AuditRecord.result == f.result)
    if f.object_id is not None:
        conds.append(AuditRecord.object_id == f.object_id)
    rows, total, more = _oldest_first(
        session, AuditRecord, AuditRecord.ts, AuditRecord.id, conds, limit=limit, cursor=cursor
    )
    nxt = encode_cursor(rows[-1].ts, rows[-1].id) if more and rows else None
    return Page([record_json(r) for r in rows], total, nxt)


def mask(document: Any, pointers: Sequence[str]) -> tuple[Any, list[str]]:
    """Remove each JSON pointer (`/input/context/ip`) that exists; return what was erased.

    OPA's `system.log.mask` rules return the same kind of pointers and the decision log
    lists them under `erased`.
    """
    erased = []
    for pointer in pointers:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
        node = document
        for part in parts[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and parts and parts[-1] in node:
            del node[parts[-1]]
            erased.append(pointer)
    return document, erased


def decision_json(
    row: DecisionLog, masks: Sequence[str], labels: Mapping[str, str]
) -> dict[str, Any]:
    """A stored decision as an OPA decision-log event (labels, req_id, metrics, erased)."""
    event = row.to_opa()
    doc, erased = mask({"input": event.pop("input")}, masks)
    event["input"] = doc["input"]
    event["labels"] = dict(labels)
    event["req_id"] = row.request_id
    event["metrics"] = {}
    event["result"] = event.get("result")
    if erased:
        event["erased"] = erased
    return event


def list_decisions(
    session: Session,
    f: RecordFilter,
    *,
    limit: int,
    cursor: str | None,
    masks: Sequence[str],
    labels: Mapping[str, str],
) -> Page:
    """Decision logs, oldest first, filtered by time, subject, action and result (allow/deny)."""
    conds = _time_and_subject(f, DecisionLog.ts, DecisionLog.subject_id)
    if f.result is not None:
        conds.append(DecisionLog.allow.is_(f.result == "allow"))
    if f.action is not None:
        conds.append(DecisionLog.input.like(f'%"action": {json.dumps(f.action)}%'))
    if f.object_id is not None:
        conds.append(DecisionLog.input.like(f'%"id": {json.dumps(f.object_id)}%'))
    rows, total, more = _oldest_first(
        session,
        DecisionLog,
        DecisionLog.ts,
        DecisionLog.decision_id,
        conds,
        limit=limit,
        cursor=cursor,
    )
    nxt = encode_cursor(rows[-1].ts, rows[-1].decision_id) if more and rows else None
    return Page([decision_json(r, masks, labels) for r in rows], total, nxt)


class DecisionSink(Periodic):
    """Pushes decision logs to an HTTP endpoint in batches, resuming from a stored cursor.

    Like OPA's decision-log plugin: a gzip-free JSON array POSTed per batch; a non-2xx
    answer or a connection error leaves the cursor unmoved and the batch is retried on
    the next tick. The cursor only moves after the sink acknowledged the batch.
    """

    def __init__(
        self,
        sessions: sessionmaker[Any],
        url: str,
        *,
        masks: Sequence[str],
        labels: Mapping[str, str],
        batch: int = 500,
        interval_s: float = 1.0,
        name: str = "default",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        client: httpx.Client | None = None,
    ) -> None:
        super().__init__(interval_s, thread="pdx-decision-sink")
        self._sessions = sessions
        self.url = url
        self._masks = tuple(masks)
        self._labels = dict(labels)
        self._batch = batch
        self.name = name
        self._clock = clock
        self._client = client or httpx.Client(timeout=httpx.Timeout(5.0, connect=2.0))
        self.last_error: str | None = None

    def push_once(self) -> int:
        """Deliver the next batch after the cursor; returns how many were acknowledged."""
        with self._sessions() as session:
            cur = session.get(SinkCursor, self.name)
            query = select(DecisionLog)
            if cur is not None and cur.ts is not None and cur.decision_id is not None:
                query = query.where(
                    or_(
                        DecisionLog.ts > cur.ts,
                        and_(DecisionLog.ts == cur.ts, DecisionLog.decision_id > cur.decision_id),
                    )
                )
            rows = session.scalars(
                query.order_by(DecisionLog.ts, DecisionLog.decision_id).limit(self._batch)
            ).all()
            if not rows:
                return 0
            events = [decision_json(r, self._masks, self._labels) for r in rows]
            last = rows[-1]
        # No database transaction is held across the network call (ZT-07).
        try:
            response = self._client.post(self.url, json=events)
            ok = 200 <= response.status_code < 300
            self.last_error = None if ok else f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            ok = False
            self.last_error = type(exc).__name__
        if not ok:
            log.warning("decision sink %s: %s; will retry", self.url, self.last_error)
            return 0
        with self._sessions() as session, session.begin():
            cur = session.get(SinkCursor, self.name, with_for_update=True)
            if cur is None:
                cur = SinkCursor(sink=self.name, delivered=0, updated_at=self._clock())
                session.add(cur)
            cur.ts, cur.decision_id = last.ts, last.decision_id
            cur.delivered = (cur.delivered or 0) + len(events)
            cur.updated_at = self._clock()
        return len(events)

    def drain(self) -> int:
        total = 0
        while (n := self.push_once()) > 0:
            total += n
        return total

    def _tick(self) -> None:
        try:
            self.drain()
        except Exception:  # keep pushing after a database hiccup; the log is durable
            log.exception("decision sink %s", self.url)

    def state(self, session: Session) -> dict[str, Any]:
        cur = session.get(SinkCursor, self.name)
        return {
            "url": self.url,
            "delivered": cur.delivered if cur else 0,
            "cursor_ts": cur.ts.isoformat() if cur and cur.ts else None,
            "last_error": self.last_error,
        }

"""/v1/audit: the auditors' workspace (records and decision logs; every read audited)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.types import DecoratedCallable
from sqlalchemy.orm import Session

import audit
import exchange
from audit.compliance import AUDIT_DECISIONS_READ, AUDIT_RECORDS_READ
from audit.workspace import BadCursor, RecordFilter, list_decisions, list_records
from audit.workspace import Page as AuditPage
from exchange.paging import Slice
from gateway.errors import GatewayError
from gateway.pagination import Page, Paging, invalid_cursor, pager
from gateway.pep import Enforce
from gateway.platform import Platform
from gateway.security import CallerDep, PlatformDep
from gateway.settings import ComplianceSettings

router = APIRouter(prefix="/v1/audit", tags=["audit"])

ReadAudit = Enforce("audit.read")
NDJSON = "application/x-ndjson"


def _filter(
    since: datetime | None = None,
    until: datetime | None = None,
    subject: Annotated[str | None, Query(max_length=128)] = None,
    event_type: Annotated[str | None, Query(max_length=64)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    result: Annotated[str | None, Query(max_length=16)] = None,
    object_id: Annotated[str | None, Query(alias="object", max_length=128)] = None,
) -> RecordFilter:
    for t in (since, until):
        if t is not None and t.tzinfo is None:
            raise GatewayError("invalid-request", "Invalid time", "times need a UTC offset")
    return RecordFilter(since, until, subject, event_type, action, result, object_id)


FilterDep = Annotated[RecordFilter, Depends(_filter)]
AuditPagingDep = Annotated[Paging, Depends(pager(default=100, maximum=1000))]
Format = Annotated[Literal["json", "jsonl"] | None, Query()]


def _audit_cursor(paging: Paging) -> str | None:
    """The workspace's own keyset cursor, carried inside the tamper-evident page cursor."""
    after = paging.window.after
    if after is None:
        return None
    if len(after) != 1 or not isinstance(after[0], str):
        raise invalid_cursor()
    return after[0]


@dataclass(frozen=True)
class _Read:
    """One audited read of the workspace: who asks, the filters, the page, the answer's format."""

    request: Request
    caller: exchange.Caller
    platform: Platform
    f: RecordFilter
    paging: Paging
    format: Literal["json", "jsonl"] | None

    def answer(self, event: str, query: Callable[[Session], AuditPage], what: str) -> Response:
        """Run the query and audit the read itself in one transaction (AUD-09); answer a page."""
        try:
            with self.platform.session() as session, session.begin():
                page = query(session)
                audit.record(
                    session,
                    self.caller.subject(),
                    audit.AuditEvent(
                        event,
                        "read",
                        audit.Result.SUCCESS,
                        object_id=what,
                        detail=f"{len(page.items)} of {page.total}; {self.request.url.query}"[:512],
                    ),
                    now=self.platform.now(),
                )
        except BadCursor:
            raise invalid_cursor() from None
        last = (page.next_cursor,) if page.next_cursor is not None else None
        body = self.paging.page(Slice(items=page.items, total=page.total, last=last))
        headers = {"X-Total-Count": str(page.total)}
        if body.next:
            headers["Link"] = f'<{body.next}>; rel="next"'
        accepts = self.request.headers.get("accept", "")
        if self.format == "jsonl" or (self.format is None and NDJSON in accepts):
            text = "".join(json.dumps(i, ensure_ascii=False) + "\n" for i in page.items)
            return Response(text, media_type=NDJSON, headers=headers)
        return JSONResponse(body.model_dump(mode="json"), headers=headers)


async def _read_of(
    request: Request,
    caller: CallerDep,
    platform: PlatformDep,
    f: FilterDep,
    paging: AuditPagingDep,
    format: Format = None,
) -> _Read:
    return _Read(request, caller, platform, f, paging, format)


ReadDep = Annotated[_Read, Depends(_read_of)]


def _settings(platform: Platform) -> ComplianceSettings:
    return platform.compliance.settings if platform.compliance else ComplianceSettings()


def _listing(path: str) -> Callable[[DecoratedCallable], DecoratedCallable]:
    """A list route: a page, or JSON Lines of its items with `format=jsonl`."""
    return router.get(
        path,
        dependencies=[Depends(ReadAudit)],
        response_model=None,
        responses={
            200: {
                "model": Page[dict[str, Any]],
                "content": {NDJSON: {"schema": {"type": "string"}}},
                "description": "a page; JSON Lines of the items with `format=jsonl`",
            }
        },
    )


@_listing("/records")
def records(r: ReadDep) -> Response:
    """Audit records, oldest first; `next` pages on; JSON Lines with `format=jsonl`."""
    cursor = _audit_cursor(r.paging)
    return r.answer(
        AUDIT_RECORDS_READ,
        lambda s: list_records(s, r.f, limit=r.paging.window.limit, cursor=cursor),
        "audit_records",
    )


@_listing("/decisions")
def decisions(r: ReadDep) -> Response:
    """Decision logs in OPA's shape (masked); `result` filters `allow` or `deny`."""
    cs = _settings(r.platform)
    r.platform.decision_logs.flush()
    cursor = _audit_cursor(r.paging)
    return r.answer(
        AUDIT_DECISIONS_READ,
        lambda s: list_decisions(
            s,
            r.f,
            limit=r.paging.window.limit,
            cursor=cursor,
            masks=cs.decision_masks,
            labels=dict(cs.labels),
        ),
        "audit_decisions",
    )


@router.get("/sink", dependencies=[Depends(ReadAudit)])
def sink(platform: PlatformDep) -> dict[str, Any]:
    """The decision-log sink's delivery state (none configured: null)."""
    services = platform.compliance
    if services is None or services.sink is None:
        return {"sink": None}
    with platform.session() as session:
        return {"sink": services.sink.state(session)}

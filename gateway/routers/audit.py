"""/v1/audit: the auditors' workspace (records and decision logs; every read audited)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session

import audit
from audit.compliance import AUDIT_DECISIONS_READ, AUDIT_RECORDS_READ
from audit.workspace import BadCursor, Page, RecordFilter, list_decisions, list_records
from gateway.errors import GatewayError
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
Limit = Annotated[int, Query(ge=1, le=1000)]
Cursor = Annotated[str | None, Query(max_length=512)]
Format = Annotated[Literal["json", "jsonl"] | None, Query()]


def _answer(request: Request, page: Page, fmt: str | None) -> Response:
    nxt = None
    if page.next_cursor is not None:
        params = {k: v for k, v in request.query_params.items() if k != "cursor"}
        nxt = f"{request.url.path}?{urlencode({**params, 'cursor': page.next_cursor})}"
    headers = {"X-Total-Count": str(page.total)}
    if nxt:
        headers["Link"] = f'<{nxt}>; rel="next"'
    wants_lines = fmt == "jsonl" or (fmt is None and NDJSON in request.headers.get("accept", ""))
    if wants_lines:
        body = "".join(json.dumps(i, ensure_ascii=False) + "\n" for i in page.items)
        return Response(body, media_type=NDJSON, headers=headers)
    return JSONResponse(
        {"items": page.items, "total": page.total, "next": nxt, "cursor": page.next_cursor},
        headers=headers,
    )


def _read(
    request: Request,
    caller: Any,
    platform: Platform,
    event: str,
    query: Callable[[Session], Page],
    what: str,
) -> Page:
    """Run the query and audit the read itself in one transaction (AUD-09)."""
    try:
        with platform.session() as session, session.begin():
            page = query(session)
            audit.record(
                session,
                caller.subject(),
                audit.AuditEvent(
                    event,
                    "read",
                    audit.Result.SUCCESS,
                    object_id=what,
                    detail=f"{len(page.items)} of {page.total}; {request.url.query}"[:512],
                ),
                now=platform.now(),
            )
    except BadCursor:
        raise GatewayError("invalid-request", "Invalid cursor", "the cursor is not valid") from None
    return page


def _settings(platform: Platform) -> ComplianceSettings:
    return platform.compliance.settings if platform.compliance else ComplianceSettings()


@router.get("/records", dependencies=[Depends(ReadAudit)], response_model=None)
def records(
    request: Request,
    caller: CallerDep,
    platform: PlatformDep,
    f: FilterDep,
    limit: Limit = 100,
    cursor: Cursor = None,
    format: Format = None,
) -> Response:
    """Audit records, oldest first; `next` pages on; JSON Lines with `format=jsonl`."""
    page = _read(
        request,
        caller,
        platform,
        AUDIT_RECORDS_READ,
        lambda s: list_records(s, f, limit=limit, cursor=cursor),
        "audit_records",
    )
    return _answer(request, page, format)


@router.get("/decisions", dependencies=[Depends(ReadAudit)], response_model=None)
def decisions(
    request: Request,
    caller: CallerDep,
    platform: PlatformDep,
    f: FilterDep,
    limit: Limit = 100,
    cursor: Cursor = None,
    format: Format = None,
) -> Response:
    """Decision logs in OPA's shape (masked); `result` filters `allow` or `deny`."""
    cs = _settings(platform)
    platform.decision_logs.flush()
    page = _read(
        request,
        caller,
        platform,
        AUDIT_DECISIONS_READ,
        lambda s: list_decisions(
            s, f, limit=limit, cursor=cursor, masks=cs.decision_masks, labels=dict(cs.labels)
        ),
        "audit_decisions",
    )
    return _answer(request, page, format)


@router.get("/sink", dependencies=[Depends(ReadAudit)])
def sink(platform: PlatformDep) -> dict[str, Any]:
    """The decision-log sink's delivery state (none configured: null)."""
    services = platform.compliance
    if services is None or services.sink is None:
        return {"sink": None}
    with platform.session() as session:
        return {"sink": services.sink.state(session)}

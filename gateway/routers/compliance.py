"""/v1/compliance: run the checks of docs/compliance.md, read signed runs, their trend."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

import audit.compliance
from audit.catalogue import Event
from audit.compliance.render import to_html, to_pdf
from exchange import errors as xe
from exchange.paging import in_memory
from exchange.timestamps import Timestamp
from gateway.pagination import Page, PagingDep
from gateway.pep import Enforce
from gateway.security import CallerDep, PlatformDep, SessionDep

router = APIRouter(prefix="/v1/compliance", tags=["compliance"])

RunCompliance = Enforce("compliance.run")
ReadCompliance = Enforce("compliance.read")
RunId = Annotated[str, Path(min_length=36, max_length=36, pattern=r"^[0-9a-f-]{36}$")]


@router.post("/runs", status_code=201, dependencies=[Depends(RunCompliance)])
def create_run(request: Request, caller: CallerDep, platform: PlatformDep) -> dict[str, Any]:
    """Evaluate every requirement now; the signed report goes on the ledger."""
    request.state.audit_event = Event.COMPLIANCE_CHECK_FAILED
    assert platform.compliance is not None
    return platform.compliance.run(caller.subject())


class RunSummary(BaseModel):
    """One compliance run: when, by whom, its counts and its signed report's digest."""

    model_config = ConfigDict(populate_by_name=True)

    id: str
    started_at: Timestamp
    by: str
    passed: int = Field(alias="pass")
    failed: int = Field(alias="fail")
    not_applicable: int = Field(alias="not-applicable")
    not_automated: int = Field(alias="not-automated")
    digest: str
    ledger_index: int | None
    tree_size: int


class TrendPoint(BaseModel):
    """A run in the trend: its counts and the requirement ids whose status changed."""

    model_config = ConfigDict(populate_by_name=True)

    id: str
    started_at: Timestamp
    passed: int = Field(alias="pass")
    failed: int = Field(alias="fail")
    changed: list[str]


class Trend(BaseModel):
    """The last runs, oldest first: a fixed window, not a list to page through."""

    points: list[TrendPoint]


_ALL_RUNS = 100_000  # runs are daily at most; paged in memory


@router.get("/runs", dependencies=[Depends(ReadCompliance)])
def list_runs(session: SessionDep, paging: PagingDep) -> Page[RunSummary]:
    """Runs, oldest first."""
    found = [RunSummary.model_validate(r) for r in audit.compliance.list_runs(session, _ALL_RUNS)]
    return paging.page(in_memory(found, lambda r: (r.started_at, r.id), paging.window))


@router.get("/trend", dependencies=[Depends(ReadCompliance)])
def trend(session: SessionDep, runs: Annotated[int, Query(ge=1, le=200)] = 30) -> Trend:
    """The last `runs` runs, oldest first, with the requirement ids whose status changed."""
    return Trend(
        points=[TrendPoint.model_validate(t) for t in audit.compliance.trend(session, runs)]
    )


@router.get("/runs/{run_id}", dependencies=[Depends(ReadCompliance)], response_model=None)
async def get_run(
    run_id: RunId,
    platform: PlatformDep,
    format: Literal["json", "html", "pdf"] = "json",
) -> Any:
    """One run as JSON, HTML or PDF (the figures of all three come from the stored JSON)."""

    def load() -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        with platform.session() as session:
            return audit.compliance.get_run(session, run_id), audit.compliance.trend(session)

    report, trend = await run_in_threadpool(load)
    if report is None:
        raise xe.NotFound("no compliance run with this id", run_id=run_id)
    if format == "html":
        return HTMLResponse(to_html(report, trend))
    if format == "pdf":
        pdf = await run_in_threadpool(to_pdf, report, trend)
        return Response(pdf, media_type="application/pdf")
    return report


@router.post("/risk-reports", status_code=201, dependencies=[Depends(RunCompliance)])
def risk_report(request: Request, caller: CallerDep, platform: PlatformDep) -> dict[str, Any]:
    """DSL art. 30: assess important data now (also generated on a schedule)."""
    request.state.audit_event = Event.RISK_REPORT_FAILED
    assert platform.compliance is not None
    return platform.compliance.risk_report(caller.subject())


@router.post("/retention-runs", status_code=201, dependencies=[Depends(RunCompliance)])
def retention_run(request: Request, platform: PlatformDep) -> dict[str, Any]:
    """Run the retention rules now (the platform also runs them on a schedule)."""
    request.state.audit_event = Event.RETENTION_RUN_FAILED
    assert platform.compliance is not None
    return platform.compliance.retention()

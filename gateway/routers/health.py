"""Liveness (/healthz: the process answers) and readiness (/readyz: it can serve safely)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from gateway.errors import problem, problem_responses
from gateway.readiness import Readiness
from gateway.security import PlatformDep

router = APIRouter(tags=["health"])


# `status` here is the health-check vocabulary load balancers read
# (draft-inadarei-api-health-check), not a resource's lifecycle `state`.
class Health(BaseModel):
    status: str = Field(examples=["ok"])
    version: str


class Check(BaseModel):
    name: str
    ok: bool
    detail: str | None = None


class Ready(BaseModel):
    status: str = Field(examples=["ready"])
    checks: list[Check]


@router.get("/healthz")
def healthz() -> Health:
    """Liveness only: a load balancer restarts a process that stops answering here."""
    return Health(status="ok", version="0.1.0")


@router.get(
    "/readyz", response_model=None, responses={200: {"model": Ready}, **problem_responses(503)}
)
async def readyz(request: Request, platform: PlatformDep) -> dict[str, Any] | JSONResponse:
    """Readiness: schema, store identity, ledger, objects directory, free space, sandbox.

    Answers 503 problem+json listing every check when one fails (routers send no
    traffic to a process that is not ready). Public and cheap: checks are cached.
    """
    readiness: Readiness | None = getattr(request.app.state, "readiness", None)
    if readiness is None:
        readiness = request.app.state.readiness = Readiness(platform)
    checks = await run_in_threadpool(readiness.run)
    listed = [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in checks]
    if all(c.ok for c in checks):
        return {
            "status": "ready",
            "checks": listed,
            "decision_logs_dropped": platform.decision_logs.dropped,
        }
    failing = ", ".join(f"{c.name}: {c.detail}" for c in checks if not c.ok)
    return problem(
        request,
        status=503,
        code="not-ready",
        title="Not ready",
        detail=failing,
        checks=listed,
        decision_logs_dropped=platform.decision_logs.dropped,
    )

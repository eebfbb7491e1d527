"""Liveness and readiness: /healthz checks the database answers."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from gateway.errors import GatewayError
from gateway.security import PlatformDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(platform: PlatformDep) -> dict[str, str]:
    try:
        with platform.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001 - report unavailability, details go to the log
        raise GatewayError("unavailable", "Service unavailable", "database unreachable") from None
    return {"status": "ok", "version": "0.1.0"}

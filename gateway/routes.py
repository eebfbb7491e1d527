"""The API's route table, compiled once per process and shared by every app built in it.

FastAPI compiles each route when a router is included: its dependency graph and a pydantic
adapter per parameter and response, about 0.3 s of CPU for this table. No route holds
anything of one app: handlers reach the platform, keys and limits through
`request.app.state`, and no app overrides dependencies, so one compiled table serves every
app a process builds (a test session builds one per test).
"""

from __future__ import annotations

from functools import cache

from fastapi import APIRouter, Depends
from starlette.routing import BaseRoute

from gateway.edges import bound_integers
from gateway.openapi import operation_id
from gateway.routers import audit as audit_router
from gateway.routers import (
    auth,
    computations,
    contracts,
    dataset_scan,
    datasets,
    health,
    joins,
    kms,
    ledger,
    market,
    market_deals,
    nodes,
    organisations,
    passkeys,
    people,
    policies,
    privacy,
    trail,
)
from gateway.routers import compliance as compliance_router
from gateway.security import authenticate, reject_control_characters

__all__ = ["api_routes"]


@cache
def api_routes() -> tuple[BaseRoute, ...]:
    """Every /v1 route (and health, token, JWKS) with the app-wide guards, in match order."""
    table = APIRouter(
        dependencies=[Depends(reject_control_characters), Depends(bound_integers)],
        generate_unique_id_function=operation_id,
    )
    table.include_router(health.router)
    table.include_router(auth.router)
    table.include_router(people.public)
    table.include_router(passkeys.public)
    protected = [Depends(authenticate)]
    for router in (
        passkeys.router,
        organisations.router,
        people.router,
        dataset_scan.router,  # before datasets' /{dataset_id}
        datasets.router,
        joins.router,
        ledger.router,
        trail.router,
        kms.router,
        policies.router,
        contracts.router,
        market.router,
        market_deals.router,
        computations.router,
        privacy.router,
        nodes.router,
        compliance_router.router,
        audit_router.router,
    ):
        if router is ledger.router:
            table.include_router(ledger.public)  # the checkpoint and its key (PUBLIC_PATHS)
        table.include_router(router, dependencies=protected)
    return tuple(table.routes)

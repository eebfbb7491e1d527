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
    protected = [Depends(authenticate)]
    table.include_router(people.public)
    table.include_router(passkeys.public)
    table.include_router(passkeys.router, dependencies=protected)
    table.include_router(organisations.router, dependencies=protected)
    table.include_router(people.router, dependencies=protected)
    table.include_router(dataset_scan.router, dependencies=protected)  # before /{dataset_id}
    table.include_router(datasets.router, dependencies=protected)
    table.include_router(joins.router, dependencies=protected)
    table.include_router(ledger.public)  # the checkpoint and its key (PUBLIC_PATHS)
    table.include_router(ledger.router, dependencies=protected)
    table.include_router(trail.router, dependencies=protected)
    table.include_router(kms.router, dependencies=protected)
    table.include_router(policies.router, dependencies=protected)
    table.include_router(contracts.router, dependencies=protected)
    table.include_router(market.router, dependencies=protected)
    table.include_router(market_deals.router, dependencies=protected)
    table.include_router(computations.router, dependencies=protected)
    table.include_router(privacy.router, dependencies=protected)
    table.include_router(nodes.router, dependencies=protected)
    table.include_router(compliance_router.router, dependencies=protected)
    table.include_router(audit_router.router, dependencies=protected)
    return tuple(table.routes)

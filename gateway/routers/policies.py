"""/v1/policies: the active policy bundle, its history, and activation of a new revision.

A new revision is validated first (every module parses, every policy test passes, the
grading matrix fits its schema); only then is it recorded, put on the ledger
(`policy.activated`, with the bundle's SHA-256) and loaded into the decision point
(`exchange.policy_activation`, the use case start-up shares).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field

import exchange
import policies
from audit.catalogue import Event
from exchange.paging import in_memory
from exchange.policy_activation import activate_policy
from exchange.policy_dry_run import MAX_DECISIONS, as_json, candidate_bundle, dry_run
from exchange.timestamps import Timestamp
from gateway.pagination import Page, PagingDep
from gateway.pep import Enforce
from gateway.platform import Platform
from gateway.security import CallerDep, PlatformDep, SessionDep

router = APIRouter(prefix="/v1/policies", tags=["policies"])

ReadPolicy = Enforce("policy.read")
_ALL_REVISIONS = 100_000  # revisions are few; paged in memory
WritePolicy = Enforce("policy.write")


class BundleIn(BaseModel):
    modules: dict[str, str] = Field(description="file name (e.g. authz.rego) -> Rego source")
    matrix: dict[str, Any] = Field(description="the grading matrix (data.pdx.matrix)")


class ModuleIn(BaseModel):
    source: str = Field(max_length=256 * 1024)


class PolicySummary(BaseModel):
    revision: int
    digest: str = Field(description="sha256:<hex> of the bundle")
    activated_by: str | None
    activated_at: Timestamp | None
    description: str | None
    modules: list[str]


class PolicyActive(PolicySummary):
    """The active revision with its Rego sources and grading matrix."""

    matrix: dict[str, Any]
    sources: dict[str, str]


class PolicyRevision(BaseModel):
    revision: int
    digest: str = Field(description="sha256:<hex> of the bundle")
    activated_by: str
    activated_at: Timestamp
    description: str | None
    changes: list[str]


class PolicyActivation(PolicySummary):
    """The outcome of an activation: unchanged, or the new revision and its ledger entry."""

    changed: bool
    changes: list[str]
    tests_passed: int | None = None
    ledger_index: int | None = None


def _summary(active: policies.ActivePolicy) -> dict[str, Any]:
    return {
        "revision": active.revision,
        "digest": f"sha256:{active.digest}",
        "activated_by": active.activated_by,
        "activated_at": active.activated_at,
        "description": active.description,
        "modules": sorted(active.bundle.modules),
    }


@router.get("", dependencies=[Depends(ReadPolicy)])
def get_active(session: SessionDep) -> PolicyActive:
    """The active revision with its modules and grading matrix."""
    active = policies.active(session)
    return PolicyActive(
        **_summary(active),
        matrix=dict(active.bundle.matrix),
        sources=dict(active.bundle.modules),
    )


@router.get("/history", dependencies=[Depends(ReadPolicy)])
def get_history(session: SessionDep, paging: PagingDep) -> Page[PolicyRevision]:
    """Every activated revision, oldest first."""
    found = [
        PolicyRevision(
            revision=r.revision,
            digest=f"sha256:{r.digest}",
            activated_by=r.activated_by,
            activated_at=r.activated_at,
            description=r.description,
            changes=list(r.changes),
        )
        for r in policies.history(session, limit=_ALL_REVISIONS)
    ]
    return paging.page(in_memory(found, lambda r: (r.revision,), paging.window))


@router.get("/revisions/{revision}", dependencies=[Depends(ReadPolicy)])
def get_revision(
    revision: Annotated[int, Path(ge=0, le=2**31 - 1)], session: SessionDep
) -> PolicyActive:
    """One stored revision with its modules and matrix (0: the built-in bundle).

    What a rollback re-activates (the console's policy page); 404 if there is none.
    """
    stored = policies.revision(session, revision)
    return PolicyActive(
        **_summary(stored), matrix=dict(stored.bundle.matrix), sources=dict(stored.bundle.modules)
    )


def _activate(
    request: Request,
    platform: Platform,
    caller: exchange.Caller,
    build: Callable[[policies.ActivePolicy], policies.PolicyBundle],
) -> PolicyActivation:
    """Validate, record, ledger, load (exchange.policy_activation); refusals are audited."""
    request.state.audit_event = Event.POLICY_ACTIVATION_REFUSED
    now = platform.now()
    pdp = platform.pdp
    assert pdp is not None
    done = activate_policy(
        platform.session,
        platform.trail,
        caller.subject(),
        lambda session, previous: policies.activate(
            session, build(previous), by=caller.client_id, now=now
        ),
        load=pdp.load,
        now=now,
    )
    assert done.activation is not None
    if not done.changed:
        return PolicyActivation(**_summary(done.policy), changed=False, changes=[])
    return PolicyActivation(
        **_summary(done.policy),
        changed=True,
        changes=list(done.activation.changes),
        tests_passed=done.activation.tests_passed,
        ledger_index=done.ledger_index,
    )


@router.put("", dependencies=[Depends(WritePolicy)])
def put_bundle(
    body: BundleIn, request: Request, caller: CallerDep, platform: PlatformDep
) -> PolicyActivation:
    """Activate a whole bundle (modules and matrix)."""
    return _activate(
        request,
        platform,
        caller,
        lambda previous: policies.PolicyBundle(body.modules, body.matrix),
    )


@router.put("/matrix", dependencies=[Depends(WritePolicy)])
def put_matrix(
    matrix: dict[str, Any], request: Request, caller: CallerDep, platform: PlatformDep
) -> PolicyActivation:
    """Activate a new grading matrix with the active Rego modules."""
    return _activate(
        request,
        platform,
        caller,
        lambda previous: policies.PolicyBundle(dict(previous.bundle.modules), matrix),
    )


@router.put("/modules/{name}", dependencies=[Depends(WritePolicy)])
def put_module(
    name: Annotated[str, Path(max_length=64)],
    body: ModuleIn,
    request: Request,
    caller: CallerDep,
    platform: PlatformDep,
) -> PolicyActivation:
    """Activate the active bundle with one Rego module added or replaced."""
    return _activate(
        request,
        platform,
        caller,
        lambda previous: policies.PolicyBundle(
            {**previous.bundle.modules, name: body.source}, dict(previous.bundle.matrix)
        ),
    )


class DryRunIn(BaseModel):
    modules: dict[str, str] | None = Field(
        default=None, description="Rego modules to add or replace (file name -> source)"
    )
    matrix: dict[str, Any] | None = Field(default=None, description="a new grading matrix")
    limit: int = Field(default=200, ge=1, le=MAX_DECISIONS, description="recent decisions")


@router.post("/dry-run", dependencies=[Depends(WritePolicy)])
def post_dry_run(body: DryRunIn, platform: PlatformDep) -> dict[str, Any]:
    """Re-decide the last `limit` decisions under the active and the changed bundle.

    Nothing is stored or loaded. The answer counts, per action, the decisions that would
    flip; it names no subject or resource (the security admin does not read the audit
    trail).
    """
    platform.decision_logs.flush()  # the newest decisions are still in the buffer
    with platform.session() as session:
        active = policies.active(session)
        candidate = candidate_bundle(active, body.modules, body.matrix)
        return as_json(dry_run(session, active, candidate, limit=body.limit))

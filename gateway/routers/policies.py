"""/v1/policies: the active policy bundle, its history, and activation of a new revision.

A new revision is validated first (every module parses, every policy test passes, the
grading matrix fits its schema); only then is it recorded, put on the ledger
(`policy.activated`, with the bundle's SHA-256) and loaded into the decision point.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field

import audit
import policies
from audit.catalogue import Event
from gateway.pep import Enforce
from gateway.platform import Platform
from gateway.security import CallerDep, PlatformDep

router = APIRouter(prefix="/v1/policies", tags=["policies"])

ReadPolicy = Enforce("policy.read")
WritePolicy = Enforce("policy.write")


class BundleIn(BaseModel):
    modules: dict[str, str] = Field(description="file name (e.g. authz.rego) -> Rego source")
    matrix: dict[str, Any] = Field(description="the grading matrix (data.pdx.matrix)")


class ModuleIn(BaseModel):
    source: str = Field(max_length=256 * 1024)


def _summary(active: policies.ActivePolicy, *, full: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "revision": active.revision,
        "digest": f"sha256:{active.digest}",
        "activated_by": active.activated_by,
        "activated_at": active.activated_at.isoformat() if active.activated_at else None,
        "description": active.description,
        "modules": sorted(active.bundle.modules),
    }
    if full:
        out["matrix"] = dict(active.bundle.matrix)
        out["sources"] = dict(active.bundle.modules)
    return out


@router.get("", dependencies=[Depends(ReadPolicy)])
def get_active(platform: PlatformDep) -> dict[str, Any]:
    """The active revision with its modules and grading matrix."""
    with platform.session() as session:
        return _summary(policies.active(session), full=True)


@router.get("/history", dependencies=[Depends(ReadPolicy)])
def get_history(platform: PlatformDep) -> list[dict[str, Any]]:
    with platform.session() as session:
        return [
            {
                "revision": r.revision,
                "digest": f"sha256:{r.digest}",
                "activated_by": r.activated_by,
                "activated_at": r.activated_at.isoformat(),
                "description": r.description,
                "changes": list(r.changes),
            }
            for r in policies.history(session)
        ]


def _activate(request: Request, platform: Platform, caller_id: str, build: Any) -> dict[str, Any]:
    """Validate, record, ledger, load; on any failure the previous policy stays in force."""
    caller = request.state.caller
    request.state.audit_event = Event.POLICY_ACTIVATION_REFUSED
    now = platform.now()
    pdp = platform.pdp
    assert pdp is not None
    previous: policies.ActivePolicy | None = None
    loaded = False
    try:
        with platform.session() as session, session.begin():
            previous = policies.active(session)
            activation = policies.activate(session, build(previous), by=caller_id, now=now)
            if not activation.changed:
                summary = _summary(activation.policy, full=False)
                return {**summary, "changed": False, "changes": []}
            receipt = platform.trail.record(
                session,
                caller.subject(),
                audit.AuditEvent(
                    Event.POLICY_ACTIVATED,
                    "activate",
                    audit.Result.SUCCESS,
                    object_id=f"policy-revision-{activation.policy.revision}",
                    detail="; ".join(activation.changes)[:512] or None,
                ),
                object_type="policy",
                payload_digest=f"sha256:{activation.policy.digest}",
                now=now,
            )
            pdp.load(activation.policy)  # compiles first; raising rolls the revision back
            loaded = True
    except BaseException:
        if loaded and previous is not None:
            pdp.load(previous)  # the commit failed after loading: back to what is stored
        raise
    return {
        **_summary(activation.policy, full=False),
        "changed": True,
        "changes": list(activation.changes),
        "tests_passed": activation.tests_passed,
        "ledger_index": receipt.ledger_index,
    }


@router.put("", dependencies=[Depends(WritePolicy)])
def put_bundle(
    body: BundleIn, request: Request, caller: CallerDep, platform: PlatformDep
) -> dict[str, Any]:
    """Activate a whole bundle (modules and matrix)."""
    return _activate(
        request,
        platform,
        caller.client_id,
        lambda previous: policies.PolicyBundle(body.modules, body.matrix),
    )


@router.put("/matrix", dependencies=[Depends(WritePolicy)])
def put_matrix(
    matrix: dict[str, Any], request: Request, caller: CallerDep, platform: PlatformDep
) -> dict[str, Any]:
    """Activate a new grading matrix with the active Rego modules."""
    return _activate(
        request,
        platform,
        caller.client_id,
        lambda previous: policies.PolicyBundle(dict(previous.bundle.modules), matrix),
    )


@router.put("/modules/{name}", dependencies=[Depends(WritePolicy)])
def put_module(
    name: Annotated[str, Path(max_length=64)],
    body: ModuleIn,
    request: Request,
    caller: CallerDep,
    platform: PlatformDep,
) -> dict[str, Any]:
    """Activate the active bundle with one Rego module added or replaced."""
    return _activate(
        request,
        platform,
        caller.client_id,
        lambda previous: policies.PolicyBundle(
            {**previous.bundle.modules, name: body.source}, dict(previous.bundle.matrix)
        ),
    )

"""/v1/kms: key inventory, rotation, state changes and two-person destruction.

Who may do what is checked in one place, `crypto.roles.require_key_role`: platform
security administrators act as key administrators, auditors as crypto auditors,
system administrators as crypto operators. Every change is an audit record and a
ledger entry (the key store's event sink is `exchange.Trail.key_event`).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

import exchange
from crypto.roles import KeyActor, KeyRole
from exchange import resources
from gateway.pep import Enforce, Target
from gateway.platform import Platform
from gateway.security import CallerDep, PlatformDep

router = APIRouter(prefix="/v1/kms", tags=["kms"])

ReadKeys = Enforce("kms.read", target={"type": "kms"})
AdministerKeys = Enforce("kms.admin", target={"type": "kms"})

# Platform role → key-management role (docs/compliance.md CRY-13; 三员分立 keeps them apart).
KEY_ROLES: dict[exchange.Role, KeyRole] = {
    exchange.Role.SECURITY_ADMIN: KeyRole.KEY_ADMINISTRATOR,
    exchange.Role.SYSTEM_ADMIN: KeyRole.CRYPTO_OPERATOR,
    exchange.Role.AUDITOR: KeyRole.CRYPTO_AUDITOR,
}

KeyId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9:._\-]+$")]


def actor(caller: exchange.Caller) -> KeyActor:
    return KeyActor(
        id=caller.client_id,
        roles=frozenset(KEY_ROLES[r] for r in caller.roles if r in KEY_ROLES),
        person=caller.person_id,
        sponsor=caller.person_created_by,
    )


def _destroy_request(
    request: Request, caller: exchange.Caller, platform: Platform, session: Session
) -> list[Target]:
    """The pending destruction an approval decides on: who asked, and who created them.

    policies/sod.rego refuses the second half unless a distinct person, neither created
    by the other, stands behind it (issue 11: two-person rule).
    """
    if request.path_params.get("decision") != "approve":
        return [Target(resources.kms_resource(session))]
    approving = request.path_params["request_id"]
    return [Target(resources.kms_resource(session, approving=approving))]


DecideDestruction = Enforce("kms.admin", resources=_destroy_request)


def _public(value: Any) -> dict[str, Any]:
    out = asdict(value)
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in out.items()}


class StateChange(BaseModel):
    version: int = Field(ge=1)
    reason: str = Field(default="", max_length=256)


class DestroyRequestIn(BaseModel):
    version: int | None = Field(default=None, ge=1, description="omit for every version")
    reason: str = Field(min_length=3, max_length=256)


@router.get("/keys", dependencies=[Depends(ReadKeys)])
def inventory(caller: CallerDep, platform: PlatformDep) -> list[dict[str, Any]]:
    """Every key version: type, length, owner, purpose, algorithm, validity, state."""
    with platform.session() as session:
        return [k.to_public() for k in platform.kms.inventory(session, by=actor(caller))]


@router.get("/keys/{key_id}", dependencies=[Depends(ReadKeys)])
def key(key_id: KeyId, caller: CallerDep, platform: PlatformDep) -> list[dict[str, Any]]:
    with platform.session() as session:
        return [k.to_public() for k in platform.kms.key(session, key_id, by=actor(caller))]


@router.get("/rotation-due", dependencies=[Depends(ReadKeys)])
def rotation_due(caller: CallerDep, platform: PlatformDep) -> list[dict[str, Any]]:
    """Keys the rotation policy (max age per purpose) says need rotating."""
    with platform.session() as session:
        due = platform.kms.due_for_rotation(session, now=platform.now(), by=actor(caller))
    return [_public(d) for d in due]


@router.post("/keys/{key_id}/rotate", dependencies=[Depends(AdministerKeys)])
def rotate(
    key_id: KeyId, request: Request, caller: CallerDep, platform: PlatformDep
) -> dict[str, Any]:
    """New version active; data keys re-wrapped in batches (data is not re-encrypted).

    Resumable: after a failure the old version stays active and all data readable, and
    calling again continues the same rotation.
    """
    with platform.write_session() as session:  # rotate commits per batch itself
        progress = platform.kms.rotate(session, key_id, by=actor(caller), now=platform.now())
    request.app.state.reload_keys()  # sign new tokens with the new version at once
    return {**_public(progress), "done": progress.done}


@router.post("/keys/{key_id}/destroy", status_code=202, dependencies=[Depends(AdministerKeys)])
def request_destroy(
    key_id: KeyId, body: DestroyRequestIn, caller: CallerDep, platform: PlatformDep
) -> dict[str, Any]:
    """Ask to destroy a key (version); a second key administrator must approve."""
    with platform.session() as session, session.begin():
        req = platform.kms.request_destroy(
            session,
            key_id,
            version=body.version,
            by=actor(caller),
            now=platform.now(),
            reason=body.reason,
        )
        return _public(req)


@router.get("/destroy-requests", dependencies=[Depends(ReadKeys)])
def destroy_requests(caller: CallerDep, platform: PlatformDep) -> list[dict[str, Any]]:
    with platform.session() as session:
        found = platform.kms.destroy_requests(session, by=actor(caller), now=platform.now())
    return [_public(r) for r in found]


@router.post("/destroy-requests/{request_id}/{decision}", dependencies=[Depends(DecideDestruction)])
def decide_destroy(
    request_id: Annotated[str, Path(max_length=64)],
    decision: Literal["approve", "cancel"],
    caller: CallerDep,
    platform: PlatformDep,
) -> dict[str, Any]:
    """Approve (by a different key administrator: crypto-shreds) or cancel a request."""
    with platform.session() as session, session.begin():
        if decision == "approve":
            req = platform.kms.approve_destroy(
                session, request_id, by=actor(caller), now=platform.now()
            )
        else:
            req = platform.kms.cancel_destroy(
                session, request_id, by=actor(caller), now=platform.now()
            )
        return _public(req)


# Declared last: the generic action route must not shadow /destroy.
@router.post("/keys/{key_id}/{action}", dependencies=[Depends(AdministerKeys)])
def change_state(
    key_id: KeyId,
    action: Literal["suspend", "resume", "revoke", "archive", "activate"],
    body: StateChange,
    request: Request,
    caller: CallerDep,
    platform: PlatformDep,
) -> dict[str, Any]:
    by, now, kms = actor(caller), platform.now(), platform.kms
    with platform.session() as session, session.begin():
        if action == "suspend":
            info = kms.suspend(session, key_id, body.version, by=by, now=now, reason=body.reason)
        elif action == "revoke":
            info = kms.revoke(session, key_id, body.version, by=by, now=now, reason=body.reason)
        elif action == "resume":
            info = kms.resume(session, key_id, body.version, by=by, now=now)
        elif action == "archive":
            info = kms.archive(session, key_id, body.version, by=by, now=now)
        else:
            info = kms.activate(session, key_id, body.version, by=by, now=now)
    request.app.state.reload_keys()
    return info.to_public()

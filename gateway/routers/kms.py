"""/v1/kms: key inventory, rotation, state changes and two-person destruction.

Who may do what is checked in one place, `crypto.roles.require_key_role`: platform
security administrators act as key administrators, auditors as crypto auditors,
system administrators as crypto operators. Every change is an audit record and a
ledger entry (the key store's event sink is `exchange.Trail.key_event`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

import exchange
from crypto.roles import KeyActor, KeyRole
from exchange import resources
from exchange.paging import Key, in_memory
from exchange.timestamps import Timestamp
from gateway.pagination import Page, Paging, PagingDep
from gateway.pep import Enforce, Target
from gateway.platform import Platform
from gateway.security import CallerDep, ClockDep, PlatformDep, SessionDep

router = APIRouter(prefix="/v1/kms", tags=["kms"])

ReadKeys = Enforce("kms.read", target={"type": "kms"})
AdministerKeys = Enforce("kms.admin", target={"type": "kms"})

# Platform role → key-management role (docs/compliance.md CRY-13; 三员分立 keeps them apart).
KEY_ROLES: dict[exchange.Role, KeyRole] = {
    exchange.Role.SECURITY_ADMIN: KeyRole.KEY_ADMINISTRATOR,
    exchange.Role.SYSTEM_ADMIN: KeyRole.CRYPTO_OPERATOR,
    exchange.Role.AUDITOR: KeyRole.CRYPTO_AUDITOR,
}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

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

    policies/sod.rego refuses the second half unless a distinct person, neither in the
    other's invitation lineage, stands behind it (issue 11: two-person rule).
    """
    if request.path_params.get("decision") != "approve":
        return [Target(resources.kms_resource(session))]
    approving = request.path_params["request_id"]
    resource = resources.kms_resource(
        session, approving=approving, approver=caller.person_id, approver_client=caller.client_id
    )
    return [Target(resource)]


DecideDestruction = Enforce("kms.admin", resources=_destroy_request)


def _snake(value: str) -> str:
    return value.replace("-", "_")


SnakeState = Annotated[str, AfterValidator(_snake)]


class KeyVersionPublic(BaseModel):
    """One key version of the inventory (docs/compliance.md CRY-14)."""

    model_config = ConfigDict(from_attributes=True)

    key_id: str
    version: int
    type: str = Field(description="symmetric or asymmetric")
    length: int = Field(description="bits")
    owner_org: str | None
    purpose: str
    algorithm: str
    state: SnakeState = Field(description="pre_active, active, suspended, deactivated, ...")
    not_before: Timestamp | None
    not_after: Timestamp | None
    created_at: Timestamp | None
    state_changed_at: Timestamp | None
    parent_id: str | None
    location: str
    data_keys: int | None = None


class RotationDuePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    key_id: str
    version: int
    purpose: str
    owner_org: str | None
    algorithm: str
    active_since: Timestamp | None
    due_at: Timestamp | None
    reason: str = Field(description="max-age, expired, rewrap-pending or compromised")
    pending_data_keys: int = 0


class RotationPublic(BaseModel):
    """Where a rotation stands; call again until `done`."""

    model_config = ConfigDict(from_attributes=True)

    key_id: str
    version: int
    rewrapped: int
    remaining: int
    done: bool


class DestroyRequestPublic(BaseModel):
    """A key-destruction request of the two-person rule."""

    id: str
    key_id: str
    version: int | None
    reason: str
    state: str = Field(description="pending, executed, cancelled or expired")
    requested_by: str
    requested_at: Timestamp | None
    expires_at: Timestamp | None
    decided_by: str | None
    decided_at: Timestamp | None
    requested_by_person: str | None = None
    requested_by_sponsor: str | None = None
    decided_by_person: str | None = None


def _destroy_public(value: Any) -> DestroyRequestPublic:
    fields = asdict(value)
    fields["state"] = fields.pop("status")
    return DestroyRequestPublic.model_validate(fields)


def _key(value: Any) -> KeyVersionPublic:
    return KeyVersionPublic.model_validate(value)


def _versions(versions: Iterable[Any], paging: Paging) -> Page[KeyVersionPublic]:
    """A page of key versions, by key id and version."""
    return paging.page(in_memory([_key(k) for k in versions], _version_key, paging.window))


def _requested(r: DestroyRequestPublic) -> Key:
    return (r.requested_at or _EPOCH, r.id)


def _version_key(k: KeyVersionPublic) -> Key:
    return (k.key_id, k.version)


class StateChange(BaseModel):
    version: int = Field(ge=1)
    reason: str = Field(default="", max_length=256)


class DestroyRequestIn(BaseModel):
    version: int | None = Field(default=None, ge=1, description="omit for every version")
    reason: str = Field(min_length=3, max_length=256)


@router.get("/keys", dependencies=[Depends(ReadKeys)])
def inventory(
    caller: CallerDep, session: SessionDep, platform: PlatformDep, paging: PagingDep
) -> Page[KeyVersionPublic]:
    """Every key version: type, length, owner, purpose, algorithm, validity, state."""
    return _versions(platform.kms.inventory(session, by=actor(caller)), paging)


@router.get("/keys/{key_id}", dependencies=[Depends(ReadKeys)])
def key(
    key_id: KeyId, caller: CallerDep, session: SessionDep, platform: PlatformDep, paging: PagingDep
) -> Page[KeyVersionPublic]:
    """The versions of one key, oldest first."""
    return _versions(platform.kms.key(session, key_id, by=actor(caller)), paging)


@router.get("/rotation-due", dependencies=[Depends(ReadKeys)])
def rotation_due(
    caller: CallerDep, session: SessionDep, now: ClockDep, platform: PlatformDep, paging: PagingDep
) -> Page[RotationDuePublic]:
    """Keys the rotation policy (max age per purpose) says need rotating."""
    due = platform.kms.due_for_rotation(session, now=now, by=actor(caller))
    found = [RotationDuePublic.model_validate(d) for d in due]
    return paging.page(in_memory(found, lambda d: (d.key_id, d.version), paging.window))


@router.post("/keys/{key_id}/rotate", dependencies=[Depends(AdministerKeys)])
def rotate(
    key_id: KeyId, request: Request, caller: CallerDep, platform: PlatformDep
) -> RotationPublic:
    """New version active; data keys re-wrapped in batches (data is not re-encrypted).

    Resumable: after a failure the old version stays active and all data readable, and
    calling again continues the same rotation.
    """
    with platform.write_session() as session:  # rotate commits per batch itself
        progress = platform.kms.rotate(session, key_id, by=actor(caller), now=platform.now())
    request.app.state.reload_keys()  # sign new tokens with the new version at once
    return RotationPublic.model_validate(progress)


@router.post("/keys/{key_id}/destroy", status_code=202, dependencies=[Depends(AdministerKeys)])
def request_destroy(
    key_id: KeyId, body: DestroyRequestIn, caller: CallerDep, platform: PlatformDep
) -> DestroyRequestPublic:
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
        return _destroy_public(req)


@router.get("/destroy-requests", dependencies=[Depends(ReadKeys)])
def destroy_requests(
    caller: CallerDep, session: SessionDep, now: ClockDep, platform: PlatformDep, paging: PagingDep
) -> Page[DestroyRequestPublic]:
    """Key-destruction requests, oldest first."""
    found = [
        _destroy_public(r)
        for r in platform.kms.destroy_requests(session, by=actor(caller), now=now)
    ]
    return paging.page(in_memory(found, _requested, paging.window))


@router.post("/destroy-requests/{request_id}/{decision}", dependencies=[Depends(DecideDestruction)])
def decide_destroy(
    request_id: Annotated[str, Path(max_length=64)],
    decision: Literal["approve", "cancel"],
    caller: CallerDep,
    platform: PlatformDep,
) -> DestroyRequestPublic:
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
        return _destroy_public(req)


# Declared last: the generic action route must not shadow /destroy.
@router.post("/keys/{key_id}/{action}", dependencies=[Depends(AdministerKeys)])
def change_state(
    key_id: KeyId,
    action: Literal["suspend", "resume", "revoke", "archive", "activate"],
    body: StateChange,
    request: Request,
    caller: CallerDep,
    platform: PlatformDep,
) -> KeyVersionPublic:
    """Suspend, resume, revoke (compromised), archive or activate one key version."""
    by, now, kms = actor(caller), platform.now(), platform.kms
    with platform.session() as session, session.begin():
        info = kms.change_state(
            session, key_id, body.version, action, by=by, now=now, reason=body.reason
        )
    request.app.state.reload_keys()
    return _key(info)

"""/v1/organisations (operator) and their clients (each org's own administrator), /v1/me."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

import exchange
import exchange.clients
from audit.catalogue import Event
from exchange import resources
from exchange.timestamps import Timestamp
from gateway.pagination import Page, PagingDep
from gateway.pep import Enforce, Resources, Target
from gateway.platform import Platform
from gateway.security import CallerDep, SessionDep
from gateway.writes import WriteDep

router = APIRouter(prefix="/v1", tags=["accounts"])


class OrganisationCreate(BaseModel):
    name: str = Field(min_length=2, max_length=200)
    kind: str


class OrganisationPublic(BaseModel):
    id: str
    name: str
    kind: str
    created_at: Timestamp
    ledger_index: int | None = None  # set on creation: the entry recording it


class ClientCreate(BaseModel):
    name: str = Field(min_length=2, max_length=200)
    roles: list[str] = Field(min_length=1, max_length=5)
    owner_person_id: str | None = Field(
        default=None, max_length=40, description="a person of the org; default the caller's"
    )


class ClientIssued(BaseModel):
    """Returned once at creation: the secret is not stored in retrievable form."""

    client_id: str
    client_secret: str
    org_id: str
    kind: str
    name: str
    roles: list[str]
    ledger_index: int | None = None


class Me(BaseModel):
    client_id: str
    org_id: str
    org_kind: str
    roles: list[str]


def _public(org: exchange.Organisation, ledger_index: int | None = None) -> OrganisationPublic:
    public = OrganisationPublic.model_validate(org, from_attributes=True)
    public.ledger_index = ledger_index
    return public


def new_account(kind: str) -> Resources:
    """Resources: an account of `kind` the body asks for in the path's organisation."""

    def targets(
        request: Request, caller: exchange.Caller, platform: Platform, session: Session
    ) -> list[Target]:
        roles = getattr(request.state, "requested_roles", None) or []
        org_id = request.path_params["org_id"]
        return [Target(resources.account_resource(session, kind, org_id, roles=roles))]

    return targets


async def requested_roles(request: Request) -> None:
    """Expose the body's roles to the policy input (the body is read once and cached)."""
    try:
        body = await request.json()
    except ValueError:
        return
    roles = body.get("roles") if isinstance(body, dict) else None
    if isinstance(roles, list) and all(isinstance(r, str) for r in roles):
        request.state.requested_roles = roles[:10]


CreateOrganisation = Enforce("organisation.create")
ReadAccounts = Enforce("account.read")
CreateClient = Enforce("account.create", resources=new_account("account"))


@router.post("/organisations", status_code=201, dependencies=[Depends(CreateOrganisation)])
def create_organisation(body: OrganisationCreate, w: WriteDep) -> OrganisationPublic:
    w.failing_as(Event.ORGANISATION_CREATE_FAILED)
    org, receipt = w.run(exchange.create_organisation, name=body.name, kind=body.kind)
    return _public(org, receipt.ledger_index)


@router.get("/organisations", dependencies=[Depends(ReadAccounts)])
def list_organisations(
    caller: CallerDep, session: SessionDep, paging: PagingDep
) -> Page[OrganisationPublic]:
    """Every organisation, oldest first."""
    return paging.page_as(exchange.list_organisations(session, window=paging.window), _public)


@router.post(
    "/organisations/{org_id}/clients",
    status_code=201,
    dependencies=[Depends(requested_roles), Depends(CreateClient)],
)
def create_client(org_id: str, body: ClientCreate, w: WriteDep) -> ClientIssued:
    w.failing_as(Event.CLIENT_CREATE_FAILED, org_id)
    issued = w.run(
        exchange.create_client,
        org_id=org_id,
        name=body.name,
        roles=body.roles,
        owner_person_id=body.owner_person_id,
    )
    w.request.app.state.principals.invalidate()
    return ClientIssued(
        client_id=issued.client_id,
        client_secret=issued.client_secret,
        org_id=issued.org_id,
        kind=issued.org_kind.value,
        name=issued.name,
        roles=[r.value for r in issued.roles],
        ledger_index=issued.ledger_index,
    )


@router.get("/me", dependencies=[Depends(ReadAccounts)])
def me(caller: CallerDep) -> Me:
    return Me(
        client_id=caller.client_id,
        org_id=caller.org_id,
        org_kind=caller.org_kind.value,
        roles=sorted(r.value for r in caller.roles),
    )


# -- client lifecycle (issue 11): deactivate, rotate the secret -------------------------


class ClientState(BaseModel):
    """A client after a lifecycle change; `client_secret` only after a rotation (shown once)."""

    client_id: str
    org_id: str
    active: bool
    client_secret: str | None = None
    ledger_index: int | None = None


def _managed_client(
    request: Request, caller: exchange.Caller, platform: Platform, session: Session
) -> list[Target]:
    """The client acted on, as the policy sees an account: its org's kind, owner, roles."""
    org_id, client_id = request.path_params["org_id"], request.path_params["client_id"]
    return [Target(resources.account_resource(session, "account", org_id, client_id=client_id))]


DeactivateClient = Enforce("account.deactivate", resources=_managed_client)
RotateClientSecret = Enforce("account.rotate_secret", resources=_managed_client)


def _state(change: exchange.clients.ClientChange) -> ClientState:
    return ClientState.model_validate(change, from_attributes=True)


@router.post(
    "/organisations/{org_id}/clients/{client_id}/deactivate",
    response_model_exclude_none=True,
    dependencies=[Depends(DeactivateClient)],
)
def deactivate_client(org_id: str, client_id: str, w: WriteDep) -> ClientState:
    """Deactivate a client: it gets no tokens, and its live tokens stop working."""
    w.failing_as(Event.CLIENT_DEACTIVATE_FAILED, client_id)
    change = w.run(exchange.clients.deactivate_client, org_id=org_id, client_id=client_id)
    w.request.app.state.principals.invalidate()
    return _state(change)


@router.post(
    "/organisations/{org_id}/clients/{client_id}/rotate-secret",
    dependencies=[Depends(RotateClientSecret)],
)
def rotate_client_secret(org_id: str, client_id: str, w: WriteDep) -> ClientState:
    """A new secret for a client (shown once); the old one and its logins stop working."""
    w.failing_as(Event.CLIENT_ROTATE_FAILED, client_id)
    secret = exchange.clients.new_client_secret()  # scrypt before the transaction
    change = w.run(
        exchange.clients.rotate_client_secret, org_id=org_id, client_id=client_id, secret=secret
    )
    w.request.app.state.principals.invalidate()
    return _state(change)

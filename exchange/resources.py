"""Policy resources and visibility rules: what the policy sees of each object, and who sees what.

Every `resource` object the enforcement point hands the decision point is built here
(policies/README.md, "Decision input"), from the same rows the operation then acts on,
so the routers and `gateway.pep` hold no ORM queries of their own. The visibility rules
(who may see an object outside a policy decision: its parties, and auditors and security
administrators everywhere) are written once here as well.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from crypto.models import DestroyRequestRecord
from exchange import people
from exchange.accounts import Caller, Role
from exchange.errors import NotFound
from exchange.market.agreements import agreement_for
from exchange.market.models import Agreement, Negotiation, Offer, Product
from exchange.models import Client, Computation, Contract, Dataset, Organisation, load_dataset
from exchange.timestamps import aware

__all__ = [
    "RequestInput",
    "account_resource",
    "agreement_resource",
    "approval_resources",
    "computation_resource",
    "contract_for",
    "contract_in_force",
    "contract_resource",
    "covering_view",
    "dataset_resource",
    "kms_resource",
    "listing_resource",
    "load_request_inputs",
    "negotiation_resource",
    "policy_resource",
    "product_resource",
    "sees_computation",
    "sees_dataset_digests",
    "sees_every_statement",
    "sees_everything",
]

_ACTIVE = "active"  # ContractStatus.ACTIVE (exchange.contracts builds on this module)
_OVERSEERS = frozenset({Role.AUDITOR, Role.SECURITY_ADMIN})


# -- visibility -------------------------------------------------------------------------------


def sees_everything(caller: Caller) -> bool:
    """Auditors and security administrators see every object (read-only oversight)."""
    return bool(caller.roles & _OVERSEERS)


def sees_every_statement(caller: Caller) -> bool:
    """Overseers and the system administrator (who settles) read every statement and dispute.

    Other callers read only the statements they are party to.
    """
    return sees_everything(caller) or "system-admin" in caller.roles


def sees_dataset_digests(caller: Caller, owner_org: str) -> bool:
    """A dataset's content digests are shown to its owner and to the overseers only."""
    return caller.org_id == owner_org or sees_everything(caller)


def sees_computation(caller: Caller, comp: Computation) -> bool:
    """A computation is seen by its requester, its inputs' providers and the overseers."""
    return (
        caller.org_id == comp.requester_org
        or any(i.provider_org == caller.org_id for i in comp.inputs)
        or sees_everything(caller)
    )


# -- datasets ---------------------------------------------------------------------------------


def dataset_resource(ds: Dataset) -> dict[str, Any]:
    """The dataset as the policy sees it."""
    return {
        "type": "dataset",
        "id": ds.id,
        "level": ds.level,
        "open_attribute": ds.open_attribute,
        "owner_org": ds.owner_org,
        "pi": ds.pi,
    }


def policy_resource(session: Session, dataset_id: str) -> dict[str, Any]:
    """The dataset as the policy sees it (policies/README.md, "Decision input")."""
    ds = load_dataset(session, dataset_id)
    return dataset_resource(ds)


# -- contracts --------------------------------------------------------------------------------


def contract_in_force(contract: Contract, now: datetime) -> bool:
    """Active and inside its validity window."""
    return contract.status == _ACTIVE and aware(contract.not_before) <= now < aware(
        contract.not_after
    )


def covering_view(covering: Contract | Agreement) -> dict[str, Any]:
    """The policy's `resource.contract` for an agreement or a deprecated contract.

    Times in epoch seconds; a contract's `agreement_id` stands as its DUA reference.
    """
    extra: dict[str, Any]
    if isinstance(covering, Agreement):
        status, dua = covering.state, covering.dua_reference
        extra = {"legal_basis": covering.legal_basis}
    else:
        status, dua, extra = covering.status, covering.agreement_id, {}
    return {
        "id": covering.id,
        "status": status,
        "consumer_org": covering.consumer_org,
        "provider_org": covering.provider_org,
        "datasets": list(covering.datasets),
        "purpose": covering.purpose,
        "dua_reference": dua,
        **extra,
        "not_before": int(aware(covering.not_before).timestamp()),
        "not_after": int(aware(covering.not_after).timestamp()),
    }


def contract_for(
    session: Session,
    *,
    consumer_org: str,
    dataset: Dataset,
    purpose: str,
    now: datetime,
    contract_id: str | None = None,
) -> Contract | None:
    """The contract to show the policy for one input of a computation.

    With `contract_id`, that contract (when the consumer is a party to it; the policy
    then checks the rest and says what fails). Otherwise the best candidate between
    the consumer and the dataset's provider: in force, covering the dataset and naming
    the purpose first, then active ones, then any, newest first; None when none exist.
    """
    if contract_id is not None:
        chosen = session.get(Contract, contract_id)
        if chosen is None or chosen.consumer_org != consumer_org:
            return None
        return chosen
    candidates: Sequence[Contract] = session.scalars(
        select(Contract)
        .where(
            Contract.consumer_org == consumer_org,
            Contract.provider_org == dataset.owner_org,
        )
        .order_by(Contract.proposed_at.desc())
    ).all()

    def rank(c: Contract) -> tuple[int, int, int, int]:
        return (
            int(contract_in_force(c, now)),
            int(dataset.id in c.datasets),
            int(c.purpose == purpose),
            int(c.status == _ACTIVE),
        )

    return max(candidates, key=rank, default=None)


def contract_resource(session: Session, contract_id: str, *, owner: str) -> dict[str, Any]:
    """A contract as the policy sees it when acted on; `owner` names the party that owns it."""
    contract = session.get(Contract, contract_id)
    if contract is None:
        raise NotFound("no such contract", contract_id=contract_id)
    return {
        "type": "contract",
        "id": contract.id,
        "owner_org": contract.provider_org if owner == "provider" else contract.consumer_org,
        "parties": sorted({contract.consumer_org, contract.provider_org}),
    }


# -- computations -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestInput:
    """One input of a computation request, loaded once: its dataset and covering agreement.

    `contract` is a market agreement (exchange.market) or, while contracts are deprecated,
    a contract; the policy sees either as `resource.contract`.
    """

    dataset: Dataset
    contract: Contract | Agreement | None
    resource: dict[str, Any]


def load_request_inputs(
    session: Session,
    caller: Caller,
    *,
    inputs: Sequence[str],
    purpose: str,
    contract_id: str | None,
    now: datetime,
) -> list[RequestInput]:
    """Each distinct input dataset and its covering contract, loaded once, with its resource.

    Loaded in the caller's transaction, so the policy decides on the rows the request
    then writes (no second load for the time of use).
    """
    out = []
    for dataset_id in dict.fromkeys(inputs):
        ds = load_dataset(session, dataset_id, fields=True)
        resource = dataset_resource(ds)
        covering = agreement_for(
            session,
            consumer_org=caller.org_id,
            dataset=ds,
            purpose=purpose,
            now=now,
            agreement_id=contract_id,
        )
        if covering is not None:
            resource["contract"] = covering_view(covering)
        out.append(RequestInput(ds, covering, resource))
    return out


def approval_resources(
    session: Session, caller: Caller, computation_id: str
) -> list[dict[str, Any]]:
    """The caller's organisation's inputs to a computation, as `computation.approve` sees them."""
    comp = session.get(Computation, computation_id, options=[selectinload(Computation.inputs)])
    if comp is None:
        raise NotFound("no such computation", computation_id=computation_id)
    out = []
    for inp in comp.inputs:
        if inp.provider_org != caller.org_id:
            continue
        ds = session.get(Dataset, inp.dataset_id)
        assert ds is not None
        resource = dataset_resource(ds)
        resource["computation"] = {"id": comp.id, "requester_org": comp.requester_org}
        out.append(resource)
    return out


def computation_resource(session: Session, computation_id: str) -> dict[str, Any]:
    """A computation as the policy sees it when read: its owner and every party to it."""
    comp = session.get(Computation, computation_id)
    if comp is None:
        raise NotFound("no such computation", computation_id=computation_id)
    parties = [comp.requester_org, *(i.provider_org for i in comp.inputs)]
    return {
        "type": "computation",
        "id": comp.id,
        "owner_org": comp.requester_org,
        "parties": sorted(set(parties)),
    }


# -- the market (exchange.market) ----------------------------------------------------------


def listing_resource(session: Session, product_id: str) -> dict[str, Any]:
    """The product as `market.list` sees it: provenance, delivery, offers, datasets' grades."""
    product = session.get(Product, product_id)
    if product is None:
        raise NotFound("no such product", product_id=product_id)
    prov = product.provenance or {}
    datasets = session.scalars(select(Dataset).where(Dataset.id.in_(product.datasets))).all()
    return {
        "type": "product",
        "id": product.id,
        "owner_org": product.provider_org,
        "provenance": bool(prov.get("statement")) and bool(prov.get("evidence")),
        "delivery_modes": list(product.delivery_modes),
        "offers": [
            {"id": o.id, "delivery": o.terms["delivery"]}
            for o in session.scalars(
                select(Offer)
                .where(Offer.product_id == product.id)
                .order_by(Offer.created_at, Offer.id)
            )
        ],
        "datasets": [
            {"id": d.id, "level": d.level, "open_attribute": d.open_attribute, "pi": d.pi}
            for d in datasets
        ],
    }


def product_resource(session: Session, product_id: str) -> dict[str, Any]:
    """A product as the policy sees it when its provider acts on it."""
    product = session.get(Product, product_id)
    if product is None:
        raise NotFound("no such product", product_id=product_id)
    return {"type": "product", "id": product.id, "owner_org": product.provider_org}


def negotiation_resource(session: Session, negotiation_id: str) -> dict[str, Any]:
    """A negotiation as the policy sees it: its two parties."""
    n = session.get(Negotiation, negotiation_id)
    if n is None:
        raise NotFound("no such negotiation", negotiation_id=negotiation_id)
    return {"type": "negotiation", "id": n.id, "parties": sorted({n.consumer_org, n.provider_org})}


def agreement_resource(session: Session, agreement_id: str) -> dict[str, Any]:
    """An agreement as the policy sees it when read: its two parties."""
    a = session.get(Agreement, agreement_id)
    if a is None:
        raise NotFound("no such agreement", agreement_id=agreement_id)
    return {"type": "agreement", "id": a.id, "parties": sorted({a.consumer_org, a.provider_org})}


# -- keys ---------------------------------------------------------------------------------------


def kms_resource(
    session: Session,
    *,
    approving: str | None = None,
    approver: str | None = None,
    approver_client: str | None = None,
) -> dict[str, Any]:
    """The KMS as the policy sees it, with who asked for the destruction being approved.

    `approving` names a pending destruction request, `approver` the person deciding it
    and `approver_client` the client they act through; policies/sod.rego refuses its
    second half unless a distinct person stands behind it, and neither is in the other's
    lineage (`people.dual_control_lineages`).
    """
    resource: dict[str, Any] = {"type": "kms"}
    if approving is not None:
        record = session.get(DestroyRequestRecord, approving)
        requester = record.requested_by_person if record else None
        resource["dual_control"] = {
            "requested_by": record.requested_by if record else None,
            "requested_by_person": requester,
            "requested_by_created_by": record.requested_by_sponsor if record else None,
            **people.dual_control_lineages(
                session,
                requester=requester,
                approver=approver,
                requester_client=record.requested_by if record else None,
                approver_client=approver_client,
            ),
        }
    return resource


# -- accounts ---------------------------------------------------------------------------------


def account_resource(
    session: Session,
    kind: str,
    org_id: str,
    *,
    roles: Sequence[str] = (),
    client_id: str | None = None,
) -> dict[str, Any]:
    """An account or person (`kind`) as the policy sees it: its org's kind, owner and roles.

    With `client_id`, that client of the organisation and its roles; an unknown
    organisation or client gives an owner-less resource the policy refuses.
    """
    unknown: dict[str, Any] = {"type": kind, "org_kind": None, "owner_org": None, "roles": []}
    org = session.get(Organisation, org_id)
    if org is None:
        return unknown
    if client_id is not None:
        client = session.get(Client, client_id)
        if client is None or client.org_id != org.id:
            return unknown
        roles = list(client.roles)
    return {"type": kind, "org_kind": org.kind, "owner_org": org.id, "roles": list(roles)}

"""Data products: a provider packages datasets with provenance, rights and ODRL offers.

A product is made as a `draft`; it is `listed` only after the compliance pre-check
passes. The pre-check is the policy's (`market.list`, policies/market.rego) on the
resource built here (`listing_resource`); its decision and the facts it saw are
attached to the product. Every transition is an audit record and a ledger entry in the
transaction that makes it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from audit.catalogue import Event
from exchange.accounts import Caller, OrgKind, Role
from exchange.errors import Conflict, InvalidInput, NotFound
from exchange.levels import Level
from exchange.market._common import ZTime, offset_page, record, z
from exchange.market.models import Offer, Product, ProductOperator
from exchange.market.odrl import Delivery, Terms, odrl_policy, yuan
from exchange.market.search import index_product, index_tokens
from exchange.models import Dataset, Organisation
from exchange.resources import listing_resource
from exchange.trail import Trail
from exchange.views import row_values

__all__ = [
    "OfferPublic",
    "ProductCreate",
    "ProductPublic",
    "ProductState",
    "Provenance",
    "Rights",
    "create_product",
    "get_product",
    "list_product",
    "list_own_products",
    "offer_public",
    "product_public",
]

MAX_DATASETS = 32


class ProductState(StrEnum):
    DRAFT = "draft"
    LISTED = "listed"


class Right(StrEnum):
    """The three rights of 数据二十条 (2022): held and granted, per product and agreement."""

    HOLDING = "holding"  # 数据资源持有权
    PROCESSING_USE = "processing_use"  # 数据加工使用权
    PRODUCT_OPERATION = "product_operation"  # 数据产品经营权


class Evidence(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    kind: str = Field(min_length=2, max_length=64, description="e.g. collection-notice, licence")
    reference: str = Field(min_length=2, max_length=500)
    digest: str = Field(
        pattern=r"^(sha256|sm3):[0-9a-f]{64}$",
        description="the document's digest (DSL art. 33: evidence is documents and their digests)",
    )


class Provenance(BaseModel):
    """Where the data comes from (DSL art. 33), with the evidence for it."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    statement: str = Field(min_length=10, max_length=4000)
    evidence: list[Evidence] = Field(min_length=1, max_length=32)


class Rights(BaseModel):
    model_config = ConfigDict(extra="forbid")

    held: list[Right] = Field(min_length=1)
    granted: list[Right] = Field(min_length=1)


class ProductCreate(BaseModel):
    """What a provider packages."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: str = Field(min_length=2, max_length=200)
    description: str = Field(min_length=2, max_length=8000)
    domain: str = Field(min_length=2, max_length=64)
    keywords: list[str] = Field(default_factory=list, max_length=32)
    datasets: list[str] = Field(min_length=1, max_length=MAX_DATASETS)
    provenance: Provenance | None = None
    rights: Rights
    delivery_modes: list[Delivery] = Field(min_length=1, max_length=2)
    offers: list[Terms] = Field(default_factory=list, max_length=16)


class OfferPublic(BaseModel):
    id: str
    terms: dict[str, Any]
    policy: dict[str, Any] = Field(description="the ODRL 2.2 offer (JSON-LD)")


class ProductPublic(BaseModel):
    id: str
    state: ProductState
    provider_org: str
    provider_name: str
    title: str
    description: str
    domain: str
    keywords: list[str]
    datasets: list[str]
    grade: str
    provenance: dict[str, Any] | None
    rights: dict[str, Any]
    delivery_modes: list[str]
    offers: list[OfferPublic]
    min_price: str | None = Field(description="lowest offer price, CNY")
    precheck: dict[str, Any] | None
    created_at: ZTime
    listed_at: ZTime | None
    ledger_index: int | None = None


def offer_public(offer: Offer) -> OfferPublic:
    return OfferPublic(id=offer.id, terms=offer.terms, policy=offer.policy)


def _offers(session: Session, product_id: str) -> list[Offer]:
    return list(
        session.scalars(
            select(Offer).where(Offer.product_id == product_id).order_by(Offer.created_at, Offer.id)
        )
    )


def product_public(
    product: Product, offers: list[Offer], *, ledger_index: int | None = None
) -> ProductPublic:
    return ProductPublic.model_validate(
        {
            **row_values(ProductPublic, product),
            "offers": [offer_public(o) for o in offers],
            "min_price": yuan(product.min_price_fen) if product.min_price_fen is not None else None,
            "ledger_index": ledger_index,
        }
    )


def _add_offer(session: Session, product: Product, terms: Terms, now: datetime) -> Offer:
    offer_id = str(uuid.uuid4())
    offer = Offer(
        id=offer_id,
        product_id=product.id,
        terms=terms.model_dump(mode="json"),
        policy=odrl_policy(
            terms,
            policy_type="odrl:Offer",
            uid=f"urn:uuid:{offer_id}",
            target=f"urn:uuid:{product.id}",
            assigner=f"urn:uuid:{product.provider_org}",
        ),
        created_at=now,
    )
    session.add(offer)
    return offer


def create_product(
    session: Session, caller: Caller, body: ProductCreate, *, now: datetime, trail: Trail
) -> ProductPublic:
    """A provider packages some of its datasets into a draft product with offers."""
    caller.require_as(Role.DATA_PROVIDER, OrgKind.PROVIDER, "only a provider packages products")
    wanted = list(dict.fromkeys(body.datasets))
    found = {
        d.id: d
        for d in session.scalars(
            select(Dataset).where(Dataset.id.in_(wanted), Dataset.owner_org == caller.org_id)
        )
    }
    missing = [d for d in wanted if d not in found]
    if missing:
        raise InvalidInput(
            "every dataset must be the provider's own", field="datasets", datasets=missing
        )
    datasets = [found[d] for d in wanted]
    org = session.get(Organisation, caller.org_id)
    assert org is not None
    product = Product(
        id=str(uuid.uuid4()),
        provider_org=org.id,
        provider_name=org.name,
        title=body.title,
        description=body.description,
        domain=body.domain,
        keywords=list(body.keywords),
        datasets=wanted,
        grade=max((Level(d.level) for d in datasets), key=lambda lv: lv.rank).value,
        open_data=int(all(d.open_attribute == "open" for d in datasets)),
        provenance=body.provenance.model_dump(mode="json") if body.provenance else None,
        rights=body.rights.model_dump(mode="json"),
        delivery_modes=[m.value for m in body.delivery_modes],
        state=ProductState.DRAFT.value,
        precheck=None,
        min_price_fen=min((t.price_fen for t in body.offers), default=None),
        search_tokens=index_tokens(body.title, body.description, " ".join(body.keywords), org.name),
        created_by=caller.client_id,
        created_at=now,
    )
    session.add(product)
    session.flush()
    offers = [_add_offer(session, product, terms, now) for terms in body.offers]
    for op in sorted({o for t in body.offers for o in t.operators}):
        session.add(ProductOperator(product_id=product.id, operator=op))
    index = record(
        session, trail, caller, Event.MARKET_PRODUCT_CREATED, "create", row=product,
        object_type="product", object_id=product.id, now=now,
        detail=f"datasets={len(wanted)} offers={len(offers)} grade={product.grade}",
    ).ledger_index  # fmt: skip
    return product_public(product, offers, ledger_index=index)


def list_product(
    session: Session,
    caller: Caller,
    product_id: str,
    *,
    decision_id: str | None,
    checked: dict[str, Any],
    now: datetime,
    trail: Trail,
) -> ProductPublic:
    """Publish a product whose pre-check (`market.list`) the policy passed; attach the result."""
    product = session.get(Product, product_id, with_for_update=True)
    if product is None or product.provider_org != caller.org_id:
        raise NotFound("no such product", product_id=product_id)
    if product.state != ProductState.DRAFT:
        raise Conflict(f"the product is {product.state}, not draft", product_state=product.state)
    if listing_resource(session, product_id) != checked:
        raise Conflict("the product changed while it was checked; list it again")
    product.state = ProductState.LISTED.value
    product.listed_at = now
    product.precheck = {
        "passed": True,
        "decision_id": decision_id,
        "at": z(now),
        "checked": {
            "provenance": checked["provenance"],
            "delivery_modes": sorted(
                {*checked["delivery_modes"], *(o["delivery"] for o in checked["offers"])}
            ),
            "datasets": checked["datasets"],
        },
    }
    index_product(session, product)
    receipt = record(
        session, trail, caller, Event.MARKET_PRODUCT_LISTED, "list",
        object_type="product", object_id=product.id, now=now,
        detail=f"decision={decision_id} grade={product.grade}",
    )  # fmt: skip
    return product_public(product, _offers(session, product.id), ledger_index=receipt.ledger_index)


def get_product(session: Session, caller: Caller, product_id: str) -> ProductPublic:
    """A listed product for anyone the catalog serves; a draft for its provider only."""
    product = session.get(Product, product_id)
    if product is None or (
        product.state != ProductState.LISTED and product.provider_org != caller.org_id
    ):
        raise NotFound("no such product", product_id=product_id)
    return product_public(product, _offers(session, product.id))


def list_own_products(
    session: Session, caller: Caller, *, limit: int, offset: int
) -> tuple[list[ProductPublic], int]:
    """The caller's organisation's own products, drafts included, newest first."""
    stmt = select(Product).where(Product.provider_org == caller.org_id)
    order = (Product.created_at.desc(), Product.id)
    rows, total = offset_page(session, stmt, order, limit=limit, offset=offset)
    return [product_public(p, _offers(session, p.id)) for p in rows], total

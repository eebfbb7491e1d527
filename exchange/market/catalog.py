"""The DCAT-shaped market catalog: listed products, searched and paginated with totals.

`GET /v1/catalog` and the DSP catalog request both answer from `search_catalog`:
keyword (Chinese-aware full text, exchange.market.search), domain, grade, provider
(id or exact name), operator, maximum price. Pages are keyset-paginated on
(listed_at, id) with an opaque cursor; `total` counts every match.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import defaultdict
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

from pydantic import BaseModel, Field
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from exchange.errors import InvalidInput
from exchange.market._common import z
from exchange.market.models import Offer, Product, ProductOperator
from exchange.market.odrl import DSP_CONTEXT, fen, yuan
from exchange.market.search import count_in_index, facet_terms, query_tokens, restrict

__all__ = ["CatalogQuery", "dsp_catalog", "search_catalog"]


class CatalogQuery(BaseModel):
    q: str | None = Field(default=None, max_length=200)
    domain: str | None = Field(default=None, max_length=64)
    grade: str | None = Field(default=None, max_length=16)
    provider: str | None = Field(default=None, max_length=200)
    operator: str | None = Field(default=None, max_length=64)
    max_price: str | None = Field(default=None, max_length=20, description="CNY")
    limit: int = Field(default=20, ge=1, le=100)
    cursor: str | None = Field(default=None, max_length=200)


def _cursor(listed_at: datetime, product_id: str) -> str:
    raw = json.dumps([listed_at.isoformat(), product_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _uncursor(cursor: str) -> tuple[datetime, str]:
    try:
        at, pid = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return datetime.fromisoformat(at), str(pid)
    except (ValueError, TypeError, binascii.Error):
        raise InvalidInput("malformed cursor", field="cursor") from None


def _item(p: Product, offers: list[Offer]) -> dict[str, Any]:
    return {
        "@id": f"urn:uuid:{p.id}",
        "@type": "dcat:Dataset",
        "id": p.id,
        "dct:title": p.title,
        "dct:description": p.description,
        "dcat:keyword": list(p.keywords),
        "dcat:theme": p.domain,
        "title": p.title,
        "description": p.description,
        "domain": p.domain,
        "keywords": list(p.keywords),
        "grade": p.grade,
        "provider_org": p.provider_org,
        "provider_name": p.provider_name,
        "delivery_modes": list(p.delivery_modes),
        "rights": p.rights,
        "min_price": yuan(p.min_price_fen) if p.min_price_fen is not None else None,
        "listed_at": z(p.listed_at),
        "odrl:hasPolicy": [o.policy for o in offers],
        "offers": [{"id": o.id, "terms": o.terms} for o in offers],
    }


def search_catalog(session: Session, query: CatalogQuery, *, path: str) -> dict[str, Any]:
    """One page of listed products matching `query`, with the total and the next page's URL."""
    where: list[Any] = [Product.state == "listed"]
    terms = query_tokens(query.q) if query.q else []
    if query.domain:
        where.append(Product.domain == query.domain)
    if query.grade:
        where.append(Product.grade == query.grade)
    if query.provider:
        where.append(
            or_(Product.provider_org == query.provider, Product.provider_name == query.provider)
        )
    if query.operator:
        where.append(
            Product.id.in_(
                select(ProductOperator.product_id).where(ProductOperator.operator == query.operator)
            )
        )
    if query.max_price is not None:
        try:
            cap = fen(Decimal(query.max_price))
        except (InvalidOperation, ValueError):
            raise InvalidInput("max_price is a CNY amount", field="max_price") from None
        where.append(Product.min_price_fen <= cap)
    counted = select(func.count()).select_from(Product).where(*where)
    page = select(Product).where(*where)
    total: int | None = None
    if terms:
        # State, domain and grade are index terms too: the match is narrowed before any
        # product is looked up, and without other filters the index alone counts.
        facets = facet_terms(state="listed", domain=query.domain, grade=query.grade)
        if not (query.provider or query.operator or query.max_price is not None):
            total = count_in_index(session, terms, facets)
        counted = restrict(session, counted, terms, facets)
        page = restrict(session, page, terms, facets)
    if total is None:
        total = session.scalar(counted) or 0
    if query.cursor:
        at, pid = _uncursor(query.cursor)
        page = page.where(
            or_(Product.listed_at < at, and_(Product.listed_at == at, Product.id < pid))
        )
    products = list(
        session.scalars(
            page.order_by(Product.listed_at.desc(), Product.id.desc()).limit(query.limit + 1)
        )
    )
    more = len(products) > query.limit
    products = products[: query.limit]
    offers: dict[str, list[Offer]] = defaultdict(list)
    if products:
        for o in session.scalars(
            select(Offer)
            .where(Offer.product_id.in_([p.id for p in products]))
            .order_by(Offer.created_at, Offer.id)
        ):
            offers[o.product_id].append(o)
    next_url = None
    if more and products and products[-1].listed_at is not None:
        params = {
            k: v
            for k, v in query.model_dump(exclude={"cursor"}).items()
            if v is not None and k != "limit"
        }
        params["limit"] = query.limit
        params["cursor"] = _cursor(products[-1].listed_at, products[-1].id)
        next_url = f"{path}?{urlencode(params)}"
    return {
        "@context": DSP_CONTEXT,
        "@type": "dcat:Catalog",
        "items": [_item(p, offers[p.id]) for p in products],
        "total": total,
        "next": next_url,
    }


def dsp_catalog(session: Session, message: dict[str, Any], *, participant: str) -> dict[str, Any]:
    """Answer a DSP `CatalogRequestMessage` (its `filter` takes the catalog's query fields)."""
    if message.get("@type") not in ("CatalogRequestMessage", "dspace:CatalogRequestMessage"):
        raise InvalidInput("expected a CatalogRequestMessage", field="@type")
    raw = message.get("filter") or {}
    if not isinstance(raw, dict):
        raise InvalidInput("filter must be an object", field="filter")
    try:
        query = CatalogQuery.model_validate(raw)
    except ValueError:
        raise InvalidInput("filter has unknown or malformed fields", field="filter") from None
    page = search_catalog(session, query, path="/v1/catalog")
    return {
        "@context": DSP_CONTEXT,
        "@type": "dcat:Catalog",
        "dspace:participantId": participant,
        "dcat:dataset": page["items"],
        "pdx:total": page["total"],
        "pdx:next": page["next"],
    }

"""Market pages for the provider: products with provenance and offers, the pre-check, deals.

Each action is its /v1 route (`ctx.api`): creating a product is `POST /v1/market/products`,
listing it is `POST /v1/market/products/{id}/list`, where the policy's compliance
pre-check decides; its result (or its refusal) is what the page shows.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from starlette.datastructures import FormData

from gateway.console import market_views as mv
from gateway.console import reads
from gateway.console.core import BASE, Ctx, Refusal, signed_in
from gateway.console.pages_parties import OPERATORS_TTL

router = APIRouter()
Provider = Annotated[Ctx, Depends(signed_in("provider"))]

RIGHTS = ("holding", "processing_use", "product_operation")
DELIVERY = ("computation", "download")
PRICE_MODELS = ("free", "per_computation", "per_1k_rows", "subscription")


async def _list(ctx: Ctx, path: str, limit: int = 100) -> list[dict[str, Any]]:
    found = reads.items(await ctx.get_json(path, query={"limit": limit}))
    return [reads.normalised(i) for i in found]


@router.get("/provider/market")
async def provider_market(ctx: Provider) -> Response:
    org = ctx.person.org_id
    datasets = reads.items(
        await ctx.get_json("/v1/datasets", query={"owner_org": org, "limit": 200})
    )

    async def read_operators() -> list[dict[str, Any]] | None:
        body = await ctx.get_json("/v1/operators")
        return None if body is None else reads.items(body)

    # The same per-session cache as the request form's (the catalogue changes per release).
    operators = await ctx.remembered("operators", OPERATORS_TTL, read_operators) or []
    negotiations = await _list(ctx, "/v1/market/negotiations")
    # ε spent on its own datasets over time, by every requester (a provider sees them all).
    computations = reads.items(await ctx.get_json("/v1/computations", query={"limit": 200}))
    own = {d["id"]: str(d.get("name", d["id"])) for d in datasets if "id" in d}
    series = mv.epsilon_by_dataset(computations, only=set(own))
    return ctx.render(
        "market_provider.html",
        title=ctx.t("market_provider_title"),
        products=await _list(ctx, "/v1/market/products"),
        datasets=datasets,
        operators=[o["name"] for o in operators if "name" in o],
        waiting=mv.waiting_for(negotiations, org),
        negotiations=negotiations,
        agreements=[
            {**a, "meters": mv.meters(a)} for a in await _list(ctx, "/v1/market/agreements")
        ],
        statements=await _list(ctx, "/v1/market/statements"),
        disputes=await _list(ctx, "/v1/market/disputes"),
        plot=mv.epsilon_plot(ctx.t("plot_epsilon"), series, own),
        rights=RIGHTS,
        delivery=DELIVERY,
        price_models=PRICE_MODELS,
    )


def product_from_form(form: FormData) -> dict[str, Any]:
    """The product body `POST /v1/market/products` takes, from the console's form.

    Only reshaping (lists from lines and checkboxes, empty optional fields left out); the
    server validates every field and answers a problem the page shows.
    """

    def text(name: str) -> str:
        value = form.get(name)
        return value.strip() if isinstance(value, str) else ""

    def checked(name: str) -> list[str]:
        return [v for v in form.getlist(name) if isinstance(v, str) and v]

    def lines(name: str) -> list[str]:
        return [p.strip() for p in text(name).replace(",", "\n").splitlines() if p.strip()]

    terms: dict[str, Any] = {
        "delivery": text("offer_delivery") or "computation",
        "operators": checked("offer_operators"),
        "purposes": lines("offer_purposes"),
        "price_model": text("price_model") or "free",
        "price": text("price") or "0",
    }
    for key in ("duration_days", "max_computations", "max_rows", "period_days"):
        if text(key):
            terms[key] = text(key)
    if text("epsilon_share"):
        terms["epsilon_share"] = text("epsilon_share")
    body: dict[str, Any] = {
        "title": text("title"),
        "description": text("description"),
        "domain": text("domain"),
        "keywords": lines("keywords"),
        "datasets": checked("datasets"),
        "rights": {"held": checked("rights_held"), "granted": checked("rights_granted")},
        "delivery_modes": checked("delivery_modes"),
        "offers": [terms],
    }
    if text("provenance_statement") or text("evidence_reference"):
        body["provenance"] = {
            "statement": text("provenance_statement"),
            "evidence": [
                {
                    "kind": text("evidence_kind"),
                    "reference": text("evidence_reference"),
                    "digest": text("evidence_digest"),
                }
            ],
        }
    return body


@router.post("/provider/market/products")
async def create_product(ctx: Provider) -> Response:
    """POST /v1/market/products: a draft with provenance, rights and one offer."""
    body = product_from_form(await ctx.request.form())
    answer = await ctx.api("POST", "/v1/market/products", json_body=body)
    if not answer.ok:
        ctx.session.flash.append(answer.problem())
        return ctx.redirect(f"{BASE}/provider/market")
    ctx.session.flash.append(ctx.t("product_created"))
    return ctx.redirect(f"{BASE}/provider/market/products/{answer.json()['id']}")


@router.get("/provider/market/products/{product_id}")
async def product_page(product_id: str, ctx: Provider) -> Response:
    product = await ctx.get_json(f"/v1/market/products/{product_id}")
    if product is None or product.get("provider_org") != ctx.person.org_id:
        raise Refusal(404, ctx.t("not_found"))
    return ctx.render(
        "market_product.html", title=product["title"], product=product, side="provider"
    )


@router.post("/provider/market/products/{product_id}/list")
async def list_product(product_id: str, ctx: Provider) -> Response:
    """The compliance pre-check (`market.list`): listed with its result, or refused with why."""
    answer = await ctx.api("POST", f"/v1/market/products/{product_id}/list")
    if answer.ok:
        ctx.session.flash.append(ctx.t("precheck_passed"))
    else:
        ctx.session.flash.append(ctx.t("precheck_refused", reason=answer.problem()))
    return ctx.redirect(f"{BASE}/provider/market/products/{product_id}")

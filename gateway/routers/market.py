"""/v1/market products, listing, certificates and parties; /v1/catalog and the DSP catalog.

Thin: each route decides its policy action, opens the transaction and calls
`exchange.market`. Listing is the policy's compliance pre-check (`market.list`,
policies/market.rego), decided inside the transaction that publishes the product.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.orm import Session

import crypto
import exchange
from audit.catalogue import Event
from exchange import market, resources
from exchange.market import certificates as xcert
from exchange.market import parties as xparty
from exchange.market import products as xprod
from exchange.market.models import Product
from gateway.pep import Deferred, Enforce, Target, path_resource
from gateway.platform import Platform
from gateway.security import CallerDep, PlatformDep, SessionDep
from gateway.writes import WriteDep

router = APIRouter(tags=["market"])

FAILED = Event.MARKET_OPERATION_FAILED


def platform_signer(platform: Platform, session: Session) -> market.settlement.Signer:
    """Sign with the platform's ledger key (KMS); returns the signer's public facts too."""
    signer = platform.keystore.signer(
        session, purpose=crypto.KeyPurpose.LEDGER_SIGNING, now=platform.now()
    )
    facts = {
        "algorithm": signer.signature_algorithm.value,
        "kid": signer.kid,
        "public_key": base64.b64encode(signer.public_key).decode(),
    }

    def sign(message: bytes) -> tuple[bytes, dict[str, str]]:
        return signer.sign(message), facts

    return sign


def _own(kind: str) -> Any:
    def targets(
        request: Request, caller: exchange.Caller, platform: Platform, session: Session
    ) -> list[Target]:
        return [Target({"type": kind, "owner_org": caller.org_id})]

    return targets


_product_owner = path_resource(resources.product_resource, "product_id")


def _party(
    request: Request, caller: exchange.Caller, platform: Platform, session: Session
) -> list[Target]:
    return [Target({"type": "party", "owner_org": request.path_params["org_id"]})]


CreateProduct = Enforce("market.product", resources=_own("product"))
ListProduct = Enforce("market.list", deferred=True)
Certify = Enforce("market.certificate", resources=_product_owner)
ReadCatalog = Enforce("catalog.read")
VerifyParty = Enforce("market.party_verify")
RegisterKey = Enforce("market.key_register", resources=_party)


@router.post("/v1/market/products", status_code=201, dependencies=[Depends(CreateProduct)])
def create_product(body: market.ProductCreate, w: WriteDep) -> market.ProductPublic:
    """A provider packages datasets with provenance, rights and ODRL offers (a draft)."""
    return w.failing_as(FAILED).run(xprod.create_product, body)


@router.post("/v1/market/products/{product_id}/list")
def list_product(
    product_id: str, w: WriteDep, gate: Annotated[Deferred, Depends(ListProduct)]
) -> market.ProductPublic:
    """Run the compliance pre-check (policy `market.list`) and publish the product if it passes.

    Refusals name what failed: no provenance, a download offer on data that is not
    open, personal information offered for download, closed data.
    """
    w.request.state.object_id = product_id
    with w.session.begin():
        w.session.get(Product, product_id, with_for_update=True)
        checked = resources.listing_resource(w.session, product_id)
        decision = gate.decide([Target(checked)])
        w.failing_as(FAILED)
        return xprod.list_product(
            w.session, w.caller, product_id, decision_id=decision.decision_id, checked=checked,
            now=w.now, trail=w.platform.trail,
        )  # fmt: skip


@router.get("/v1/market/products/{product_id}", dependencies=[Depends(ReadCatalog)])
def get_product(product_id: str, caller: CallerDep, session: SessionDep) -> market.ProductPublic:
    return xprod.get_product(session, caller, product_id)


@router.post(
    "/v1/market/products/{product_id}/certificate",
    status_code=201,
    dependencies=[Depends(Certify)],
)
def issue_certificate(product_id: str, w: WriteDep) -> dict[str, Any]:
    """A data-asset registration certificate for a listed product, signed and on the ledger."""
    w.failing_as(FAILED)
    with w.session.begin():
        sign = platform_signer(w.platform, w.session)
        return xcert.issue_certificate(
            w.session, w.caller, product_id, sign=sign, now=w.now, trail=w.platform.trail
        )


@router.get("/v1/market/certificates/{certificate_id}", dependencies=[Depends(ReadCatalog)])
def get_certificate(
    certificate_id: str, platform: PlatformDep, session: SessionDep
) -> dict[str, Any]:
    """The certificate with its ledger leaf, inclusion proof and checkpoint (once sealed).

    Verify it offline: `pdx market certificate verify FILE --verifier-key KEY`.
    """
    return xcert.certificate_bundle(
        session, platform.ledger, certificate_id, hash_name=platform.settings.ledger_hash
    )


@router.post("/v1/market/parties/{org_id}/verify", dependencies=[Depends(VerifyParty)])
def verify_party(org_id: str, body: xparty.VerifyParty, w: WriteDep) -> xparty.PartyPublic:
    """The operator records that it verified an organisation's identity (DSL art. 33)."""
    return w.failing_as(FAILED).run(xparty.verify_party, org_id, body)


@router.post(
    "/v1/market/parties/{org_id}/keys", status_code=201, dependencies=[Depends(RegisterKey)]
)
def register_key(org_id: str, body: xparty.KeyCreate, w: WriteDep) -> xparty.PartyPublic:
    """A party registers the public half of a key it signs agreements with."""
    return w.failing_as(FAILED).run(xparty.register_key, org_id, body)


@router.get("/v1/market/parties/{org_id}", dependencies=[Depends(ReadCatalog)])
def get_party(org_id: str, session: SessionDep) -> xparty.PartyPublic:
    return xparty.get_party(session, org_id)


@router.get("/v1/catalog", dependencies=[Depends(ReadCatalog)])
def catalog(
    session: SessionDep,
    q: Annotated[str | None, Query(max_length=200)] = None,
    domain: Annotated[str | None, Query(max_length=64)] = None,
    grade: Annotated[str | None, Query(max_length=16)] = None,
    provider: Annotated[str | None, Query(max_length=200)] = None,
    operator: Annotated[str | None, Query(max_length=64)] = None,
    max_price: Annotated[str | None, Query(max_length=20)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    """Listed data products (DCAT), searched and paginated: `{items, total, next}`.

    Search by keyword (Chinese full text), domain, grade, provider (id or name),
    operator and maximum price (CNY).
    """
    query = market.CatalogQuery(
        q=q, domain=domain, grade=grade, provider=provider, operator=operator,
        max_price=max_price, limit=limit, cursor=cursor,
    )  # fmt: skip
    with session.begin():
        return market.search_catalog(session, query, path="/v1/catalog")


@router.post("/v1/dsp/catalog/request", dependencies=[Depends(ReadCatalog)])
def dsp_catalog_request(
    message: dict[str, Any], platform: PlatformDep, session: SessionDep
) -> dict[str, Any]:
    """Dataspace Protocol catalog request (`CatalogRequestMessage`): the DCAT catalog."""
    with session.begin():
        return market.dsp_catalog(session, message, participant=platform.settings.ledger_origin)

"""The data market: products, ODRL offers, catalog, DSP negotiation, agreements, settlement."""

from exchange.errors import AgreementExhausted, OutsideAgreement, PartyNotVerified
from exchange.market import (
    agreements,
    catalog,
    certificates,
    negotiation,
    parties,
    products,
    search,
    settlement,
)
from exchange.market.agreements import AgreementPublic, meter_computation
from exchange.market.catalog import CatalogQuery, dsp_catalog, search_catalog
from exchange.market.certificates import CertificateInvalid, verify_certificate
from exchange.market.negotiation import NegotiationCreate, NegotiationPublic, SignIn
from exchange.market.odrl import Terms
from exchange.market.parties import KeyCreate, PartyPublic, VerifyParty
from exchange.market.products import ProductCreate, ProductPublic
from exchange.market.settlement import DisputeCreate, SettlementCreate

__all__ = [
    "AgreementExhausted",
    "AgreementPublic",
    "CatalogQuery",
    "CertificateInvalid",
    "DisputeCreate",
    "KeyCreate",
    "NegotiationCreate",
    "NegotiationPublic",
    "OutsideAgreement",
    "PartyNotVerified",
    "PartyPublic",
    "ProductCreate",
    "ProductPublic",
    "SettlementCreate",
    "SignIn",
    "Terms",
    "VerifyParty",
    "agreements",
    "catalog",
    "certificates",
    "dsp_catalog",
    "meter_computation",
    "negotiation",
    "parties",
    "products",
    "search",
    "search_catalog",
    "settlement",
    "verify_certificate",
]

"""The market verbs of each role: parties and keys, products, catalog, negotiation, settlement.

Mixed into the role objects (`pdx_client.roles`): a `Provider` packages and lists products,
offers terms, signs and finalizes agreements; an `Enterprise` searches the catalog,
requests and counters offers, accepts and countersigns, computes under its agreement;
both read their usage and statements and open disputes; an `Auditor` reads; an
`Operator` verifies parties and settles. Agreement documents are signed here, with the
party's own key (`pdx_client.partykeys`), after the digest was recomputed here from the
document: a party signs only what it has checked.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pdx_client._pages import read_page
from pdx_client.canonical import digest_of
from pdx_client.certificates import verify_certificate
from pdx_client.errors import PdxError, VerificationError
from pdx_client.market_models import (
    CatalogItem,
    CatalogPage,
    Certificate,
    Dispute,
    MarketAgreement,
    Negotiation,
    Party,
    Product,
    Settlement,
    Statement,
    Usage,
)
from pdx_client.partykeys import PartyKey
from pdx_client.session import Session

if TYPE_CHECKING:
    from pdx_client.jobkeys import JobKey
    from pdx_client.models import ComputationResult, Me

__all__ = ["AuditorMarket", "EnterpriseMarket", "OperatorMarket", "ProviderMarket"]

MARKET = "/v1/market"
NEGOTIATIONS = f"{MARKET}/negotiations"
PROBLEMS = "https://pdx.dev/problems/"


def _problem(code: str, detail: str, title: str, **ext: Any) -> PdxError:
    return PdxError(detail, type=PROBLEMS + code, title=title, extensions=ext)


class _MarketReader:
    """What every role reads of the market (an auditor reads everyone's)."""

    session: Session
    party_key: PartyKey | None = None

    if TYPE_CHECKING:

        def me(self) -> Me: ...

    def party(self, org_id: str | None = None) -> Party:
        """A party's verification and registered public keys (default: this organisation)."""
        org = org_id or self.me().org_id
        return Party.model_validate(self.session.get(f"{MARKET}/parties/{org}"))

    def catalog(
        self,
        q: str | None = None,
        *,
        domain: str | None = None,
        grade: str | None = None,
        provider: str | None = None,
        operator: str | None = None,
        max_price: str | Decimal | None = None,
        page_size: int = 20,
        max_items: int = 1000,
    ) -> CatalogPage:
        """Search the catalog (Chinese full text for `q`), following its cursor pages.

        Reads up to `max_items` items; `total` is the server's count of all matches.
        """
        params = {
            "q": q, "domain": domain, "grade": grade, "provider": provider,
            "operator": operator, "max_price": None if max_price is None else str(max_price),
            "limit": page_size,
        }  # fmt: skip
        r = self.session.request(
            "GET", "/v1/catalog", params={k: v for k, v in params.items() if v is not None}
        )
        items: list[CatalogItem] = []
        total = 0
        while True:
            page, nxt, count = read_page(r)
            total = count if count is not None else max(total, len(items) + len(page))
            items.extend(CatalogItem.model_validate(i) for i in page)
            if not nxt or not page or len(items) >= max_items:
                return CatalogPage(items=items[:max_items], total=total)
            r = self.session.request("GET", nxt)

    def product(self, product_id: str) -> Product:
        return Product.model_validate(self.session.get(f"{MARKET}/products/{product_id}"))

    def negotiation(self, negotiation_id: str) -> Negotiation:
        return Negotiation.model_validate(self.session.get(f"{NEGOTIATIONS}/{negotiation_id}"))

    def negotiations(self) -> list[Negotiation]:
        return [Negotiation.model_validate(n) for n in self.session.iterate(NEGOTIATIONS)]

    def market_agreement(self, agreement_id: str) -> MarketAgreement:
        body = self.session.get(f"{MARKET}/agreements/{agreement_id}")
        return MarketAgreement.model_validate(body)

    def market_agreements(self) -> list[MarketAgreement]:
        found = self.session.iterate(f"{MARKET}/agreements")
        return [MarketAgreement.model_validate(a) for a in found]

    def usage(self, agreement_id: str) -> Usage:
        """The agreement's meter: computations, rows and ε used against its limits."""
        a = self.market_agreement(agreement_id)
        terms, used = a.terms, a.used
        price = terms.get("price")
        return Usage(
            agreement_id=a.id,
            in_force=a.in_force,
            computations=int(used.get("computations", 0)),
            rows=int(used.get("rows", 0)),
            epsilon=float(used.get("epsilon", 0.0)),
            max_computations=terms.get("max_computations"),
            max_rows=terms.get("max_rows"),
            epsilon_share=terms.get("epsilon_share"),
            price_model=terms.get("price_model"),
            price=Decimal(str(price)) if price is not None else None,
        )

    def statements(self, settlement_id: str | None = None) -> list[Statement]:
        """Settlement statements this party is party to (every one, for an auditor)."""
        found = self.session.iterate(f"{MARKET}/statements", settlement_id=settlement_id)
        return [Statement.model_validate(s) for s in found]

    def statement(self, statement_id: str) -> Statement:
        return Statement.model_validate(self.session.get(f"{MARKET}/statements/{statement_id}"))

    def certificate(self, certificate_id: str) -> Certificate:
        """A certificate with its ledger proof (the proof is None until its entry is sealed)."""
        body = self.session.get(f"{MARKET}/certificates/{certificate_id}")
        return Certificate.model_validate(body)

    def verify_certificate(
        self, certificate: Certificate | dict[str, Any], verifier_key: str
    ) -> list[str]:
        """Check a certificate offline against the ledger key `verifier_key` (steps passed).

        Raises `VerificationError` (`certificate-invalid`) naming the failed step.
        """
        bundle = (
            certificate.model_dump(mode="json")
            if isinstance(certificate, Certificate)
            else certificate
        )
        return verify_certificate(bundle, verifier_key)

    def check_agreement(self, agreement: MarketAgreement) -> list[str]:
        """Check a finalized agreement locally: its digest, then both parties' signatures.

        Ed25519 signatures are verified here; others are reported as not checked.
        """
        if agreement.document is None or digest_of(agreement.document) != agreement.digest:
            raise VerificationError(
                f"agreement {agreement.id}: the digest is not the document's",
                type=PROBLEMS + "agreement-invalid",
                title="Agreement does not verify",
            )
        done = ["digest matches the document"]
        assert agreement.digest is not None
        for side in ("provider", "consumer"):
            sig = agreement.signatures.get(side)
            if not sig:
                raise VerificationError(
                    f"agreement {agreement.id} lacks the {side}'s signature",
                    type=PROBLEMS + "agreement-invalid",
                    title="Agreement does not verify",
                )
            if sig.get("algorithm") != "ed25519":
                done.append(f"{side} signature ({sig.get('algorithm')}) not checked by the SDK")
                continue
            key = Ed25519PublicKey.from_public_bytes(base64.b64decode(sig["public_key"]))
            try:
                key.verify(base64.b64decode(sig["signature"]), agreement.digest.encode())
            except InvalidSignature:
                raise VerificationError(
                    f"agreement {agreement.id}: the {side}'s signature does not verify",
                    type=PROBLEMS + "agreement-invalid",
                    title="Agreement does not verify",
                ) from None
            done.append(f"{side} signature verifies (key {sig.get('key_id')})")
        return done


class _MarketParty(_MarketReader):
    """What both trading parties do: hold a key, sign, terminate, dispute."""

    def use_key(self, key: PartyKey, *, register: bool = True) -> PartyKey:
        """Sign with `key` from now on; register its public half unless told not."""
        if register:
            key.register(self.session, self.me().org_id)
        self.party_key = key
        return key

    def register_key(self, key: PartyKey | None = None) -> Party:
        """Register the public half of `key` (default: the key in use); the party record."""
        key = key or self.party_key
        if key is None:
            raise _problem("no-party-key", "no party key to register", "No party key")
        return Party.model_validate(key.register(self.session, self.me().org_id))

    def _signed(self, negotiation_id: str, state: str) -> dict[str, str]:
        """The party's signature over the agreement's digest, recomputed here first."""
        if self.party_key is None:
            raise _problem(
                "no-party-key",
                "signing an agreement needs the party's key (use_key)",
                "No party key",
            )
        n = self.negotiation(negotiation_id)
        if n.state != state:
            raise _problem(
                "negotiation-wrong-state",
                f"negotiation {n.id} is {n.state}, not {state}",
                "Wrong state",
                negotiation_state=n.state,
            )
        digest = n.agreement_digest
        if (
            n.agreement_document is None
            or digest is None
            or digest_of(n.agreement_document) != digest
        ):
            raise VerificationError(
                f"negotiation {n.id}: the agreement digest is not the document's; not signed",
                type=PROBLEMS + "agreement-invalid",
                title="Agreement does not verify",
            )
        return self.party_key.sign(digest)

    def _step(self, negotiation_id: str, step: str, body: Any = None) -> Negotiation:
        out = self.session.post(f"{NEGOTIATIONS}/{negotiation_id}/{step}", body)
        return Negotiation.model_validate(out)

    def terminate_negotiation(self, negotiation_id: str, reason: str = "") -> Negotiation:
        """End a negotiation before it is finalized (either party)."""
        return self._step(negotiation_id, "terminate", {"reason": reason})

    def open_dispute(self, statement_id: str, line: int, reason: str) -> Dispute:
        """Dispute one line (1-based) of a statement this party is party to."""
        body = {"line": line, "reason": reason}
        out = self.session.post(f"{MARKET}/statements/{statement_id}/disputes", body)
        return Dispute.model_validate(out)


class ProviderMarket(_MarketParty):
    """A provider: products, listing, offers, signing and finalizing, certificates."""

    def create_product(
        self,
        title: str,
        description: str,
        *,
        domain: str,
        datasets: Iterable[str],
        offers: Iterable[dict[str, Any]],
        rights: dict[str, Any],
        provenance: dict[str, Any] | None = None,
        delivery_modes: Iterable[str] = ("computation",),
        keywords: Iterable[str] = (),
    ) -> Product:
        """A draft product: datasets with provenance, rights and ODRL offers (terms)."""
        body = {
            "title": title, "description": description, "domain": domain,
            "keywords": list(keywords), "datasets": list(datasets), "provenance": provenance,
            "rights": rights, "delivery_modes": list(delivery_modes), "offers": list(offers),
        }  # fmt: skip
        return Product.model_validate(self.session.post(f"{MARKET}/products", body))

    def list_product(self, product_id: str) -> Product:
        """Publish after the compliance pre-check; its result is attached (`precheck`)."""
        return Product.model_validate(self.session.post(f"{MARKET}/products/{product_id}/list"))

    def offer(self, negotiation_id: str, terms: dict[str, Any] | None = None) -> Negotiation:
        """Offer terms on a request: as requested (default), or a counter-offer."""
        if terms is None:
            terms = self.negotiation(negotiation_id).terms
        return self._step(negotiation_id, "offer", {"terms": terms})

    def agree(self, negotiation_id: str) -> Negotiation:
        """Sign the accepted agreement with this provider's key (DSP AGREED)."""
        return self._step(negotiation_id, "agree", self._signed(negotiation_id, "accepted"))

    def finalize(self, negotiation_id: str) -> Negotiation:
        """Put the agreement both parties signed in force (DSP FINALIZED)."""
        return self._step(negotiation_id, "finalize")

    def issue_certificate(self, product_id: str) -> Certificate:
        """A data-asset registration certificate for a listed product (proof once sealed)."""
        out = self.session.post(f"{MARKET}/products/{product_id}/certificate")
        return Certificate.model_validate(out)


class EnterpriseMarket(_MarketParty):
    """An enterprise: request and counter offers, accept, countersign, compute under it."""

    if TYPE_CHECKING:

        def compute(
            self,
            operator: str,
            inputs: list[str],
            params: dict[str, Any],
            purpose: str,
            *,
            approvers: Any = None,
            timeout: float = 600.0,
            progress: Any = None,
            job_key: JobKey | None = None,
            agreement_id: str | None = None,
        ) -> ComputationResult: ...

    def request_offer(
        self,
        offer_id: str,
        purpose: str,
        *,
        dua_reference: str | None = None,
        legal_basis: str | None = None,
        terms: dict[str, Any] | None = None,
    ) -> Negotiation:
        """Ask for an offer as published, or (with `terms`) counter it at once."""
        body: dict[str, Any] = {"offer_id": offer_id, "purpose": purpose}
        if dua_reference:
            body["dua_reference"] = dua_reference
        if legal_basis:
            body["legal_basis"] = legal_basis
        if terms is not None:
            body["terms"] = terms
        return Negotiation.model_validate(self.session.post(NEGOTIATIONS, body))

    def counter_offer(self, negotiation_id: str, terms: dict[str, Any]) -> Negotiation:
        """Answer the provider's offer with other terms (DSP ContractRequestMessage)."""
        return self._step(negotiation_id, "request", {"terms": terms})

    def accept(self, negotiation_id: str) -> Negotiation:
        """Accept the provider's offer: the agreement document and its digest are fixed."""
        return self._step(negotiation_id, "accept")

    def verify_negotiation(self, negotiation_id: str) -> Negotiation:
        """Countersign the agreement the provider signed, with this party's key (DSP VERIFIED)."""
        return self._step(negotiation_id, "verify", self._signed(negotiation_id, "agreed"))

    def compute_under(
        self,
        agreement_id: str,
        operator: str,
        params: dict[str, Any],
        *,
        inputs: list[str] | None = None,
        approvers: Any = None,
        timeout: float = 600.0,
        job_key: JobKey | None = None,
    ) -> ComputationResult:
        """A metered computation under an agreement: its purpose and (default) datasets."""
        a = self.market_agreement(agreement_id)
        return self.compute(
            operator, inputs or list(a.datasets), params, a.purpose, approvers=approvers,
            timeout=timeout, job_key=job_key, agreement_id=a.id,
        )  # fmt: skip


class AuditorMarket(_MarketReader):
    """An auditor reads every party's market records; it changes nothing."""


class OperatorMarket(_MarketReader):
    """The platform operator: verifies parties' identities and runs settlements."""

    def verify_party(self, org_id: str, credit_code: str) -> Party:
        """Record that the organisation's unified social credit code was checked (DSL art. 33)."""
        body = {"credit_code": credit_code}
        return Party.model_validate(self.session.post(f"{MARKET}/parties/{org_id}/verify", body))

    def settle(self, period_start: datetime, period_end: datetime) -> Settlement:
        """Settle a period: signed statements per agreement, provider and requester."""
        body = {"period_start": period_start.isoformat(), "period_end": period_end.isoformat()}
        return Settlement.model_validate(self.session.post(f"{MARKET}/settlements", body))

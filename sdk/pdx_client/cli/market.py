"""`pdx market ...`: the market verbs on the SDK (parties, products, catalog, deals, money).

Keys stay on the party's machine: `pdx market keys register` makes the organisation's
Ed25519 key once, under `$PDX_CONFIG_DIR/partykeys/<org>.pem` (mode 0600; encrypted under
`$PDX_PARTY_KEY_PASSPHRASE` when set), and sends only its public half; `agree` and
`verify` sign the agreement's digest with it after recomputing the digest here.
The `market` group is shared with the server's own market verbs: whichever package
registers first creates it, the other adds what is missing.
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from pdx_client.cli._verbs import _guarded, _json_arg, _out, _role, _Usage
from pdx_client.config import load_profile
from pdx_client.errors import PdxError
from pdx_client.market_models import Negotiation
from pdx_client.partykeys import PartyKey
from pdx_client.roles import Enterprise, Operator, Provider

__all__ = ["register", "subcommands"]

if TYPE_CHECKING:
    Sub: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]


def subcommands(sub: Sub, name: str, help: str) -> Sub:
    """The sub-commands of verb `name` under `sub`, the verb made if it is not there yet."""
    parser = sub.choices.get(name)
    if parser is None:
        parser = sub.add_parser(name, help=help)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return parser.add_subparsers(dest=f"{name}_command", required=True)


# -- keys and parties --------------------------------------------------------------------


def _org(args: argparse.Namespace) -> str:
    org = load_profile().get("org_id")
    if not org:
        raise _Usage("not logged in: run `pdx login --url URL --client-id ID` first")
    return str(org)


def _passphrase() -> str | None:
    return os.environ.get("PDX_PARTY_KEY_PASSPHRASE") or None


def _party_key(args: argparse.Namespace) -> PartyKey:
    """The organisation's key from the config dir (never made implicitly when signing)."""
    org = _org(args)
    try:
        return PartyKey.load(org_id=org, passphrase=_passphrase())
    except FileNotFoundError:
        raise _Usage("no party key here: run `pdx market keys register` first") from None
    except (TypeError, ValueError) as exc:
        raise _Usage(f"cannot open the party key: {exc}") from None


def _keys_register(args: argparse.Namespace) -> int:
    try:
        key = PartyKey.load_or_create(_org(args), passphrase=_passphrase())
    except (TypeError, ValueError) as exc:
        raise _Usage(f"cannot open the party key: {exc}") from None
    with _role(args, Enterprise) as e:
        party = e.register_key(key)
    return _out(
        args,
        {"key_id": key.key_id, "party": party.model_dump(mode="json")},
        lambda: print(f"registered key {key.key_id} for {party.name} ({len(party.keys)} keys)"),
    )


def _party_show(args: argparse.Namespace) -> int:
    with _role(args, Enterprise) as e:
        party = e.party(args.org)
    state = "verified" if party.verified else "NOT verified"
    return _out(
        args, party, lambda: print(f"{party.org_id}  {party.name}: {state}, {len(party.keys)} keys")
    )


def _party_verify(args: argparse.Namespace) -> int:
    with _role(args, Operator) as o:
        party = o.verify_party(args.org, args.credit_code)
    return _out(args, party, lambda: print(f"{party.name} verified, ledger #{party.ledger_index}"))


# -- products and catalog ----------------------------------------------------------------


def _products(args: argparse.Namespace) -> int:
    with _role(args, Provider) as p:
        if args.products_verb == "create":
            body = _json_arg(args.body)
            if not isinstance(body, dict):
                raise _Usage("the product is a JSON object")
            product = p.create_product(
                body.pop("title", ""), body.pop("description", ""),
                domain=body.pop("domain", ""), datasets=body.pop("datasets", []),
                offers=body.pop("offers", []), rights=body.pop("rights", {}),
                provenance=body.pop("provenance", None),
                delivery_modes=body.pop("delivery_modes", ["computation"]),
                keywords=body.pop("keywords", []),
            )  # fmt: skip
        elif args.products_verb == "list":
            product = p.list_product(args.id)
        else:
            product = p.product(args.id)
    offers = ", ".join(f"{o.id} ({o.terms.get('price')} CNY)" for o in product.offers)
    return _out(
        args, product, lambda: print(f"product {product.id}: {product.state}; offers {offers}")
    )


def _catalog(args: argparse.Namespace) -> int:
    with _role(args, Enterprise) as e:
        found = e.catalog(
            args.q, domain=args.domain, grade=args.grade, provider=args.provider,
            operator=args.operator, max_price=args.max_price, max_items=args.limit,
        )  # fmt: skip

    def text() -> None:
        for i in found.items:
            price = i.min_price or "-"
            print(f"{i.id}  {i.grade or '':<10} {price:>10}  {i.provider_name}  {i.title}")
        print(f"{len(found.items)} shown of {found.total}")

    return _out(args, found, text)


# -- negotiation -------------------------------------------------------------------------

_PROVIDER_STEPS = {"offer", "agree", "finalize"}


def _negotiate(args: argparse.Namespace) -> int:
    verb = args.negotiate_verb
    terms = _json_arg(args.terms) if getattr(args, "terms", None) else None
    if verb in _PROVIDER_STEPS:
        with _role(args, Provider) as p:
            if verb == "agree":
                p.party_key = _party_key(args)
                n = p.agree(args.id)
            elif verb == "offer":
                n = p.offer(args.id, terms)
            else:
                n = p.finalize(args.id)
        return _show_negotiation(args, n)
    with _role(args, Enterprise) as e:
        if verb == "request":
            n = e.request_offer(
                args.id, args.purpose, dua_reference=args.dua_reference,
                legal_basis=args.legal_basis, terms=terms,
            )  # fmt: skip
        elif verb == "counter":
            if terms is None:
                raise _Usage("counter needs --terms")
            n = e.counter_offer(args.id, terms)
        elif verb == "accept":
            n = e.accept(args.id)
        elif verb == "verify":
            e.party_key = _party_key(args)
            n = e.verify_negotiation(args.id)
        elif verb == "terminate":
            n = e.terminate_negotiation(args.id, args.reason or "")
        else:
            n = e.negotiation(args.id)
    return _show_negotiation(args, n)


def _show_negotiation(args: argparse.Namespace, n: Negotiation) -> int:
    def text() -> None:
        price = n.terms.get("price")
        extra = f", agreement {n.agreement_id}" if n.agreement_id else ""
        print(f"negotiation {n.id}: {n.state} at {price} CNY{extra}")

    return _out(args, n, text)


# -- agreements, usage, settlement ----------------------------------------------------------


def _agreements(args: argparse.Namespace) -> int:
    with _role(args, Enterprise) as e:
        if args.id:
            a = e.market_agreement(args.id)
            checks = e.check_agreement(a) if args.check else []
            value: Any = {**a.model_dump(mode="json"), "checks": checks} if args.check else a
            return _out(
                args,
                value,
                lambda: print(f"agreement {a.id}: {a.state}, in force: {a.in_force}; "
                              + "; ".join(checks)),
            )  # fmt: skip
        found = e.market_agreements()
    return _out(
        args,
        found,
        lambda: [print(f"{a.id}  {a.state:<10} {a.provider_org}  {a.purpose}") for a in found],
    )


def _usage(args: argparse.Namespace) -> int:
    with _role(args, Enterprise) as e:
        u = e.usage(args.id)
    return _out(
        args,
        u,
        lambda: print(
            f"agreement {u.agreement_id}: {u.computations} computations"
            f" (limit {u.max_computations or '-'}), {u.rows} rows, ε {u.epsilon:g}"
            f" (share {u.epsilon_share if u.epsilon_share is not None else '-'})"
        ),
    )


def _when(text: str | None, default: datetime) -> datetime:
    if not text:
        return default
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise _Usage(f"not an ISO 8601 time: {text}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _settle(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    end = _when(args.to, now)
    start = _when(args.since, end - timedelta(days=1))
    with _role(args, Operator) as o:
        s = o.settle(start, end)
    return _out(
        args,
        s,
        lambda: print(f"settlement {s.settlement_id}: {s.meter_records} meter records, "
                      f"{len(s.statements)} statements"),
    )  # fmt: skip


def _statements(args: argparse.Namespace) -> int:
    with _role(args, Enterprise) as e:
        found = e.statements(args.settlement)
    return _out(
        args,
        found,
        lambda: [print(f"{s.id}  {s.kind:<9} {s.amount:>12} CNY  {len(s.lines)} lines")
                 for s in found],
    )  # fmt: skip


def _dispute(args: argparse.Namespace) -> int:
    with _role(args, Enterprise) as e:
        d = e.open_dispute(args.statement, args.line, args.reason)
    return _out(args, d, lambda: print(f"dispute {d.id} on line {d.line}: {d.state}"))


# -- certificates ------------------------------------------------------------------------


def _certificate(args: argparse.Namespace) -> int:
    if args.certificate_command == "issue":
        with _role(args, Provider) as p:
            c = p.issue_certificate(args.id)
        return _out(args, c, lambda: print(f"certificate {c.id}, ledger #{c.ledger_index}"))
    with _role(args, Enterprise) as e:
        c = e.certificate(args.id)
    if args.out:
        args.out.write_text(json.dumps(c.model_dump(mode="json"), ensure_ascii=False, indent=1))
    sealed = "with its ledger proof" if c.proof else "not sealed yet: no proof"
    return _out(args, c, lambda: print(f"certificate {c.id} {sealed}"))


def _key_text(value: str | None) -> str:
    value = value or load_profile().get("verifier_key")
    if not value:
        raise _Usage("give --verifier-key (the ledger's key, or a file holding it)")
    path = Path(value)
    return path.read_text(encoding="utf-8").strip() if path.is_file() else value.strip()


def _certificate_verify(args: argparse.Namespace) -> int:
    from pdx_client.certificates import verify_certificate

    try:
        bundle = json.loads(Path(args.file).read_text(encoding="utf-8"))
    except ValueError as exc:
        raise _Usage(f"cannot read the certificate: {exc}") from None
    if not isinstance(bundle, dict):
        raise _Usage("the certificate file is not a JSON object")
    try:
        steps = verify_certificate(bundle, _key_text(args.verifier_key))
    except PdxError as exc:
        if args.json:
            print(json.dumps({"verified": False, **exc.to_problem()}, ensure_ascii=False))
        else:
            print(f"FAILED {exc.detail}")
        return 1
    cert = bundle["certificate"]

    def text() -> None:
        for step in steps:
            print(f"ok  {step}")
        print(f"VERIFIED certificate {cert['id']} of product {cert['product']['id']} "
              f"held by {cert['holder']['name']}")  # fmt: skip

    return _out(args, {"verified": True, "steps": steps, "certificate": cert["id"]}, text)


# -- wiring ------------------------------------------------------------------------------


def register(sub: Sub) -> None:
    """Add the market verbs under `pdx market` (entry point group `pdx.cli`, via the SDK's)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    market = subcommands(sub, "market", "the data market")

    def verb(group: Sub, name: str, fn: Any, help: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = group.add_parser(name, parents=[common], help=help)
        p.set_defaults(func=_guarded(fn))
        return p

    keys = subcommands(market, "keys", "this party's signing key (kept here)")
    verb(keys, "register", _keys_register, "make (once) and register the party key")

    party = subcommands(market, "party", "market parties")
    verb(party, "show", _party_show, "a party's verification and keys").add_argument(
        "org", nargs="?"
    )
    pv = verb(party, "verify", _party_verify, "record a verified identity (operator)")
    pv.add_argument("org")
    pv.add_argument("--credit-code", required=True, help="unified social credit code")

    products = subcommands(market, "products", "data products")
    create = verb(products, "create", _products, "a draft product from JSON")
    create.add_argument("--body", required=True, help="the product JSON, or @file.json")
    create.set_defaults(products_verb="create")
    for name, help in (("list", "publish after the pre-check"), ("show", "one product")):
        p = verb(products, name, _products, help)
        p.add_argument("id")
        p.set_defaults(products_verb=name)

    cat = market.add_parser("catalog", parents=[common], help="search listed products")
    cat.add_argument("q", nargs="?", help="keywords (Chinese words are segmented)")
    for opt in ("--domain", "--grade", "--provider", "--operator", "--max-price"):
        cat.add_argument(opt)
    cat.add_argument("--limit", type=int, default=100, help="at most this many items")
    cat.set_defaults(func=_guarded(_catalog))

    neg = subcommands(market, "negotiate", "DSP contract negotiation")
    req = verb(neg, "request", _negotiate, "ask for an offer (optionally countering it)")
    req.add_argument("id", help="the offer id")
    req.add_argument("--purpose", required=True)
    req.add_argument("--dua-reference")
    req.add_argument("--legal-basis")
    req.add_argument("--terms", help="counter terms: JSON or @file.json")
    steps = (
        ("offer", "provider: offer the requested terms, or --terms"),
        ("counter", "enterprise: counter the offer with --terms"),
        ("accept", "enterprise: accept the offer"),
        ("agree", "provider: sign the agreement with the party key"),
        ("verify", "enterprise: countersign with the party key"),
        ("finalize", "provider: put the agreement in force"),
        ("terminate", "either party: end the negotiation"),
        ("show", "one negotiation"),
    )
    for name, help in steps:
        p = verb(neg, name, _negotiate, help)
        p.add_argument("id", help="the negotiation id")
        if name in ("offer", "counter"):
            p.add_argument("--terms", help="JSON or @file.json")
        if name == "terminate":
            p.add_argument("--reason")
        p.set_defaults(negotiate_verb=name)
    req.set_defaults(negotiate_verb="request")

    ag = verb(market, "agreements", _agreements, "market agreements (one with its id)")
    ag.add_argument("id", nargs="?")
    ag.add_argument("--check", action="store_true", help="check digest and signatures here")
    verb(market, "usage", _usage, "an agreement's meter against its limits").add_argument("id")
    st = verb(market, "settle", _settle, "settle a period (operator)")
    st.add_argument("--since", help="period start (ISO 8601; default: a day before --to)")
    st.add_argument("--to", help="period end (ISO 8601; default: now)")
    verb(market, "statements", _statements, "settlement statements").add_argument("--settlement")
    dp = verb(market, "dispute", _dispute, "dispute a statement line")
    dp.add_argument("statement")
    dp.add_argument("--line", type=int, required=True)
    dp.add_argument("--reason", required=True)

    cert = subcommands(market, "certificate", "data-asset registration certificates")
    verb(cert, "issue", _certificate, "certify a listed product").add_argument("id")
    get = verb(cert, "get", _certificate, "fetch a certificate with its ledger proof")
    get.add_argument("id")
    get.add_argument("--out", type=Path, help="write the certificate JSON here")
    if "verify" not in cert.choices:  # the server's verb, when it registered first
        vf = verb(cert, "verify", _certificate_verify, "verify a certificate file offline")
        vf.add_argument("file", help="the certificate JSON with its ledger proof")
        vf.add_argument("--verifier-key", help="the ledger's key or a file (default: remembered)")

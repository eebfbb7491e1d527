"""Market and budget views: pure shaping of API answers (meters, ε over time, signatures).

No API calls and no domain logic here: what the pages read through `ctx.api` is turned
into rows for the templates. Limits, states and ε come from the server's answers as is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from markupsafe import Markup

from gateway.console import plots, reads

# Which party acts next in each negotiation state (DSP), and what it may do there.
NEXT_STEPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "requested": ("provider", ("offer", "terminate")),
    "offered": ("consumer", ("accept", "request", "terminate")),
    "accepted": ("provider", ("agree", "terminate")),
    "agreed": ("consumer", ("verify", "terminate")),
    "verified": ("provider", ("finalize", "terminate")),
}
STEPS = ("offer", "request", "accept", "agree", "verify", "finalize", "terminate")
SIGNING = ("agree", "verify")
WITH_TERMS = ("offer", "request")
COLOURS = ("#0b5cad", "#b42318", "#1a7f37", "#7a3ea8")
MAX_SIGNATURE_BYTES = 4096


def side_of(negotiation: Mapping[str, Any], org_id: str) -> str | None:
    """The caller's side of a negotiation: "consumer", "provider", or None."""
    if negotiation.get("requester_org") == org_id:
        return "consumer"
    if negotiation.get("provider_org") == org_id:
        return "provider"
    return None


def my_steps(negotiation: Mapping[str, Any], side: str | None) -> tuple[str, ...]:
    """The steps the page offers this side now (the server decides each one again)."""
    who, steps = NEXT_STEPS.get(reads.state(negotiation), ("", ()))
    if side is None:
        return ()
    if who == side:
        return steps
    return ("terminate",) if reads.state(negotiation) in NEXT_STEPS else ()


def waiting_for(negotiations: Sequence[Mapping[str, Any]], org_id: str) -> list[dict[str, Any]]:
    """Negotiations whose next step is this organisation's."""
    out = []
    for n in negotiations:
        who, _ = NEXT_STEPS.get(reads.state(n), ("", ()))
        if who and side_of(n, org_id) == who:
            out.append(reads.normalised(n))
    return out


def term_changes(
    offered: Mapping[str, Any] | None, current: Mapping[str, Any]
) -> list[tuple[str, str, str]]:
    """(term, as published, as now negotiated) for each term a counter-offer changed."""
    if not offered:
        return []
    out = []
    for key in sorted(set(offered) | set(current)):
        before, now = offered.get(key), current.get(key)
        if before != now:
            out.append((key, _show(before), _show(now)))
    return out


def negotiation_view(
    negotiation: Mapping[str, Any],
    org_id: str,
    product: Mapping[str, Any] | None,
    party: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """A negotiation page's values for the organisation `org_id`.

    Its side and next steps, the terms as changed from the product's published offer, and
    the signing keys the organisation registered.
    """
    side = side_of(negotiation, org_id)
    offers = product["offers"] if product is not None else []
    offered = next((o["terms"] for o in offers if o["id"] == negotiation["offer_id"]), None)
    return {
        "n": negotiation,
        "side": side,
        "product": product,
        "steps": my_steps(negotiation, side),
        "changes": term_changes(offered, negotiation["terms"]),
        "keys": (party or {}).get("keys", []),
        "terms_json": pretty(negotiation["terms"]),
    }


def pretty(value: Any) -> str:
    """JSON as the console shows it: indented, keys sorted, Chinese as written."""
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True)


def statement_view(statement: Mapping[str, Any], disputes: list[dict[str, Any]]) -> dict[str, Any]:
    """A statement page's values: its signed body, the lines' columns after `line`, disputes."""
    body = statement.get("statement") or {}
    columns = sorted({k for line in body.get("lines", []) for k in line if k != "line"})
    return {"st": statement, "body": body, "columns": columns, "disputes": disputes}


def _show(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def meters(agreement: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Used against the agreement's limits: computations, rows touched, ε."""
    terms = agreement.get("terms") or {}
    used = agreement.get("used") or {}
    out = []
    for key, limit_key in (
        ("computations", "max_computations"),
        ("rows", "max_rows"),
        ("epsilon", "epsilon_share"),
    ):
        value = float(used.get(key) or 0)
        limit = terms.get(limit_key)
        out.append(
            {
                "key": key,
                "used": _number(value),
                "limit": _number(float(limit)) if limit is not None else None,
                "max": float(limit) if limit else None,
                "value": min(value, float(limit)) if limit else value,
                "exhausted": limit is not None and value >= float(limit) - 1e-12,
            }
        )
    return out


def _number(value: float) -> str:
    return f"{value:g}" if value != int(value) else str(int(value))


def parse_terms(text: str) -> dict[str, Any]:
    """The terms a party typed (JSON object); ValueError with a short reason otherwise."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"terms: not JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(value, dict):
        raise ValueError("terms: a JSON object is expected")
    return value


def parse_signature(key_id: str, pasted: str, uploaded: bytes | None) -> dict[str, str]:
    """`{key_id, signature}` from what the party pasted or uploaded.

    Either the SDK's `PartyKey.sign(digest)` output (a JSON object with `key_id` and
    `signature`), or a bare base64 signature with the key chosen on the form. The
    console holds no private key: it only carries the party's signature to the API.
    """
    text = pasted.strip()
    if uploaded:
        if len(uploaded) > MAX_SIGNATURE_BYTES:
            raise ValueError("signature file too large")
        text = uploaded.decode("utf-8", "replace").strip()
    if not text:
        raise ValueError("no signature given")
    if text.startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError:
            raise ValueError("signature: not JSON") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("signature"), str):
            raise ValueError("signature: the JSON needs a 'signature' field")
        key_id = str(doc.get("key_id") or key_id)
        text = doc["signature"]
    if not key_id.strip():
        raise ValueError("choose the key the signature was made with")
    return {"key_id": key_id.strip(), "signature": text.strip()}


def epsilon_charged(computation: Mapping[str, Any]) -> float:
    """ε a computation charged its inputs' lineages (at acceptance; never refunded)."""
    obligations = computation.get("obligations") or {}
    release = obligations.get("release") if isinstance(obligations, Mapping) else None
    eps = (release or {}).get("dp_epsilon") if isinstance(release, Mapping) else None
    eps = obligations.get("dp_epsilon") if eps is None else eps
    if isinstance(eps, int | float) and eps > 0:
        return float(eps)
    spent = computation.get("epsilon_spent")
    return float(spent) if isinstance(spent, int | float) and spent > 0 else 0.0


def epsilon_by_dataset(
    computations: Sequence[Mapping[str, Any]], only: set[str] | None = None
) -> dict[str, list[tuple[datetime, float]]]:
    """Cumulative ε per input dataset, one point per charging computation, oldest first."""
    charges: list[tuple[datetime, str, float]] = []
    for comp in computations:
        eps = epsilon_charged(comp)
        at = reads.when(comp.get("created_at"))
        if not eps or at is None:
            continue
        for inp in comp.get("inputs") or []:
            dataset_id = inp.get("dataset_id") if isinstance(inp, Mapping) else None
            if isinstance(dataset_id, str) and (only is None or dataset_id in only):
                charges.append((at, dataset_id, eps))
    out: dict[str, list[tuple[datetime, float]]] = {}
    for at, dataset_id, eps in sorted(charges):
        points = out.setdefault(dataset_id, [])
        points.append((at, (points[-1][1] if points else 0.0) + eps))
    return out


def epsilon_plot(
    label: str, series: Mapping[str, list[tuple[datetime, float]]], names: Mapping[str, str]
) -> Markup:
    """ε spent per dataset over time: one line per dataset (the most spent first, ≤ 4)."""
    ranked = sorted(series.items(), key=lambda kv: (-kv[1][-1][1], kv[0]))[: len(COLOURS)]
    every = [at for _, points in ranked for at, _ in points]
    if not every:
        return plots.lines(label, [], ("", ""))
    lines = [
        (
            (names.get(dataset_id) or dataset_id[:8])[:16],
            COLOURS[i],
            [(at.timestamp(), eps) for at, eps in points],
        )
        for i, (dataset_id, points) in enumerate(ranked)
    ]
    first, last = min(every), max(every)
    return plots.lines(label, lines, (first.strftime("%m-%d %H:%M"), last.strftime("%m-%d %H:%M")))

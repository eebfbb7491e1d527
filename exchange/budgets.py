"""Privacy budgets per dataset lineage and per requester, charged when a request is accepted.

docs/privacy.md §4. Rules, in the order they are applied:

1. **Lineage.** A dataset's budget is kept on its lineage: the order-insensitive digest of
   its row set (the sum modulo 2²⁵⁶ of SHA-256 over each row's canonical JSON, keyed by
   column name, so a re-registration, a copy, a shuffled copy or one with its columns
   reordered shares it), or, when its provider declared `derived_from` in its analysis
   rules, the source's lineage. A node-held dataset's rows never reach the platform: its
   lineage is its content digest as the node reported it. The lineage is fixed at the
   first charge and never changes afterwards (`DatasetLineage`).
2. **Two limits.** Every requester together may spend `lineage_epsilon` on a lineage;
   one requesting organisation at most `requester_epsilon` of it, so no one party can
   spend everyone's budget. A provider's rules may lower either, never raise it.
3. **Charged at acceptance.** In the transaction that records the request (`charge`),
   before any provider is asked and before any data-dependent step. A request whose
   charge would pass either limit is refused there (`BudgetExceeded`, 409), with the
   same answer whatever the data. A charge is never refunded: a request that is later
   rejected, fails or is interrupted has cost what a run costs, so an attacker gains
   nothing by making a job fail. k inputs of one lineage in one request cost k times ε.
4. ε and δ compose additively (basic composition; sound for pure and approximate DP).

Re-registering rows under a new name, as a new dataset or by another provider, lands on
the same lineage; a copy with rows added or removed is a different row set and is not
recognised (a provider who does that on purpose is out of scope, docs/privacy.md §1).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from exchange.accounts import Caller
from exchange.analysis_rules import AnalysisRules, load_rules
from exchange.catalog import CatalogContext, iter_plaintext
from exchange.errors import BudgetExceeded, NotFound
from exchange.first_use import locked_or_created
from exchange.models import Dataset, Organisation, load_dataset
from exchange.privacy_tables import DatasetLineage, LineageBudget, LineageCharge, RequesterBudget
from exchange.resources import sees_everything

__all__ = [
    "DEFAULT_LIMITS",
    "BudgetExceeded",
    "BudgetLimits",
    "BudgetPublic",
    "RequesterSpend",
    "budget_view",
    "charge",
    "charges_of",
    "lineage_of",
]

_MOD = 1 << 256
_SLACK = 1e-9  # ten charges of 0.1 fit a budget of 1.0


@dataclass(frozen=True)
class BudgetLimits:
    """The platform's budgets per lineage (every requester) and per requester on a lineage."""

    lineage_epsilon: float = 3.0
    """docs/compliance.md PI-07: total ε ≤ 3 per lineage by default (configurable)."""
    requester_epsilon: float = 2.0
    """One requesting organisation's share: no one party spends everyone's budget."""
    lineage_delta: float = 1e-4
    requester_delta: float = 1e-4

    def __post_init__(self) -> None:
        if not (0 < self.requester_epsilon <= self.lineage_epsilon):
            raise ValueError("need 0 < requester_epsilon <= lineage_epsilon")
        if not (0 <= self.requester_delta <= self.lineage_delta < 1):
            raise ValueError("need 0 <= requester_delta <= lineage_delta < 1")

    def under(self, rules: Iterable[AnalysisRules | None]) -> BudgetLimits:
        """These limits lowered by providers' rules (never raised)."""
        total, mine = self.lineage_epsilon, self.requester_epsilon
        for r in rules:
            if r is None:
                continue
            if r.budget_epsilon is not None:
                total = min(total, r.budget_epsilon)
            if r.requester_budget_epsilon is not None:
                mine = min(mine, r.requester_budget_epsilon)
        return BudgetLimits(total, min(mine, total), self.lineage_delta, self.requester_delta)


DEFAULT_LIMITS = BudgetLimits()


# -- lineage ------------------------------------------------------------------------------------


class _Chunks(io.RawIOBase):
    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf:
            nxt = next(self._chunks, None)
            if nxt is None:
                return 0
            self._buf = nxt
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def rows_digest(chunks: Iterator[bytes]) -> str:
    """Order-insensitive digest of a CSV's row multiset (columns matched by name)."""
    text = io.TextIOWrapper(io.BufferedReader(_Chunks(chunks)), encoding="utf-8", newline="")
    reader = csv.reader(text)
    header = next(reader, [])
    acc = 0
    for row in reader:
        doc = json.dumps(
            dict(zip(header, row, strict=False)), sort_keys=True, separators=(",", ":")
        )
        acc = (acc + int.from_bytes(hashlib.sha256(doc.encode()).digest(), "big")) % _MOD
    return "rows:" + acc.to_bytes(32, "big").hex()


def _lineage_id(rows: str) -> str:
    return "sha256:" + hashlib.sha256(b"pdx:lineage:" + rows.encode()).hexdigest()


def lineage_of(
    session: Session,
    catalog: CatalogContext,
    ds: Dataset,
    *,
    now: datetime,
    fix: bool,
    _depth: int = 0,
) -> str:
    """The lineage a dataset's budget is kept on; `fix` records it (at the first charge)."""
    row = session.get(DatasetLineage, ds.id)
    if row is not None:
        return row.lineage
    rules = load_rules(session, ds.id)
    source = rules.derived_from if rules is not None else None
    if ds.custody == "node":
        rows = "node:" + ds.sha256
    else:
        rows = rows_digest(iter_plaintext(catalog, session, ds.id))
    if source is not None and _depth < 8:
        src = session.get(Dataset, source)
        if src is None:
            raise NotFound("the dataset's declared source is gone", dataset_id=source)
        lineage = lineage_of(session, catalog, src, now=now, fix=fix, _depth=_depth + 1)
    else:
        lineage = _lineage_id(rows)
    if fix:
        # Two first requests at once both get here: one lineage row, the other reads it.
        fixed = locked_or_created(
            session,
            DatasetLineage,
            ds.id,
            lambda: DatasetLineage(
                dataset_id=ds.id,
                lineage=lineage,
                rows_digest=rows,
                derived_from=source,
                fixed_at=now,
            ),
        )
        return fixed.lineage
    return lineage


# -- charging -----------------------------------------------------------------------------------


def _locked(session: Session, model: Any, key: Any, **init: Any) -> Any:
    return locked_or_created(session, model, key, lambda: model(**init))


def charge(
    session: Session,
    catalog: CatalogContext,
    *,
    computation_id: str,
    requester_org: str,
    datasets: Sequence[Dataset],
    epsilon: float,
    delta: float,
    limits: BudgetLimits,
    now: datetime,
) -> list[LineageCharge]:
    """Charge every input's lineage for an accepted request, or refuse and charge none.

    Runs inside the request's own transaction; the lineage rows are locked in one order.
    """
    if epsilon <= 0 and delta <= 0:
        return []
    by_lineage: Counter[str] = Counter()
    rules: dict[str, list[AnalysisRules | None]] = {}
    for ds in datasets:
        lineage = lineage_of(session, catalog, ds, now=now, fix=True)
        by_lineage[lineage] += 1
        rules.setdefault(lineage, []).append(load_rules(session, ds.id))
    out = []
    for lineage in sorted(by_lineage):
        k = by_lineage[lineage]
        lim = limits.under(rules[lineage])
        total = _locked(
            session, LineageBudget, lineage,
            lineage=lineage, epsilon_spent=0.0, delta_spent=0.0, updated_at=now,
        )  # fmt: skip
        mine = _locked(
            session, RequesterBudget, (lineage, requester_org),
            lineage=lineage, requester_org=requester_org,
            epsilon_spent=0.0, delta_spent=0.0, updated_at=now,
        )  # fmt: skip
        eps, dlt = epsilon * k, delta * k
        for which, row, e_lim, d_lim in (
            ("requester", mine, lim.requester_epsilon, lim.requester_delta),
            ("lineage", total, lim.lineage_epsilon, lim.lineage_delta),
        ):
            if row.epsilon_spent + eps > e_lim + _SLACK or row.delta_spent + dlt > d_lim + 1e-15:
                raise BudgetExceeded(
                    "the request would exceed the privacy budget of an input "
                    f"({which} budget); see GET /v1/datasets/{{id}}/privacy-budget",
                    budget=which,
                    requested_epsilon=epsilon,
                )
        for row in (total, mine):
            row.epsilon_spent += eps
            row.delta_spent += dlt
            row.updated_at = now
        entry = LineageCharge(
            computation_id=computation_id,
            lineage=lineage,
            requester_org=requester_org,
            epsilon=eps,
            delta=dlt,
            charged_at=now,
        )
        session.add(entry)
        out.append(entry)
    return out


def charges_of(session: Session, computation_id: str) -> list[LineageCharge]:
    return list(
        session.scalars(select(LineageCharge).where(LineageCharge.computation_id == computation_id))
    )


# -- the budget endpoint ------------------------------------------------------------------------


class RequesterSpend(BaseModel):
    """One requesting organisation's spending on a lineage."""

    requester_org: str
    requester_name: str | None
    epsilon_spent: float
    epsilon_remaining: float
    delta_spent: float


class RequesterPage(BaseModel):
    items: list[RequesterSpend]
    total: int
    next: str | None = None


class BudgetPublic(BaseModel):
    """A dataset's privacy budget: its lineage's, as its viewer may see it.

    Its provider (and auditors) see the lineage and every requester; a requester sees
    only its own spending and what it may still spend (the smaller of its own share and
    what is left of the lineage's).
    """

    dataset_id: str
    lineage: str | None
    epsilon_limit: float
    requester_epsilon_limit: float
    epsilon_spent: float | None
    epsilon_remaining: float
    requesters: RequesterPage


def budget_view(
    session: Session,
    catalog: CatalogContext,
    caller: Caller,
    dataset_id: str,
    *,
    limits: BudgetLimits,
    now: datetime,
) -> BudgetPublic:
    """`GET /v1/datasets/{id}/privacy-budget` (the caller passed `dataset.read_metadata`)."""
    ds = load_dataset(session, dataset_id)
    lineage = lineage_of(session, catalog, ds, now=now, fix=False)
    lim = limits.under([load_rules(session, ds.id)])
    total = session.get(LineageBudget, lineage)
    spent_total = total.epsilon_spent if total is not None else 0.0
    left_total = max(lim.lineage_epsilon - spent_total, 0.0)
    stmt = select(RequesterBudget).where(RequesterBudget.lineage == lineage)
    overseer = caller.org_id == ds.owner_org or sees_everything(caller)
    if not overseer:
        stmt = stmt.where(RequesterBudget.requester_org == caller.org_id)
    rows = list(session.scalars(stmt.order_by(RequesterBudget.requester_org)))
    names = {
        o.id: o.name
        for o in session.scalars(
            select(Organisation).where(Organisation.id.in_([r.requester_org for r in rows]))
        )
    }
    items = [
        RequesterSpend(
            requester_org=r.requester_org,
            requester_name=names.get(r.requester_org),
            epsilon_spent=r.epsilon_spent,
            epsilon_remaining=min(max(lim.requester_epsilon - r.epsilon_spent, 0.0), left_total),
            delta_spent=r.delta_spent,
        )
        for r in rows
    ]
    if overseer:
        remaining = left_total
    else:
        mine = items[0].epsilon_spent if items else 0.0
        remaining = min(max(lim.requester_epsilon - mine, 0.0), left_total)
    return BudgetPublic(
        dataset_id=ds.id,
        lineage=lineage if overseer else None,
        epsilon_limit=lim.lineage_epsilon,
        requester_epsilon_limit=lim.requester_epsilon,
        epsilon_spent=spent_total if overseer else None,
        epsilon_remaining=remaining,
        requesters=RequesterPage(items=items, total=len(items)),
    )

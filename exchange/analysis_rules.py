"""A dataset's analysis rules, set by its provider: what may be asked of it and within which bounds.

docs/privacy.md §3. The rules are part of the dataset's metadata, edited only by its
provider (`set_rules`, on the ledger and the audit trail in one transaction). At request
time (`apply`) they are the bounds, not the request:

- `operators`: the operators allowed on the dataset (absent: every vetted operator).
- `columns`: per column its public `bounds` [lo, hi] (the clip range, and the histogram
  range), an optional fixed number of histogram `bins`, whether it may be grouped by
  (`group_by`) and the allowed group values (`groups`). With a `columns` table, a column
  it does not name may not be read at all.
- `min_cohort`: raises the policy's minimum cohort (never lowers it).
- `epsilon_per_query`: caps the policy's ε per query (and asks for DP where the policy
  asks none).
- `budget_epsilon`, `requester_budget_epsilon`: lower the platform's lineage budget and
  each requester's share of it (`exchange.budgets`).
- `derived_from`: the dataset this one was derived from; it then shares that dataset's
  lineage budget. Fixed once the dataset has been charged.

A request's `clip`, `range`, `bins`, `groups` or FL `feature_bounds` inside the rules
are replaced by the rules' own values; outside them the request is refused
(`AnalysisRulesViolation`, 422) before anything is written. The effective parameters
are what is stored, approved, committed on the ledger and run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy.orm import Session

import audit
import policies
from audit.catalogue import Event
from exchange.accounts import Caller, Role
from exchange.errors import AnalysisRulesViolation, Forbidden, InvalidInput
from exchange.models import Dataset, load_dataset
from exchange.privacy_tables import AnalysisRulesRecord, DatasetLineage
from exchange.trail import Trail
from sandbox.operators import OPERATORS, FlParams, OperatorParams, StatsParams

__all__ = [
    "AnalysisRules",
    "AnalysisRulesPublic",
    "AnalysisRulesViolation",
    "ColumnRule",
    "apply",
    "get_rules",
    "load_rules",
    "set_rules",
]


class ColumnRule(BaseModel):
    """What may be computed on one column."""

    model_config = ConfigDict(extra="forbid")

    bounds: tuple[float, float] | None = Field(
        default=None, description="public [lo, hi]: the clip range and the histogram range"
    )
    bins: int | None = Field(default=None, ge=1, le=1000, description="fixed histogram bins")
    group_by: bool = Field(default=False, description="may be grouped by")
    groups: list[str] = Field(default_factory=list, max_length=20, description="allowed groups")

    @model_validator(mode="after")
    def _check(self) -> ColumnRule:
        if self.bounds is not None:
            lo, hi = self.bounds
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise ValueError("bounds must be finite with lo < hi")
        return self


class AnalysisRules(BaseModel):
    """A dataset's analysis rules (the module docstring says what each field does)."""

    model_config = ConfigDict(extra="forbid")

    operators: list[str] | None = Field(default=None, max_length=32)
    columns: dict[str, ColumnRule] | None = Field(default=None, max_length=256)
    min_cohort: int | None = Field(default=None, ge=1, le=100_000)
    epsilon_per_query: float | None = Field(default=None, gt=0, le=10)
    budget_epsilon: float | None = Field(default=None, gt=0, le=100)
    requester_budget_epsilon: float | None = Field(default=None, gt=0, le=100)
    derived_from: str | None = Field(default=None, max_length=36)

    @model_validator(mode="after")
    def _check(self) -> AnalysisRules:
        unknown = [o for o in self.operators or () if o not in OPERATORS]
        if unknown:
            raise ValueError(f"no vetted operator named {', '.join(unknown)}")
        return self


class AnalysisRulesPublic(BaseModel):
    """The rules of one dataset as shown to its provider and to requesters."""

    dataset_id: str
    rules: AnalysisRules
    version: int
    updated_at: str | None


def _rfc3339(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


# -- provider side ----------------------------------------------------------------------------


def set_rules(
    session: Session,
    trail: Trail,
    caller: Caller,
    dataset_id: str,
    raw: dict[str, Any],
    *,
    now: datetime,
) -> AnalysisRulesPublic:
    """Replace a dataset's rules (its provider only); ledger entry and audit record included."""
    caller.require(Role.DATA_PROVIDER)
    ds = load_dataset(session, dataset_id)
    if ds.owner_org != caller.org_id:
        raise Forbidden("only the dataset's provider sets its analysis rules")
    try:
        rules = AnalysisRules.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or None
        raise InvalidInput(f"invalid analysis rules: {first['msg']}", field=where) from None
    fields = {f.name for f in ds.fields}
    missing = sorted(set(rules.columns or {}) - fields)
    if missing:
        raise InvalidInput(f"dataset has no column named {', '.join(missing)}", field="columns")
    row = session.get(AnalysisRulesRecord, dataset_id, with_for_update=True)
    old = AnalysisRules.model_validate(row.rules) if row is not None else AnalysisRules()
    if rules.derived_from != old.derived_from:
        _check_derivation(session, caller, ds, rules.derived_from)
    doc = rules.model_dump(mode="json", exclude_none=True)
    if row is None:
        row = AnalysisRulesRecord(
            dataset_id=dataset_id, rules=doc, version=1, updated_by=caller.client_id, updated_at=now
        )
        session.add(row)
    else:
        row.rules, row.version = doc, row.version + 1
        row.updated_by, row.updated_at = caller.client_id, now
    session.flush()
    from exchange.commitments import plain_digest  # the rules are public: a plain digest

    trail.record(
        session,
        caller.subject(),
        audit.AuditEvent(
            Event.DATASET_ANALYSIS_RULES_SET,
            "set_rules",
            audit.Result.SUCCESS,
            object_id=dataset_id,
            data_level=ds.level,
            detail=f"version={row.version}",
        ),
        object_type="dataset",
        payload_digest=plain_digest(doc),
        now=now,
    )
    return AnalysisRulesPublic(
        dataset_id=dataset_id, rules=rules, version=row.version, updated_at=_rfc3339(now)
    )


def _check_derivation(session: Session, caller: Caller, ds: Dataset, source: str | None) -> None:
    """A lineage is fixed at its first charge; a source must exist and not be the dataset."""
    if session.get(DatasetLineage, ds.id) is not None:
        raise AnalysisRulesViolation(
            "the dataset's lineage is fixed (it has been charged): derived_from cannot change",
            field="derived_from",
        )
    if source is None:
        return
    src = session.get(Dataset, source)
    if source == ds.id or src is None:
        raise InvalidInput("derived_from names no other dataset", field="derived_from")
    if src.owner_org != caller.org_id:
        # Declaring another provider's dataset as the source would let this provider's
        # requesters spend that provider's lineage budget.
        raise AnalysisRulesViolation(
            "derived_from must name one of this provider's own datasets", field="derived_from"
        )


def load_rules(session: Session, dataset_id: str) -> AnalysisRules | None:
    row = session.get(AnalysisRulesRecord, dataset_id)
    return AnalysisRules.model_validate(row.rules) if row is not None else None


def get_rules(session: Session, dataset_id: str) -> AnalysisRulesPublic:
    """The rules of a dataset (empty rules, version 0, when its provider has set none)."""
    load_dataset(session, dataset_id)
    row = session.get(AnalysisRulesRecord, dataset_id)
    if row is None:
        return AnalysisRulesPublic(
            dataset_id=dataset_id, rules=AnalysisRules(), version=0, updated_at=None
        )
    return AnalysisRulesPublic(
        dataset_id=dataset_id,
        rules=AnalysisRules.model_validate(row.rules),
        version=row.version,
        updated_at=_rfc3339(row.updated_at),
    )


# -- request side -----------------------------------------------------------------------------


def policy_view(rules: AnalysisRules | None) -> dict[str, Any]:
    """The rules as the policy input carries them (`resource.analysis_rules`)."""
    return {} if rules is None else rules.model_dump(mode="json", exclude_none=True)


def apply(
    operator: str,
    params: OperatorParams,
    ob: policies.Obligations,
    ruled: Sequence[tuple[str, AnalysisRules | None]],
) -> tuple[OperatorParams, policies.Obligations]:
    """The effective parameters and obligations under every input's rules, or a refusal."""
    cohort, eps = ob.min_cohort, ob.dp_epsilon
    asked = params  # the request's own values: checked against every input's rules
    for dataset_id, rules in ruled:
        if rules is None:
            continue
        if rules.operators is not None and operator not in rules.operators:
            raise AnalysisRulesViolation(
                f"the provider of dataset {dataset_id} does not allow {operator}",
                field="operator",
                dataset_id=dataset_id,
            )
        if isinstance(params, StatsParams) and isinstance(asked, StatsParams):
            params = _stats(dataset_id, operator, asked, params, rules)
        elif isinstance(params, FlParams) and isinstance(asked, FlParams):
            params = _fl(dataset_id, asked, params, rules)
        if rules.min_cohort is not None:
            cohort = max(cohort or 0, rules.min_cohort)
        if rules.epsilon_per_query is not None:
            eps = rules.epsilon_per_query if eps is None else min(eps, rules.epsilon_per_query)
    raw = {**ob.as_dict(), "min_cohort": cohort, "dp_epsilon": eps}
    return params, policies.Obligations.from_decision(raw)


def _refuse(dataset_id: str, what: str, field: str) -> AnalysisRulesViolation:
    return AnalysisRulesViolation(
        f"dataset {dataset_id}: {what} (the provider's analysis rules)",
        field=field,
        dataset_id=dataset_id,
    )


def _column(dataset_id: str, rules: AnalysisRules, name: str, field: str) -> ColumnRule | None:
    if rules.columns is None:
        return None
    rule = rules.columns.get(name)
    if rule is None:
        raise _refuse(dataset_id, f"column {name!r} may not be analysed", field)
    return rule


def _within(inner: tuple[float, float], outer: tuple[float, float]) -> bool:
    return outer[0] <= inner[0] and inner[1] <= outer[1]


def _stats(
    dataset_id: str, operator: str, asked: StatsParams, p: StatsParams, rules: AnalysisRules
) -> StatsParams:
    """`asked`: the request; `p`: the parameters after the earlier inputs' rules."""
    update: dict[str, Any] = {}
    hull: tuple[float, float] | None = None
    for name in asked.columns:
        rule = _column(dataset_id, rules, name, "params.columns")
        if rule is None or rule.bounds is None:
            continue
        b = rule.bounds
        hull = b if hull is None else (min(hull[0], b[0]), max(hull[1], b[1]))
        if operator == "stats.histogram":
            if asked.range is not None and not _within(asked.range, b):
                raise _refuse(
                    dataset_id, f"range {list(asked.range)} is outside {list(b)}", "params"
                )
            update["range"] = b
            if rule.bins is not None:
                if asked.bins is not None and asked.bins != rule.bins:
                    raise _refuse(dataset_id, f"bins must be {rule.bins}", "params.bins")
                update["bins"] = rule.bins
    if hull is not None and operator != "stats.histogram":
        if asked.clip is not None and not _within(asked.clip, hull):
            raise _refuse(dataset_id, f"clip {list(asked.clip)} is outside {list(hull)}", "params")
        lo, hi = hull
        if p.clip is not None and p is not asked:  # inside every provider's bounds
            lo, hi = max(lo, p.clip[0]), min(hi, p.clip[1])
            if lo >= hi:
                raise _refuse(dataset_id, "the providers' bounds do not overlap", "params")
        update["clip"] = (lo, hi)
    if asked.group_by is not None:
        rule = _column(dataset_id, rules, asked.group_by, "params.group_by")
        if rule is not None:
            if not rule.group_by:
                raise _refuse(dataset_id, f"{asked.group_by!r} may not be grouped by", "params")
            if rule.groups:
                extra = [g for g in asked.groups if g not in rule.groups]
                if extra:
                    raise _refuse(dataset_id, f"groups {extra} are not allowed", "params.groups")
                update["groups"] = list(asked.groups or rule.groups)
    return p.model_copy(update=update) if update else p


def _fl(dataset_id: str, asked: FlParams, p: FlParams, rules: AnalysisRules) -> FlParams:
    bounds: list[tuple[float, float]] = []
    for i, name in enumerate(asked.features):
        rule = _column(dataset_id, rules, name, "params.features")
        mine = asked.feature_bounds[i] if asked.feature_bounds is not None else None
        if rule is None or rule.bounds is None:
            if mine is None:
                return p  # no bounds declared for every feature: nothing to wire
            bounds.append(mine)
            continue
        if mine is not None and not _within(mine, rule.bounds):
            raise _refuse(dataset_id, f"feature_bounds of {name!r} are outside", "params")
        bounds.append(rule.bounds)
    _column(dataset_id, rules, asked.label, "params.label")
    if p.feature_bounds is not None and p is not asked:  # standardise over every provider's
        bounds = [
            (min(a[0], b[0]), max(a[1], b[1]))
            for a, b in zip(p.feature_bounds, bounds, strict=True)
        ]
    return p.model_copy(update={"feature_bounds": bounds})

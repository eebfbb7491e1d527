"""Private joins in the computation workflow: what the policy sees, the checks, the release rules.

A join request (`psi.cardinality`, `psi.sum`, `stats.*` with a `join` clause) names two
inputs of two providers: inputs[0] is the cohort (its key, and the `group_by` column),
inputs[1] the value side (its key, and the aggregated `columns`). Before the decision,
each input's policy resource gains a `join` object (operator, side, key column, whether
its provider declared that column joinable for that identifier kind); `policies/joins.rego`
denies undeclared keys and member-revealing joins and adds the join obligations
(provider approval, `min_intersection`, DP on the released aggregates). Then come the
checks here: one cohort and one value input of two providers, the columns exist, no
identifier or personal column is grouped by or aggregated (a group per identifier would be
a membership oracle), each input is at least as large as the minimum intersection, and
DP sums are bounded. The run (`runs._execute`) is a `sandbox.joins.JoinJob`.

Each `join` object also says whether the input's provider is the requester's own legal
person (`requester_own`: the operator verified both organisations with one unified social
credit code) and the input's `custody` (`node` or `platform`). The policy refuses such an
input held on a node as a party beside another provider: the requester would read, on its
own node, what that party's sandbox sees. Platform-held it may be a party: the minimum
intersection is then decided on a noised count under DP (docs/privacy.md §6.1.1, §6.1.2).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

import policies
from exchange.computations.context import DEFAULT_MIN_COHORT
from exchange.errors import Forbidden, InvalidInput
from exchange.joinkeys import declared_kind
from exchange.market.models import Party
from exchange.models import Dataset, DatasetField
from exchange.resources import RequestInput
from sandbox._registry import STATS_OPERATORS
from sandbox.cohort_joins import COHORT_SECURITY, cohort_max_calls
from sandbox.join_params import JOIN_OPERATORS, JoinClause, JoinPlan, RequesterCohort
from sandbox.joins import JOIN_BATCH, JOIN_SECURITY, SESSION_OPERATOR
from sandbox.operators import (
    OperatorParams,
    PsiCardinalityParams,
    PsiIntersectionParams,
    PsiSumParams,
    StatsParams,
)
from sandbox.release import ReleaseObligations
from sandbox.vertical_ops import HETERO_SECURITY
from sandbox.vertical_params import HeteroParams

__all__ = [
    "DEFAULT_MIN_INTERSECTION",
    "check_hetero",
    "check_cohort_join",
    "check_join",
    "is_cohort_request",
    "is_join_request",
    "hetero_facts",
    "join_facts",
    "join_plan",
    "join_release_obligations",
    "node_max_calls",
    "node_operators",
    "policy_resources",
    "require_columns",
]

DEFAULT_MIN_INTERSECTION = 10
"""Where the policy names no `min_intersection`: the default cohort (docs/compliance.md PI-06)."""


HETERO = "fl.hetero_logreg"


def is_join_request(operator: str, raw: Mapping[str, Any]) -> bool:
    return (
        operator in JOIN_OPERATORS
        or operator == HETERO
        or (operator in STATS_OPERATORS and bool(raw.get("join") or raw.get("cohort")))
    )


def is_cohort_request(operator: str, raw: Mapping[str, Any]) -> bool:
    """A join whose cohort is the requester's own identifiers, held in its SDK (issue 18)."""
    return is_join_request(operator, raw) and operator != HETERO and bool(raw.get("cohort"))


def join_plan(operator: str, params: OperatorParams) -> JoinPlan | None:
    """The join a validated request computes, or None for a request that is no join."""
    if isinstance(params, PsiCardinalityParams | PsiSumParams | PsiIntersectionParams):
        return params.plan()
    if isinstance(params, StatsParams) and params.join is not None:
        return JoinPlan(params.query(operator), params.join)
    if isinstance(params, StatsParams) and params.cohort is not None:
        return JoinPlan(params.query(operator), params.cohort.clause(), params.cohort)
    return None


def node_operators(operator: str, params: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The registry operators a provider's node runs for a join job (None: not a join)."""
    if operator == HETERO:
        return (HETERO,)
    return (SESSION_OPERATOR,) if is_join_request(operator, params) else None


def node_max_calls(operator: str, params: Mapping[str, Any], rows: int) -> int | None:
    """Requests a join party's node session may serve: steps plus one per value batch."""
    if operator == HETERO:
        return 8 + 6 * int(params.get("iterations", 20))
    if is_cohort_request(operator, params):
        size = int((params.get("cohort") or {}).get("size", 0))
        return cohort_max_calls(size, rows)
    if is_join_request(operator, params):
        return 8 + -(-rows // JOIN_BATCH)
    return None


def policy_resources(
    session: Session,
    operator: str,
    raw: Mapping[str, Any],
    loaded: Sequence[RequestInput],
    *,
    requester_org: str | None = None,
) -> list[dict[str, Any]]:
    """Each input's policy resource, with its `join` object when the request is a join."""
    out = [dict(i.resource) for i in loaded]
    if not is_join_request(operator, raw):
        return out
    own = _own_entity(session, requester_org)
    if is_cohort_request(operator, raw):
        return _cohort_resources(session, operator, raw, loaded, out, own)
    try:
        if operator == HETERO:
            hetero = HeteroParams.model_validate(dict(raw))
            keys, id_kind = list(hetero.keys), hetero.kind
            sides = ["guest", *(["host"] * (len(keys) - 1))]
        else:
            clause = JoinClause.model_validate(raw.get("join"))
            keys, id_kind = [clause.left_key, clause.right_key], clause.kind
            sides = ["cohort", "values"]
    except ValidationError:
        return out  # the parameters are refused (422) once validated
    for inp, resource, key, side in zip(loaded, out, keys, sides, strict=False):
        kind = declared_kind(session, inp.dataset.id, key)
        resource["join"] = {
            "operator": operator,
            "side": side,
            "key": key,
            "kind": id_kind.value,
            "key_declared": kind is id_kind,
            "reveals_members": False,
            "requester_own": inp.dataset.owner_org in own,
            "custody": inp.dataset.custody,
        }
    return out


def _own_entity(session: Session, requester_org: str | None) -> set[str]:
    """The organisations verified as the requester's own legal person (itself included).

    The market's party verification (`exchange.market.parties`) is where the operator
    checked an organisation's unified social credit code; two organisations with one code
    are one legal person (its enterprise and provider accounts). Unverified: itself only.
    """
    if requester_org is None:
        return set()
    code = session.scalar(select(Party.credit_code).where(Party.org_id == requester_org))
    if code is None:
        return {requester_org}
    same = session.scalars(select(Party.org_id).where(Party.credit_code == code))
    return {requester_org, *same}


def _cohort_resources(
    session: Session,
    operator: str,
    raw: Mapping[str, Any],
    loaded: Sequence[RequestInput],
    out: list[dict[str, Any]],
    own: set[str],
) -> list[dict[str, Any]]:
    """The requester's own cohort: every input is a value side keyed on `cohort.key`."""
    try:
        cohort = RequesterCohort.model_validate(raw.get("cohort"))
    except ValidationError:
        return out  # refused (422) once validated
    for inp, resource in zip(loaded, out, strict=True):
        kind = declared_kind(session, inp.dataset.id, cohort.key)
        resource["join"] = {
            "operator": operator,
            "side": "values",
            "cohort": "requester",
            "key": cohort.key,
            "kind": cohort.kind.value,
            "key_declared": kind is cohort.kind,
            # psi.intersection hands the requester the members of its own list that the
            # provider holds: the policy decides whether that may be revealed.
            "reveals_members": operator == "psi.intersection",
            "requester_own": inp.dataset.owner_org in own,
            "custody": inp.dataset.custody,
        }
    return out


def check_cohort_join(
    datasets: Sequence[Dataset], plan: JoinPlan, ob: policies.Obligations
) -> None:
    """A join with the requester's own cohort: one provider's dataset, its columns, sizes, DP."""
    assert plan.cohort is not None
    if len(datasets) != 1:
        raise InvalidInput(
            "a join with your own cohort takes exactly one input: the provider's dataset",
            field="inputs",
        )
    (ds,) = datasets
    q = plan.query
    if q.op != "stats.count":
        # The requester's SDK relays the provider's encrypted values: it could scale them
        # past the DP noise, and the sandbox holding their key could tell which rows
        # matched (docs/privacy.md §6.1.4). Counts carry no values.
        raise Forbidden(
            "a join with your own cohort releases counts only (psi.cardinality, "
            "stats.count): sums over it need a verifiable shuffle, not built",
            obligation="cohort_counts_only",
        )
    fields = require_columns(ds, plan.right_columns)
    _refuse_aggregating_personal(ds, fields, q.columns, plan.cohort.key)
    minimum = min_intersection(ob)
    if plan.cohort.size < minimum:
        raise Forbidden(
            f"a cohort of {plan.cohort.size} is below the minimum intersection ({minimum}): "
            "a join with it could single out a person",
            obligation="min_intersection",
            min_intersection=minimum,
        )
    _check_sizes(datasets, ob)  # a count needs no clip under DP: its sensitivity is 1


def check_hetero(
    datasets: Sequence[Dataset], params: HeteroParams, ob: policies.Obligations
) -> None:
    """Guest first, one provider each, columns exist, no personal column trained on."""
    if len(datasets) != len(params.keys):
        raise InvalidInput("one key column (and feature list) per input", field="params.keys")
    if len({d.owner_org for d in datasets}) != len(datasets):
        raise InvalidInput("vertical learning takes one dataset per provider", field="inputs")
    for position, ds in enumerate(datasets):
        columns = params.columns(position)
        fields = require_columns(ds, columns)
        personal = [c for c in columns[1:] if fields[c].pi]
        if personal:
            raise Forbidden(
                f"column(s) {', '.join(personal)} of dataset {ds.id} hold personal "
                "information: a model is trained on other columns only",
                obligation="desensitise",
            )
    _check_sizes(datasets, ob)


def _check_sizes(datasets: Sequence[Dataset], ob: policies.Obligations) -> None:
    minimum = min_intersection(ob)
    small = [ds.id for ds in datasets if int(ds.rows) < minimum]
    if small:
        raise Forbidden(
            f"dataset(s) {', '.join(small)} hold fewer rows than the minimum intersection "
            f"({minimum}): a join with them could single out a person",
            obligation="min_intersection",
            min_intersection=minimum,
        )


def _refuse_aggregating_personal(
    ds: Dataset, fields: dict[str, DatasetField], columns: Sequence[str], key: str
) -> None:
    """`Forbidden` when a join would aggregate `ds`'s join key or a personal column of it."""
    personal = [c for c in columns if c == key or fields[c].pi]
    if personal:
        raise Forbidden(
            f"column(s) {', '.join(personal)} of dataset {ds.id} hold identifiers or "
            "personal information: a join aggregates other columns only",
            obligation="desensitise",
        )


def _fields(ds: Dataset) -> dict[str, DatasetField]:
    return {f.name: f for f in ds.fields}


def require_columns(ds: Dataset, columns: Sequence[str]) -> dict[str, DatasetField]:
    """The dataset's fields by name; `InvalidInput` when one of `columns` is not among them."""
    fields = _fields(ds)
    missing = [c for c in columns if c not in fields]
    if missing:
        raise InvalidInput(
            f"dataset {ds.id} has no column named {', '.join(missing)}",
            field="params",
            dataset_id=ds.id,
        )
    return fields


def check_join(
    datasets: Sequence[Dataset], plan: JoinPlan, ob: policies.Obligations, operator: str
) -> None:
    """The join's inputs, columns, sizes and DP bounds (policy has allowed it already)."""
    if plan.cohort is not None:
        check_cohort_join(datasets, plan, ob)
        return
    if len(datasets) != 2:
        raise InvalidInput(
            "a join takes exactly two inputs: the cohort, then the values", field="inputs"
        )
    left, right = datasets
    if left.owner_org == right.owner_org:
        raise InvalidInput("a join is between two providers' datasets", field="inputs")
    for ds, columns in ((left, plan.left_columns), (right, plan.right_columns)):
        require_columns(ds, columns)
    q = plan.query
    # Grouping by, or summing, an identifier or any personal column would release values
    # per person: a group holding one identifier answers "is this person in the join?".
    lf, rf = _fields(left), _fields(right)
    if q.group_by is not None and (q.group_by == plan.join.left_key or lf[q.group_by].pi):
        raise Forbidden(
            f"column {q.group_by} of dataset {left.id} is an identifier or personal "
            "information: a join may not be grouped by it",
            obligation="desensitise",
        )
    _refuse_aggregating_personal(right, rf, q.columns, plan.join.right_key)
    _check_sizes(datasets, ob)
    bounded = q.op == "stats.count" or q.clip is not None
    if ob.dp_epsilon is not None and not bounded:
        raise InvalidInput(
            f"the policy requires differential privacy (ε={ob.dp_epsilon}) on the join's "
            "released sums: give params.clip = [lo, hi]",
            field="params.clip",
        )
    del operator


def min_intersection(ob: policies.Obligations) -> int:
    floor = ob.cohort(DEFAULT_MIN_COHORT)
    wanted = ob.min_intersection if ob.min_intersection is not None else DEFAULT_MIN_INTERSECTION
    return max(wanted, floor)


def join_release_obligations(ob: policies.Obligations) -> ReleaseObligations:
    """The release gate's obligations for a join: the cohort is the minimum intersection."""
    return ReleaseObligations(
        min_cohort=min_intersection(ob),
        dp_epsilon=ob.dp_epsilon,
        provider_review_required=ob.release_review,
    )


def hetero_facts(params: HeteroParams, paillier_bits: int) -> dict[str, Any]:
    """The technique part of a vertical LR job's security facts."""
    return {
        **HETERO_SECURITY,
        "keys": {"scheme": "paillier", "key_bits": paillier_bits, "holder": "guest sandbox"},
        "iterations": params.iterations,
    }


def join_facts(plan: JoinPlan, paillier_bits: int) -> dict[str, Any]:
    """The technique part of the job's security facts (docs/compliance.md PCE-01)."""
    if plan.cohort is not None:
        return {
            **COHORT_SECURITY,
            "cohort": plan.cohort.model_dump(mode="json"),
            "statistic": plan.query.op,
            "keys": {"group": "P-256", "result": "encrypted under the requester's job key"},
        }  # fmt: skip
    return {
        **JOIN_SECURITY,
        "join": plan.join.model_dump(mode="json"),
        "statistic": plan.query.op,
        "keys": {"scheme": "paillier", "key_bits": paillier_bits, "group": "P-256"},
    }

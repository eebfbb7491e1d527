"""Requesting a computation: one load of its inputs, the policy decision, the checks, the write.

A request is decided per input dataset (`computation.request`, with the contract that
covers it). The datasets and contracts are loaded once, in the transaction that writes
the request; the decision is taken on those rows inside it (`decide`), and each contract
the policy saw is re-read under a share lock just before the write: a contract
terminated while the policy decided is seen, and one terminated afterwards waits for
this transaction (no time-of-check/time-of-use gap). Then come the operator's parameters
(`sandbox.operators`), the obligations (`policies.Obligations`), the columns, fair use
(`exchange.quotas`), and the request is recorded as `requested` and moved on to
`awaiting_approval` or `approved` (queued at once).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

import policies
from exchange import analysis_rules, budgets
from exchange.accounts import Caller, OrgKind, Role
from exchange.commitments import canonical, record_commitment
from exchange.computations import job_keys, joins
from exchange.computations.context import DEFAULT_MIN_COHORT, ComputeContext
from exchange.computations.runs import submit
from exchange.computations.schemas import ComputationCreate, ComputationPublic, to_public
from exchange.computations.state import State, transition
from exchange.errors import Conflict, Forbidden, InvalidInput
from exchange.market.agreements import meter_computation
from exchange.market.models import Agreement
from exchange.models import Computation, ComputationInput, Contract, Dataset
from exchange.quotas import admit, check_usage
from exchange.resources import RequestInput, covering_view, load_request_inputs
from sandbox.accounting import DEFAULT_DELTA
from sandbox.coordinator import SECURITY_MODEL
from sandbox.errors import ParamsInvalid, UnknownOperator
from sandbox.operators import (
    FlParams,
    HeteroParams,
    OperatorParams,
    StatsParams,
    validate_params,
)

__all__ = ["Decide", "request_computation"]

Decide = Callable[[Sequence[Mapping[str, Any]]], policies.Decision]
"""The enforcement point's decision on the request's policy resources (one per input)."""


def request_computation(
    ctx: ComputeContext,
    caller: Caller,
    body: ComputationCreate,
    *,
    decide: Decide,
) -> ComputationPublic:
    """Decide and record a request; hand it to the runner at once unless approval is required.

    `decide` is called once, inside the writing transaction, with one policy resource per
    input; it returns the combined (strictest) decision or raises when it denies.
    """
    now = ctx.clock()
    with ctx.sessions() as session, session.begin():
        loaded = load_request_inputs(
            session,
            caller,
            inputs=body.inputs,
            purpose=body.purpose,
            contract_id=body.agreement_id or body.contract_id,
            now=now,
        )
        # The providers' analysis rules travel in the policy input (docs/privacy.md §3).
        ruled = [(i.dataset.id, analysis_rules.load_rules(session, i.dataset.id)) for i in loaded]
        for inp, (_, rules) in zip(loaded, ruled, strict=True):
            inp.resource["analysis_rules"] = analysis_rules.policy_view(rules)
        resources = joins.policy_resources(
            session, body.operator, body.params, loaded, requester_org=caller.org_id
        )
        decision = decide(resources)
        caller.require_as(
            Role.DATA_CONSUMER, OrgKind.ENTERPRISE, "only an enterprise requests computations"
        )
        params = _validate_params(body.operator, body.params)
        ob = policies.Obligations.from_decision(decision.obligations)
        # Bounds, groups, cohort and ε per query are the providers', not the request's.
        params, ob = analysis_rules.apply(body.operator, params, ob, ruled)
        datasets = [i.dataset for i in loaded]
        if isinstance(params, FlParams):
            if len(datasets) < 2:
                raise InvalidInput("federated learning needs at least two inputs", field="inputs")
            owners = [d.owner_org for d in datasets]
            if len(set(owners)) != len(owners):
                raise InvalidInput("federated learning takes one dataset per provider")
        plan = joins.join_plan(body.operator, params)
        if plan is not None:
            joins.check_join(datasets, plan, ob, body.operator)
        elif isinstance(params, HeteroParams):
            joins.check_hetero(datasets, params, ob)
        else:
            _check_columns(datasets, params, ob)
        job_n = job_keys.check_request(session, body.operator, datasets, body.job_key)
        if plan is not None and plan.cohort is not None and body.job_key is None:
            raise InvalidInput(
                "a join with your own cohort runs in your SDK under your job key: send "
                "job_key (pdx_client.jobkeys.JobKey.generate().public())",
                field="job_key",
            )
        if isinstance(params, StatsParams) and plan is None:
            _check_dp(body.operator, params, ob)
        # Fair use (exchange.quotas): size and cost first, then the organisation's quota.
        check_usage(body.operator, params.model_dump(), datasets, ctx.usage_limits)
        admit(session, caller.org_id, ctx.quotas)
        _recheck_contracts(session, loaded)

        def charge(comp: Computation) -> None:
            """Charged at acceptance, in this transaction, before anything else is asked.

            The agreement's own limits are metered first: an exhausted agreement is
            refused as such, before it spends any privacy budget (both roll back alike).
            """
            _meter(ctx, session, caller, comp, loaded, ob, now)
            eps = ob.dp_epsilon or 0.0
            budgets.charge(
                session,
                ctx.catalog,
                computation_id=comp.id,
                requester_org=caller.org_id,
                datasets=datasets,
                epsilon=eps,
                delta=DEFAULT_DELTA if eps and isinstance(params, FlParams) else 0.0,
                limits=ctx.budget_limits,
                now=now,
            )

        comp = _record(ctx, session, caller, body, loaded, params, ob, decision, now, charge)
        if body.job_key is not None and job_n is not None:
            job_keys.store_job_key(session, comp, body.job_key, now)
        public = to_public(comp, ledger_index=comp.transitions[0]["ledger_index"])
    if public.state == State.APPROVED:
        submit(ctx, public.id, caller.org_id)
    return public


def _recheck_contracts(session: Session, loaded: Sequence[RequestInput]) -> None:
    """Each contract the policy saw, read again under a share lock, is as it was decided on.

    A termination (or any change) committed while the policy decided is refused here; one
    attempted after this read waits for the request's transaction (PostgreSQL `FOR SHARE`;
    SQLite write transactions are serial and this one holds the write lock).
    """
    for inp in loaded:
        if inp.contract is None:
            continue
        # An agreement is locked for update: its meter is written in this transaction.
        lock: bool | dict[str, bool] = (
            True if isinstance(inp.contract, Agreement) else {"read": True}
        )
        session.refresh(inp.contract, with_for_update=lock)
        if covering_view(inp.contract) != inp.resource.get("contract"):
            raise Conflict(
                f"contract {inp.contract.id} changed while the request was decided "
                f"(now {_state(inp.contract)}); ask again",
                contract_id=inp.contract.id,
                contract_status=_state(inp.contract),
            )


def _state(covering: Contract | Agreement) -> str:
    return covering.state if isinstance(covering, Agreement) else covering.status


def _meter(
    ctx: ComputeContext,
    session: Session,
    caller: Caller,
    comp: Computation,
    loaded: Sequence[RequestInput],
    ob: policies.Obligations,
    now: datetime,
) -> None:
    """Meter the request under each agreement it uses (exchange.market), in its transaction."""
    seen: set[str] = set()
    for inp in loaded:
        agreement = inp.contract
        if not isinstance(agreement, Agreement) or agreement.id in seen:
            continue
        seen.add(agreement.id)
        meter_computation(
            session,
            ctx.trail,
            caller,
            agreement=agreement,
            computation_id=comp.id,
            operator=comp.operator,
            purpose=comp.purpose,
            datasets=[i.dataset for i in loaded],
            epsilon=ob.dp_epsilon or 0.0,
            now=now,
        )


def _record(
    ctx: ComputeContext,
    session: Session,
    caller: Caller,
    body: ComputationCreate,
    loaded: Sequence[RequestInput],
    params: OperatorParams,
    ob: policies.Obligations,
    decision: policies.Decision,
    now: datetime,
    charge: Callable[[Computation], None],
) -> Computation:
    """Write the request, its inputs, its budget charge and its first transitions."""
    inputs = [i.dataset.id for i in loaded]
    comp = Computation(
        id=str(uuid.uuid4()),
        requester_org=caller.org_id,
        requested_by=caller.client_id,
        operator=body.operator,
        params=params.model_dump(mode="json"),
        purpose=body.purpose,
        legal_basis=body.legal_basis,
        state=State.REQUESTED.value,
        obligations=ob.as_dict(),
        decisions=[{"action": "computation.request", "decision_id": decision.decision_id}],
        security_model=_job_facts(body.operator, params, ob, ctx.paillier_bits),
        transitions=[],
        error=None,
        created_at=now,
        updated_at=now,
    )
    for position, inp in enumerate(loaded):
        ds = inp.dataset
        comp.inputs.append(
            ComputationInput(
                dataset_id=ds.id,
                position=position,
                provider_org=ds.owner_org,
                contract_id=inp.contract.id if inp.contract is not None else None,
                level=ds.level,
                custody=ds.custody,
                approval="pending" if ob.require_provider_approval else "not-required",
                release_approval="pending" if ob.release_review else "not-required",
            )
        )
    session.add(comp)
    session.flush()
    charge(comp)
    subject = caller.subject()
    # A keyed commitment, not a plain digest: parameter spaces are small (exchange.commitments).
    digest = record_commitment(
        session,
        comp.id,
        "query",
        canonical({"operator": comp.operator, "params": comp.params, "inputs": inputs}),
        now=now,
    )
    transition(
        ctx,
        session,
        comp,
        subject,
        event="requested",
        action="request",
        now=now,
        expect=State.REQUESTED,
        detail=f"operator={comp.operator} inputs={len(inputs)}",
        digest=digest,
    )
    # Parked for its providers' approval, or approved at once where the policy needs none.
    parked = ob.require_provider_approval
    providers = ", ".join(sorted({i.dataset.owner_org for i in loaded}))
    transition(
        ctx,
        session,
        comp,
        subject,
        event="awaiting_approval" if parked else "approved",
        action="park" if parked else "approve",
        now=now,
        expect=State.REQUESTED,
        state=State.AWAITING_APPROVAL if parked else State.APPROVED,
        detail=f"providers: {providers}" if parked else "no provider approval required by policy",
    )
    return comp


def _validate_params(operator: str, raw: dict[str, Any]) -> OperatorParams:
    """The operator's parameters (`sandbox.operators`), refusals as invalid input."""
    try:
        return validate_params(operator, raw)
    except UnknownOperator:
        raise InvalidInput(
            f"no vetted operator named {operator!r}; see GET /v1/operators", field="operator"
        ) from None
    except ParamsInvalid as exc:
        raise InvalidInput(exc.detail, field=exc.field) from None


def _job_facts(
    operator: str, params: OperatorParams, ob: policies.Obligations, paillier_bits: int
) -> dict[str, Any]:
    """The job's technique, keys, parameters and threat model (docs/compliance.md PCE-01)."""
    plan = joins.join_plan(operator, params)
    if plan is not None:
        technique = joins.join_facts(plan, paillier_bits)
    elif isinstance(params, HeteroParams):
        technique = joins.hetero_facts(params, paillier_bits)
    elif isinstance(params, FlParams):
        technique = {
            "technique": "horizontal federated learning (FedAvg), logistic regression",
            "aggregation": "CKKS (TenSEAL) secure aggregation of model updates",
            "keys": {"scheme": "ckks", "params": {"poly_modulus_degree": 4096}},
            "standardisation": "exact secure statistics (Paillier, 2048-bit)",
        }
    else:
        assert isinstance(params, StatsParams)
        scheme = params.query(operator).job_scheme
        technique = {
            "technique": "additively homomorphic encryption of per-provider partial aggregates",
            "keys": {"scheme": "paillier", "key_bits": paillier_bits}
            if scheme == "paillier-packed"
            else {"scheme": "ckks", "params": {"poly_modulus_degree": 8192}},
        }
    return {
        **technique,
        "security_model": "semi-honest",
        "threat_model": SECURITY_MODEL.as_dict(),
        "isolation": "each provider's operator runs in its own sandbox (bubblewrap: no "
        "network, read-only input, CPU/memory/time limits), on the platform for "
        "platform-held data and on the provider's node for node-held data",
        "release": {
            "min_cohort": joins.join_release_obligations(ob).min_cohort
            if plan is not None or isinstance(params, HeteroParams)
            else ob.cohort(DEFAULT_MIN_COHORT),
            "dp_epsilon": ob.dp_epsilon,
            "provider_review": ob.release_review,
        },
        "secret_key_custody": "job secret key sealed under the result party's KEK; "
        "deleted when the job ends",
    }


def _check_columns(
    datasets: Sequence[Dataset], params: OperatorParams, ob: policies.Obligations
) -> None:
    """Every column the operator reads exists in every input; none is PI if desensitise."""
    used = list(dict.fromkeys(params.used_columns()))
    for ds in datasets:
        fields = joins.require_columns(ds, used)
        if ob.desensitise:
            personal = [c for c in used if fields[c].pi]
            if personal:
                raise Forbidden(
                    "the policy requires desensitised use: column(s) "
                    f"{', '.join(personal)} of dataset {ds.id} hold personal information",
                    obligation="desensitise",
                )


def _check_dp(operator: str, params: StatsParams, ob: policies.Obligations) -> None:
    """DP noise on sums needs bounded values: ask for clip bounds now, not after approval."""
    bounded = operator in ("stats.count", "stats.histogram") or params.clip is not None
    if ob.dp_epsilon is not None and not bounded:
        raise InvalidInput(
            f"the policy requires differential privacy (ε={ob.dp_epsilon}): give "
            "params.clip = [lo, hi] so each record's influence is bounded",
            field="params.clip",
        )

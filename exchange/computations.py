"""Computation requests and their state machine ("usable but invisible", 可用不可见).

    requested ─► awaiting-approval ─► approved ─► running ─► review ─► released
        │               │                           │          │
        └───────────────┴──► rejected ◄─────────────┴──────────┘    running ─► failed

* `requested`: the enterprise asked; the enforcement point has decided
  `computation.request` on every input (a denial never gets here) and passed the
  strictest obligations, which are stored with the request.
* `awaiting-approval` (obligation `require_provider_approval`): each input's provider
  approves or rejects (`computation.approve` decisions). No operator code runs before
  every approval is in: the job is handed to the runner only on entering `approved`.
* `running`: per provider, the vetted operator runs on that provider's rows inside the
  sandbox isolation: platform-held inputs are decrypted (`iter_plaintext`) into a
  private job directory for the platform's sandbox, node-held inputs run on the
  provider's node (`sandbox.nodes`). Each returns only an encrypted partial; the
  coordinator adds ciphertexts; the result party (the requester) decrypts the
  aggregate with the job's secret key, which is sealed under its KEK.
* The release gate enforces `min_cohort`, `dp_epsilon` (charged to each dataset's
  budget) and shape; with `release_review` the output is held in `review` until each
  provider approves it. `rejected`: a provider said no, or the gate refused.
* `released`: the requester (result party) alone fetches the output; each fetch is
  recorded as a delivery (PIPL art. 23, COMPLIANCE.md §2).

Every transition is an audit record and a ledger entry in the transaction that makes it
(`Trail.record`); the computation lists the ledger index of each.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import or_, select
from sqlalchemy.orm import Session, selectinload

import audit
import crypto
from exchange.accounts import Caller, OrgKind, Role
from exchange.catalog import CatalogContext, iter_plaintext
from exchange.contracts import contract_for, contract_policy_view
from exchange.custody import node_data_key, node_for
from exchange.errors import Conflict, ExchangeError, Forbidden, InvalidInput, NotFound
from exchange.jobs import (
    DbPrivacyBudget,
    JobRunner,
    ThreadRunner,
    export_secret,
    open_sealed,
    restore_result_party,
    seal,
)
from exchange.levels import max_level
from exchange.models import (
    Computation,
    ComputationInput,
    Dataset,
    DatasetField,
    NodeDataset,
    Organisation,
)
from exchange.quotas import DEFAULT_QUOTAS, DEFAULT_USAGE_LIMITS, Quotas, admit, check_usage
from exchange.trail import Trail
from sandbox.coordinator import SECURITY_MODEL
from sandbox.errors import ReleaseRefused, SandboxError
from sandbox.fl import FlConfig, FlJob
from sandbox.isolation import Sandbox
from sandbox.nodes import (
    NodeGrant,
    NodeJob,
    NodeRegistry,
    NodeSandbox,
    ProviderNode,
    node_input_path,
)
from sandbox.operators import (
    REGISTRY,
    STATS_OPERATORS,
    ProviderInput,
    UsageLimits,
    default_sandbox,
)
from sandbox.release import Release, ReleaseGate, ReleaseObligations
from sandbox.stats import StatsJob, StatsQuery

__all__ = [
    "ComputationCreate",
    "ComputationPublic",
    "ComputationResult",
    "ComputeContext",
    "FlParams",
    "OperatorPublic",
    "State",
    "StatsParams",
    "approval_resources",
    "decide",
    "get_computation",
    "get_result",
    "list_computations",
    "list_operators",
    "purge_expired",
    "recover",
    "request_computation",
    "request_resources",
    "review_output",
    "run_job",
]

log = logging.getLogger("pdx.computations")

DEFAULT_MIN_COHORT = 10
"""k ≥ 10 (COMPLIANCE.md §2 [choose]) where the policy names no cohort."""
DEFAULT_RETENTION = timedelta(days=180)
"""How long a released output is kept (sealed) before it is crypto-shredded."""
MAX_INPUTS = 16
PLATFORM_PARTY = "platform"


class State(StrEnum):
    REQUESTED = "requested"
    AWAITING_APPROVAL = "awaiting-approval"
    APPROVED = "approved"
    RUNNING = "running"
    REVIEW = "review"
    RELEASED = "released"
    REJECTED = "rejected"
    FAILED = "failed"


TERMINAL = frozenset({State.RELEASED, State.REJECTED, State.FAILED})


# -- operator parameters ----------------------------------------------------------------------


class StatsParams(BaseModel):
    """Parameters of `stats.*` (see `sandbox.stats.StatsQuery`)."""

    model_config = ConfigDict(extra="forbid")

    columns: list[str] = Field(default_factory=list, max_length=64, description="numeric columns")
    group_by: str | None = Field(default=None, description="a low-cardinality column")
    groups: list[str] = Field(default_factory=list, max_length=20, description="its values")
    bins: int | None = Field(default=None, ge=1, le=1000, description="histogram bins")
    range: tuple[float, float] | None = Field(default=None, description="histogram [lo, hi]")
    clip: tuple[float, float] | None = Field(
        default=None, description="clip values to [lo, hi]; needed when DP noise is required"
    )
    decimals: int = Field(default=6, ge=0, le=12, description="fixed-point digits")
    scheme: Literal["paillier", "ckks"] | None = None

    def query(self, operator: str) -> StatsQuery:
        return StatsQuery.from_params({"op": operator, **self.model_dump()})

    def used_columns(self) -> list[str]:
        return [*self.columns, *([self.group_by] if self.group_by else [])]


class FlParams(BaseModel):
    """Parameters of `fl.logreg` (see `sandbox.fl.FlConfig`); DP comes from the policy."""

    model_config = ConfigDict(extra="forbid")

    features: list[str] = Field(min_length=1, max_length=64)
    label: str = "target"
    rounds: int = Field(default=50, ge=1, le=200)
    local_epochs: int = Field(default=20, ge=1, le=200)
    learning_rate: float = Field(default=0.5, gt=0, le=10)
    C: float = Field(default=1.0, gt=0)
    early_stopping: bool = True
    tol: float = Field(default=1e-4, ge=0)
    patience: int = Field(default=5, ge=1)
    clip_norm: float = Field(default=1.0, gt=0)

    def config(self) -> FlConfig:
        d = self.model_dump()
        d["features"] = tuple(d["features"])
        return FlConfig(**d)

    def used_columns(self) -> list[str]:
        return [*self.features, self.label]


PARAMS: dict[str, type[StatsParams] | type[FlParams]] = {
    **{op: StatsParams for op in STATS_OPERATORS},
    "fl.logreg": FlParams,
}


class OperatorPublic(BaseModel):
    name: str
    description: str
    technique: str
    min_providers: int
    parameters: dict[str, Any] = Field(description="JSON Schema of `params`")


def list_operators() -> list[OperatorPublic]:
    """The vetted operators a request may name, with their parameters' JSON Schema."""
    out = []
    for name in REGISTRY:
        params = PARAMS.get(name)
        if params is None:
            continue
        fl = name.startswith("fl.")
        out.append(
            OperatorPublic(
                name=name,
                description=REGISTRY[name].description,
                technique="federated learning (FedAvg), CKKS secure aggregation"
                if fl
                else "additively homomorphic encryption (Paillier or CKKS)",
                min_providers=2 if fl else 1,
                parameters=params.model_json_schema(),
            )
        )
    return out


# -- requests and views -----------------------------------------------------------------------


class ComputationCreate(BaseModel):
    """What an enterprise asks for."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    operator: str = Field(min_length=1, max_length=64)
    inputs: list[str] = Field(min_length=1, max_length=MAX_INPUTS, description="dataset ids")
    params: dict[str, Any] = Field(default_factory=dict)
    purpose: str = Field(min_length=3, max_length=500, description="must equal the contract's")
    legal_basis: str | None = Field(
        default=None, max_length=200, description="consent:<id> or statute:<ref> (PI data)"
    )
    contract_id: str | None = Field(default=None, max_length=36)


class TransitionPublic(BaseModel):
    state: str
    event: str
    at: datetime
    by: str
    ledger_index: int | None
    detail: str | None = None


class ApprovalPublic(BaseModel):
    state: str
    by: str | None
    at: datetime | None


class InputPublic(BaseModel):
    dataset_id: str
    provider_org: str
    level: str
    custody: str
    contract_id: str | None
    approval: ApprovalPublic
    release_approval: ApprovalPublic


class ParticipantPublic(BaseModel):
    party: str = Field(description="organisation id, or 'platform' for the coordinator")
    roles: list[Literal["input", "compute", "result"]]
    description: str


class ComputationPublic(BaseModel):
    id: str
    state: State
    operator: str
    params: dict[str, Any]
    purpose: str
    legal_basis: str | None
    requester_org: str
    requested_by: str
    created_at: datetime
    updated_at: datetime
    inputs: list[InputPublic]
    participants: list[ParticipantPublic]
    decisions: list[dict[str, Any]]
    obligations: dict[str, Any]
    security_model: dict[str, Any]
    transitions: list[TransitionPublic]
    error: dict[str, Any] | None
    epsilon_spent: float | None
    result_available: bool
    ledger_index: int | None = Field(
        default=None, description="the ledger entry of the transition this response reports"
    )


class ComputationResult(BaseModel):
    computation_id: str
    operator: str
    output: dict[str, Any]
    epsilon_spent: float | None
    sha256: str = Field(description="digest of the output as released (on the ledger)")
    ledger_index: int | None = Field(description="the delivery's ledger entry")


# -- the context --------------------------------------------------------------------------------


@dataclass
class ComputeContext:
    """What computations need from the composition root."""

    sessions: Callable[[], Session]
    catalog: CatalogContext
    nodes: NodeRegistry
    workdir: Path
    clock: Callable[[], datetime]
    runner: JobRunner = field(default_factory=ThreadRunner)
    sandbox: Callable[[], Sandbox] = default_sandbox
    retention: timedelta = DEFAULT_RETENTION
    paillier_bits: int = 2048
    budget: DbPrivacyBudget | None = None
    sandbox_runs: int = 0
    """Jobs whose operators were started (what tests count: none for a refused request)."""
    quotas: Quotas = DEFAULT_QUOTAS
    usage_limits: UsageLimits = DEFAULT_USAGE_LIMITS

    def __post_init__(self) -> None:
        if self.budget is None:
            self.budget = DbPrivacyBudget(self.sessions, self.clock)

    @property
    def trail(self) -> Trail:
        return self.catalog.trail

    @property
    def keystore(self) -> crypto.KeyStore:
        return self.catalog.keystore


@dataclass(frozen=True)
class Obligations:
    """The decision's obligations as this module enforces them."""

    require_provider_approval: bool
    release_review: bool
    min_cohort: int
    dp_epsilon: float | None
    desensitise: bool

    @classmethod
    def from_decision(cls, raw: Mapping[str, Any]) -> Obligations:
        eps = raw.get("dp_epsilon")
        cohort = raw.get("min_cohort")
        return cls(
            require_provider_approval=bool(raw.get("require_provider_approval")),
            release_review=bool(raw.get("release_review")),
            min_cohort=int(cohort) if cohort is not None else DEFAULT_MIN_COHORT,
            dp_epsilon=float(eps) if eps is not None else None,
            desensitise=bool(raw.get("desensitise")),
        )

    def release(self) -> ReleaseObligations:
        return ReleaseObligations(
            min_cohort=self.min_cohort,
            dp_epsilon=self.dp_epsilon,
            provider_review_required=self.release_review,
        )


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


# -- policy resources ---------------------------------------------------------------------------


def request_resources(
    session: Session,
    caller: Caller,
    *,
    inputs: Sequence[str],
    purpose: str,
    contract_id: str | None,
    now: datetime,
) -> list[dict[str, Any]]:
    """One policy `resource` per input dataset, each with the contract that covers it."""
    out = []
    for dataset_id in dict.fromkeys(inputs):
        ds = session.get(Dataset, dataset_id)
        if ds is None:
            raise NotFound("no such dataset", dataset_id=dataset_id)
        resource = _dataset_resource(ds)
        contract = contract_for(
            session,
            consumer_org=caller.org_id,
            dataset=ds,
            purpose=purpose,
            now=now,
            contract_id=contract_id,
        )
        if contract is not None:
            resource["contract"] = contract_policy_view(contract)
        out.append(resource)
    return out


def _dataset_resource(ds: Dataset) -> dict[str, Any]:
    return {
        "type": "dataset",
        "id": ds.id,
        "level": ds.level,
        "open_attribute": ds.open_attribute,
        "owner_org": ds.owner_org,
        "pi": ds.pi,
    }


def approval_resources(
    session: Session, caller: Caller, computation_id: str
) -> list[dict[str, Any]]:
    """The caller's organisation's inputs to a computation, as `computation.approve` sees them."""
    comp = session.get(Computation, computation_id, options=[selectinload(Computation.inputs)])
    if comp is None:
        raise NotFound("no such computation", computation_id=computation_id)
    out = []
    for inp in comp.inputs:
        if inp.provider_org != caller.org_id:
            continue
        ds = session.get(Dataset, inp.dataset_id)
        assert ds is not None
        resource = _dataset_resource(ds)
        resource["computation"] = {"id": comp.id, "requester_org": comp.requester_org}
        out.append(resource)
    return out


# -- helpers --------------------------------------------------------------------------------------


def _load(session: Session, computation_id: str, *, lock: bool = False) -> Computation:
    comp = session.get(
        Computation,
        computation_id,
        options=[selectinload(Computation.inputs)],
        with_for_update=lock,
    )
    if comp is None:
        raise NotFound("no such computation", computation_id=computation_id)
    return comp


def _platform_subject(decision_id: str | None = None) -> audit.Subject:
    return audit.Subject(PLATFORM_PARTY, None, None, None, decision_id)


def _level(comp: Computation) -> str | None:
    return max_level(*(i.level for i in comp.inputs)).value if comp.inputs else None


def _transition(
    ctx: ComputeContext,
    session: Session,
    comp: Computation,
    subject: audit.Subject,
    *,
    event: str,
    action: str,
    now: datetime,
    state: State | None = None,
    detail: str | None = None,
    digest: str | None = None,
) -> int | None:
    """Change state (if given) and record the event: audit record + ledger entry + history."""
    if state is not None:
        comp.state = state.value
    comp.updated_at = now
    receipt = ctx.trail.record(
        session,
        subject,
        audit.AuditEvent(
            f"computation.{event}",
            action,
            audit.Result.SUCCESS,
            object_id=comp.id,
            purpose=comp.purpose,
            data_level=_level(comp),
            detail=(detail or "")[:512] or None,
        ),
        object_type="computation",
        payload_digest=digest,
        now=now,
    )
    comp.transitions = [
        *comp.transitions,
        {
            "state": comp.state,
            "event": event,
            "at": now.isoformat(),
            "by": subject.subject_id or PLATFORM_PARTY,
            "ledger_index": receipt.ledger_index,
            "detail": detail,
        },
    ]
    return receipt.ledger_index


def _sees(caller: Caller, comp: Computation) -> bool:
    return (
        caller.org_id == comp.requester_org
        or any(i.provider_org == caller.org_id for i in comp.inputs)
        or bool(caller.roles & {Role.AUDITOR, Role.SECURITY_ADMIN})
    )


def _validate_params(operator: str, raw: dict[str, Any]) -> StatsParams | FlParams:
    model = PARAMS.get(operator)
    if model is None:
        raise InvalidInput(
            f"no vetted operator named {operator!r}; see GET /v1/operators", field="operator"
        )
    try:
        params = model.model_validate(raw)
        if isinstance(params, StatsParams):
            params.query(operator)
        else:
            params.config()
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(f"params.{where}: {first['msg']}", field=f"params.{where}") from None
    except SandboxError as exc:
        raise InvalidInput(f"params: {exc.detail}", field="params") from None
    return params


def _job_facts(
    operator: str, params: StatsParams | FlParams, ob: Obligations, paillier_bits: int
) -> dict[str, Any]:
    """The job's technique, keys, parameters and threat model (COMPLIANCE.md §6)."""
    if isinstance(params, FlParams):
        technique = {
            "technique": "horizontal federated learning (FedAvg), logistic regression",
            "aggregation": "CKKS (TenSEAL) secure aggregation of model updates",
            "keys": {"scheme": "ckks", "params": {"poly_modulus_degree": 4096}},
            "standardisation": "exact secure statistics (Paillier, 2048-bit)",
        }
    else:
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
            "min_cohort": ob.min_cohort,
            "dp_epsilon": ob.dp_epsilon,
            "provider_review": ob.release_review,
        },
        "secret_key_custody": "job secret key sealed under the result party's KEK; "
        "deleted when the job ends",
    }


def to_public(comp: Computation, *, ledger_index: int | None = None) -> ComputationPublic:
    providers: dict[str, list[ComputationInput]] = {}
    for inp in comp.inputs:
        providers.setdefault(inp.provider_org, []).append(inp)
    participants = [
        ParticipantPublic(
            party=org,
            roles=["input", "compute"],
            description="provider: its operator runs on its own rows "
            + (
                "on its node"
                if any(i.custody == "node" for i in inputs)
                else "in the platform's sandbox"
            )
            + " and returns only an encrypted partial",
        )
        for org, inputs in providers.items()
    ]
    participants.append(
        ParticipantPublic(
            party=PLATFORM_PARTY,
            roles=["compute"],
            description="coordinator: adds ciphertexts; holds no secret key",
        )
    )
    participants.append(
        ParticipantPublic(
            party=comp.requester_org,
            roles=["result"],
            description="requester: holds the job secret key (under its KEK), decrypts only "
            "the aggregate, receives what the release gate releases",
        )
    )

    def approval(state: str, by: str | None, at: datetime | None) -> ApprovalPublic:
        return ApprovalPublic(state=state, by=by, at=at)

    return ComputationPublic(
        id=comp.id,
        state=State(comp.state),
        operator=comp.operator,
        params=comp.params,
        purpose=comp.purpose,
        legal_basis=comp.legal_basis,
        requester_org=comp.requester_org,
        requested_by=comp.requested_by,
        created_at=comp.created_at,
        updated_at=comp.updated_at,
        inputs=[
            InputPublic(
                dataset_id=i.dataset_id,
                provider_org=i.provider_org,
                level=i.level,
                custody=i.custody,
                contract_id=i.contract_id,
                approval=approval(i.approval, i.approved_by, i.approved_at),
                release_approval=approval(
                    i.release_approval, i.release_approved_by, i.release_approved_at
                ),
            )
            for i in comp.inputs
        ],
        participants=participants,
        decisions=list(comp.decisions),
        obligations=dict(comp.obligations),
        security_model=dict(comp.security_model),
        transitions=[TransitionPublic.model_validate(t) for t in comp.transitions],
        error=comp.error,
        epsilon_spent=comp.epsilon_spent,
        result_available=comp.state == State.RELEASED and comp.result_sealed is not None,
        ledger_index=ledger_index,
    )


# -- request ------------------------------------------------------------------------------------


def request_computation(
    ctx: ComputeContext,
    caller: Caller,
    body: ComputationCreate,
    *,
    obligations: Mapping[str, Any],
    decision_id: str | None,
) -> ComputationPublic:
    """Record an allowed request; hand it to the runner at once unless approval is required.

    `obligations` are the enforcement point's combined (strictest) obligations of the
    `computation.request` decisions on every input; `decision_id` names that decision.
    """
    caller.require(Role.DATA_CONSUMER)
    if caller.org_kind is not OrgKind.ENTERPRISE:
        raise Forbidden("only an enterprise requests computations")
    params = _validate_params(body.operator, body.params)
    ob = Obligations.from_decision(obligations)
    inputs = list(dict.fromkeys(body.inputs))
    if isinstance(params, FlParams) and len({*inputs}) < 2:
        raise InvalidInput("federated learning needs at least two inputs", field="inputs")
    now = ctx.clock()
    with ctx.sessions() as session, session.begin():
        datasets = []
        for dataset_id in inputs:
            ds = session.get(Dataset, dataset_id, options=[selectinload(Dataset.fields)])
            if ds is None:
                raise NotFound("no such dataset", dataset_id=dataset_id)
            datasets.append(ds)
        if isinstance(params, FlParams):
            owners = [d.owner_org for d in datasets]
            if len(set(owners)) != len(owners):
                raise InvalidInput("federated learning takes one dataset per provider")
        _check_columns(datasets, params, ob)
        if isinstance(params, StatsParams):
            _check_dp(body.operator, params, ob)
        # Fair use (exchange.quotas): size and cost first, then the organisation's quota.
        check_usage(body.operator, params.model_dump(), datasets, ctx.usage_limits)
        admit(session, caller.org_id, ctx.quotas)
        comp = Computation(
            id=str(uuid.uuid4()),
            requester_org=caller.org_id,
            requested_by=caller.client_id,
            operator=body.operator,
            params=params.model_dump(mode="json"),
            purpose=body.purpose,
            legal_basis=body.legal_basis,
            state=State.REQUESTED.value,
            obligations=dict(obligations),
            decisions=[{"action": "computation.request", "decision_id": decision_id}],
            security_model=_job_facts(body.operator, params, ob, ctx.paillier_bits),
            transitions=[],
            error=None,
            created_at=now,
            updated_at=now,
        )
        for position, ds in enumerate(datasets):
            contract = contract_for(
                session,
                consumer_org=caller.org_id,
                dataset=ds,
                purpose=body.purpose,
                now=now,
                contract_id=body.contract_id,
            )
            comp.inputs.append(
                ComputationInput(
                    dataset_id=ds.id,
                    position=position,
                    provider_org=ds.owner_org,
                    contract_id=contract.id if contract is not None else None,
                    level=ds.level,
                    custody=ds.custody,
                    approval="pending" if ob.require_provider_approval else "not-required",
                    release_approval="pending" if ob.release_review else "not-required",
                )
            )
        session.add(comp)
        session.flush()
        subject = caller.subject()
        digest = hashlib.sha256(
            json.dumps(
                {"operator": comp.operator, "params": comp.params, "inputs": inputs},
                sort_keys=True,
            ).encode()
        ).hexdigest()
        index = _transition(
            ctx,
            session,
            comp,
            subject,
            event="requested",
            action="request",
            now=now,
            detail=f"operator={comp.operator} inputs={len(inputs)}",
            digest=f"sha256:{digest}",
        )
        if ob.require_provider_approval:
            _transition(
                ctx,
                session,
                comp,
                subject,
                event="awaiting_approval",
                action="park",
                now=now,
                state=State.AWAITING_APPROVAL,
                detail="providers: " + ", ".join(sorted({d.owner_org for d in datasets})),
            )
        else:
            _transition(
                ctx,
                session,
                comp,
                subject,
                event="approved",
                action="approve",
                now=now,
                state=State.APPROVED,
                detail="no provider approval required by policy",
            )
        public = to_public(comp, ledger_index=index)
    if public.state == State.APPROVED:
        _submit(ctx, comp.id, caller.org_id)
    return public


def _check_columns(
    datasets: Sequence[Dataset], params: StatsParams | FlParams, ob: Obligations
) -> None:
    """Every column the operator reads exists in every input; none is PI if desensitise."""
    used = list(dict.fromkeys(params.used_columns()))
    for ds in datasets:
        fields: dict[str, DatasetField] = {f.name: f for f in ds.fields}
        missing = [c for c in used if c not in fields]
        if missing:
            raise InvalidInput(
                f"dataset {ds.id} has no column named {', '.join(missing)}",
                field="params",
                dataset_id=ds.id,
            )
        if ob.desensitise:
            personal = [c for c in used if fields[c].pi]
            if personal:
                raise Forbidden(
                    "the policy requires desensitised use: column(s) "
                    f"{', '.join(personal)} of dataset {ds.id} hold personal information",
                    obligation="desensitise",
                )


def _check_dp(operator: str, params: StatsParams, ob: Obligations) -> None:
    """DP noise on sums needs bounded values: ask for clip bounds now, not after approval."""
    bounded = operator in ("stats.count", "stats.histogram") or params.clip is not None
    if ob.dp_epsilon is not None and not bounded:
        raise InvalidInput(
            f"the policy requires differential privacy (ε={ob.dp_epsilon}): give "
            "params.clip = [lo, hi] so each record's influence is bounded",
            field="params.clip",
        )


# -- approvals --------------------------------------------------------------------------------


def decide(
    ctx: ComputeContext,
    caller: Caller,
    computation_id: str,
    *,
    approve: bool,
    reason: str = "",
    decision_id: str | None,
) -> ComputationPublic:
    """A provider approves or rejects: the run (awaiting-approval) or the release (review)."""
    caller.require(Role.DATA_PROVIDER)
    now = ctx.clock()
    with ctx.sessions() as session, session.begin():
        comp = _load(session, computation_id, lock=True)
        mine = [i for i in comp.inputs if i.provider_org == caller.org_id]
        if not mine:
            if not _sees(caller, comp):
                raise NotFound("no such computation", computation_id=computation_id)
            raise Forbidden("only a provider of this computation's inputs decides on it")
        state = State(comp.state)
        subject = caller.subject()
        comp.decisions = [
            *comp.decisions,
            {
                "action": "computation.approve",
                "decision_id": decision_id,
                "by": caller.client_id,
                "org": caller.org_id,
                "approve": approve,
                "stage": "release" if state is State.REVIEW else "run",
            },
        ]
        if state is State.AWAITING_APPROVAL:
            index = _decide_stage(
                _RUN, ctx, session, comp, mine, caller, subject, approve, reason, now
            )
        elif state is State.REVIEW:
            index = _decide_stage(
                _RELEASE, ctx, session, comp, mine, caller, subject, approve, reason, now
            )
        else:
            raise Conflict(
                f"the computation is {state.value}: nothing to approve", state=state.value
            )
        public = to_public(comp, ledger_index=index)
    if public.state == State.APPROVED:
        _submit(ctx, computation_id, public.requester_org)
    return public


@dataclass(frozen=True)
class _Stage:
    """One of the two provider decisions on a computation: to run it, or to release it."""

    prefix: str  # ComputationInput column prefix: "" (run) or "release_" (release)
    already: str
    refused: str
    approved_event: str
    approved: str
    done_event: str
    done_action: str
    done_state: State
    done_detail: str
    shred_on_reject: bool


_RUN = _Stage(
    prefix="",
    already="this provider has already decided on this computation",
    refused="rejected the run",
    approved_event="provider_approved",
    approved="approved the run",
    done_event="approved",
    done_action="approve",
    done_state=State.APPROVED,
    done_detail="every provider approved",
    shred_on_reject=False,
)
_RELEASE = _Stage(
    prefix="release_",
    already="this provider has already reviewed this output",
    refused="refused the release",
    approved_event="release_approved",
    approved="approved the release",
    done_event="released",
    done_action="release",
    done_state=State.RELEASED,
    done_detail="every provider reviewed the output",
    shred_on_reject=True,
)


def _decide_stage(
    stage: _Stage,
    ctx: ComputeContext,
    session: Session,
    comp: Computation,
    mine: Sequence[ComputationInput],
    caller: Caller,
    subject: audit.Subject,
    approve: bool,
    reason: str,
    now: datetime,
) -> int | None:
    """Record this provider's decision; reject the job, or advance it once all agreed."""
    approval = f"{stage.prefix}approval"
    if any(getattr(i, approval) != "pending" for i in mine):
        raise Conflict(stage.already)
    for i in mine:
        setattr(i, approval, "approved" if approve else "rejected")
        setattr(i, f"{stage.prefix}approved_by", caller.client_id)
        setattr(i, f"{stage.prefix}approved_at", now)
    if not approve:
        if stage.shred_on_reject:
            _shred_result(ctx, session, comp)
        return _transition(
            ctx,
            session,
            comp,
            subject,
            event="rejected",
            action="reject",
            now=now,
            state=State.REJECTED,
            detail=f"provider {caller.org_id} {stage.refused}: {reason}"[:512],
        )
    index = _transition(
        ctx,
        session,
        comp,
        subject,
        event=stage.approved_event,
        action="approve",
        now=now,
        detail=f"provider {caller.org_id} {stage.approved}",
    )
    if all(getattr(i, approval) == "approved" for i in comp.inputs):
        index = _transition(
            ctx,
            session,
            comp,
            subject,
            event=stage.done_event,
            action=stage.done_action,
            now=now,
            state=stage.done_state,
            detail=stage.done_detail,
            digest=f"sha256:{comp.result_digest}" if stage is _RELEASE else None,
        )
    return index


# -- reading --------------------------------------------------------------------------------------


def get_computation(ctx: ComputeContext, caller: Caller, computation_id: str) -> ComputationPublic:
    with ctx.sessions() as session:
        comp = _load(session, computation_id)
        if not _sees(caller, comp):
            raise NotFound("no such computation", computation_id=computation_id)
        return to_public(comp)


def list_computations(
    ctx: ComputeContext,
    caller: Caller,
    *,
    state: State | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[ComputationPublic]:
    """Computations the caller's organisation requested or provides to (all for auditors)."""
    if not 1 <= limit <= 500 or offset < 0:
        raise InvalidInput("limit must be 1-500 and offset ≥ 0")
    with ctx.sessions() as session:
        stmt = (
            select(Computation)
            .options(selectinload(Computation.inputs))
            .order_by(Computation.created_at.desc(), Computation.id)
        )
        if not caller.roles & {Role.AUDITOR, Role.SECURITY_ADMIN}:
            provided = select(ComputationInput.computation_id).where(
                ComputationInput.provider_org == caller.org_id
            )
            stmt = stmt.where(
                or_(Computation.requester_org == caller.org_id, Computation.id.in_(provided))
            )
        if state is not None:
            stmt = stmt.where(Computation.state == state.value)
        return [to_public(c) for c in session.scalars(stmt.limit(limit).offset(offset))]


def _result_aad(comp_id: str) -> bytes:
    return f"pdx:computation-result:{comp_id}".encode()


def _result_ref(comp_id: str) -> str:
    return f"computation:{comp_id}:result"


def _secret_ref(comp_id: str) -> str:
    return f"computation:{comp_id}:job-key"


def _open_result(ctx: ComputeContext, session: Session, comp: Computation) -> dict[str, Any]:
    assert comp.result_key_id is not None and comp.result_sealed is not None
    key = ctx.keystore.data_key(session, comp.result_key_id, object_ref=_result_ref(comp.id))
    out: dict[str, Any] = json.loads(open_sealed(key, comp.result_sealed, _result_aad(comp.id)))
    return out


def get_result(ctx: ComputeContext, caller: Caller, computation_id: str) -> ComputationResult:
    """The released output, for the result party only; every fetch is a recorded delivery."""
    now = ctx.clock()
    with ctx.sessions() as session, session.begin():
        comp = _load(session, computation_id, lock=True)
        if caller.org_id != comp.requester_org:
            if _sees(caller, comp):
                raise Forbidden("only the requesting organisation receives the result")
            raise NotFound("no such computation", computation_id=computation_id)
        caller.require(Role.DATA_CONSUMER)
        if comp.state != State.RELEASED:
            raise Conflict(f"the computation is {comp.state}, not released", state=comp.state)
        if comp.result_sealed is None:
            raise NotFound("the result is past its retention and was destroyed")
        output = _open_result(ctx, session, comp)
        index = _transition(
            ctx,
            session,
            comp,
            caller.subject(),
            event="result_delivered",
            action="deliver",
            now=now,
            detail=f"recipient={caller.org_id} method=api purpose={comp.purpose}"[:512],
            digest=f"sha256:{comp.result_digest}",
        )
        return ComputationResult(
            computation_id=comp.id,
            operator=comp.operator,
            output=output,
            epsilon_spent=comp.epsilon_spent,
            sha256=comp.result_digest or "",
            ledger_index=index,
        )


def review_output(ctx: ComputeContext, caller: Caller, computation_id: str) -> dict[str, Any]:
    """The gated output held for review, shown to the inputs' providers (not a release)."""
    with ctx.sessions() as session:
        comp = _load(session, computation_id)
        if not any(i.provider_org == caller.org_id for i in comp.inputs):
            if _sees(caller, comp):
                raise Forbidden("only the inputs' providers review the output")
            raise NotFound("no such computation", computation_id=computation_id)
        caller.require(Role.DATA_PROVIDER)
        if comp.state != State.REVIEW:
            raise Conflict(f"the computation is {comp.state}, not in review", state=comp.state)
        return _open_result(ctx, session, comp)


# -- running a job ------------------------------------------------------------------------------


def _submit(ctx: ComputeContext, computation_id: str, requester_org: str) -> None:
    """Queue a job; the runner shares its workers fairly between requesting organisations."""
    ctx.runner.submit(lambda: run_job(ctx, computation_id), key=requester_org)


@dataclass
class _Prepared:
    providers: list[ProviderInput]
    routes: dict[Path, tuple[ProviderNode, NodeGrant]]
    local: bool
    workdir: Path


class _JobFailed(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def run_job(ctx: ComputeContext, computation_id: str) -> None:
    """Run an approved computation to `review`, `released`, `rejected` or `failed`."""
    now = ctx.clock()
    with ctx.sessions() as session, session.begin():
        comp = _load(session, computation_id, lock=True)
        if comp.state != State.APPROVED:
            return  # already taken, or no longer runnable
        _transition(
            ctx,
            session,
            comp,
            _platform_subject(),
            event="running",
            action="run",
            now=now,
            state=State.RUNNING,
        )
        operator, params_raw = comp.operator, dict(comp.params)
        ob = Obligations.from_decision(comp.obligations)
        requester = comp.requester_org
    prepared: _Prepared | None = None
    try:
        ctx.sandbox_runs += 1
        prepared = _prepare_inputs(ctx, computation_id, operator, params_raw)
        release = _execute(ctx, computation_id, requester, operator, params_raw, ob, prepared)
        _finish(ctx, computation_id, release, ob)
    except ReleaseRefused as exc:
        _end(ctx, computation_id, State.REJECTED, "rejected", exc.code, exc.detail)
    except SandboxError as exc:
        _end(ctx, computation_id, State.FAILED, "failed", exc.code, exc.detail)
    except _JobFailed as exc:
        _end(ctx, computation_id, State.FAILED, "failed", exc.code, exc.detail)
    except ExchangeError as exc:
        _end(ctx, computation_id, State.FAILED, "failed", exc.code, exc.detail)
    except crypto.CryptoError as exc:
        log.error("computation %s: key failure %s", computation_id, exc.code)
        _end(ctx, computation_id, State.FAILED, "failed", "crypto-failure", "a key was unusable")
    except Exception:
        log.exception("computation %s failed", computation_id)
        _end(
            ctx, computation_id, State.FAILED, "failed", "internal-error", "the computation failed"
        )
    finally:
        if prepared is not None:
            shutil.rmtree(prepared.workdir, ignore_errors=True)


def _prepare_inputs(
    ctx: ComputeContext, computation_id: str, operator: str, params: dict[str, Any]
) -> _Prepared:
    """Per input: decrypt a platform-held file privately, or get the node's approval."""
    ctx.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    workdir = Path(tempfile.mkdtemp(prefix=f"job-{computation_id[:8]}-", dir=ctx.workdir))
    prepared = _Prepared([], {}, False, workdir)
    operators = ("stats.variance", "fl.logreg") if operator == "fl.logreg" else (operator,)
    rounds = int(params.get("rounds", 1))
    node_jobs: list[tuple[str, Path, NodeJob]] = []
    with ctx.sessions() as session:
        comp = _load(session, computation_id)
        for inp in comp.inputs:
            ds = session.get(Dataset, inp.dataset_id)
            assert ds is not None
            if ds.custody == "node":
                placement = session.get(NodeDataset, ds.id)
                if placement is None:
                    raise _JobFailed("node-error", f"dataset {ds.id} has no node placement")
                job = NodeJob(
                    job_id=comp.id,
                    dataset_id=ds.id,
                    asset_ref=placement.asset_ref,
                    sha256=ds.sha256,
                    operators=operators,
                    max_calls=rounds + 8,
                    data_key=node_data_key(ctx.keystore, session, ds),
                )
                path = node_input_path(ds.owner_org, ds.id)
                node_jobs.append((ds.owner_org, path, job))
            else:
                path = workdir / f"{ds.id}.csv"
                # Plaintext only for the provider-side sandbox run, owner-readable only,
                # deleted when the job ends (finally in run_job).
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    for chunk in iter_plaintext(ctx.catalog, session, ds.id):
                        f.write(chunk)
                prepared.local = True
            prepared.providers.append(ProviderInput(ds.owner_org, ds.id, path))
    # Nodes are reached with no database session open (a node may be slow or never answer).
    for org_id, path, job in node_jobs:
        node = node_for(ctx.nodes, ctx.keystore, ctx.sessions, org_id)
        prepared.routes[path] = (node, node.authorise(job))
    return prepared


def _execute(
    ctx: ComputeContext,
    computation_id: str,
    requester: str,
    operator: str,
    params_raw: dict[str, Any],
    ob: Obligations,
    prepared: _Prepared,
) -> Release[Any]:
    """Create the job keys (sealed under the requester's KEK), run, decrypt, gate."""
    sandbox = NodeSandbox(ctx.sandbox(), prepared.routes, local_inputs=prepared.local)
    assert ctx.budget is not None
    gate = ReleaseGate(ctx.budget)
    params = PARAMS[operator].model_validate(params_raw)
    job: StatsJob | FlJob
    if isinstance(params, StatsParams):
        job = StatsJob(
            params.query(operator),
            prepared.providers,
            sandbox=sandbox,
            job_id=computation_id,
            paillier_bits=ctx.paillier_bits,
        )
    else:
        job = FlJob(params.config(), prepared.providers, sandbox=sandbox, job_id=computation_id)
    _store_job_key(ctx, computation_id, requester, export_secret(job.result_party))
    # From here the secret exists only sealed, and as unsealed for this job's decryption.
    job.result_party = _load_job_key(ctx, computation_id)
    if isinstance(job, StatsJob):
        aggregate = job.aggregate(job.compute_partials())
        return job.release(job.decrypt(aggregate), gate, ob.release())
    return job.run(gate, ob.release())


def _store_job_key(ctx: ComputeContext, computation_id: str, owner_org: str, secret: bytes) -> None:
    with ctx.sessions() as session, session.begin():
        # Several workers: the organisation's KEK is created on first use, so serialise
        # that per organisation and read the clock only then, or a KEK another job has
        # just created is not yet valid at this job's earlier `now` (key-expired).
        session.get(Organisation, owner_org, with_for_update={"key_share": True})
        now = ctx.clock()
        comp = _load(session, computation_id, lock=True)
        key = ctx.keystore.new_data_key(
            session, owner_org=owner_org, object_ref=_secret_ref(computation_id), now=now
        )
        comp.secret_key_id = key.id
        comp.secret_sealed = seal(key, secret, _secret_aad(computation_id))


def _secret_aad(comp_id: str) -> bytes:
    return f"pdx:computation-job-key:{comp_id}".encode()


def _load_job_key(ctx: ComputeContext, computation_id: str) -> Any:
    with ctx.sessions() as session:
        comp = _load(session, computation_id)
        assert comp.secret_key_id is not None and comp.secret_sealed is not None
        key = ctx.keystore.data_key(
            session, comp.secret_key_id, object_ref=_secret_ref(computation_id)
        )
        return restore_result_party(
            open_sealed(key, comp.secret_sealed, _secret_aad(computation_id))
        )


def _drop_job_key(ctx: ComputeContext, session: Session, comp: Computation) -> None:
    """Delete the job's secret key: nothing is left to decrypt once the job has ended."""
    if comp.secret_key_id is not None:
        ctx.keystore.delete_data_key(session, comp.secret_key_id)
    comp.secret_key_id = None
    comp.secret_sealed = None


def _shred_result(ctx: ComputeContext, session: Session, comp: Computation) -> None:
    if comp.result_key_id is not None:
        ctx.keystore.delete_data_key(session, comp.result_key_id)
    comp.result_key_id = None
    comp.result_sealed = None


def _payload(release: Release[Any]) -> dict[str, Any]:
    value = release.review()
    as_dict = getattr(value, "as_dict", None)
    out: dict[str, Any] = as_dict() if callable(as_dict) else dict(value)
    return json.loads(json.dumps(out, default=str))  # type: ignore[no-any-return]


def _finish(
    ctx: ComputeContext, computation_id: str, release: Release[Any], ob: Obligations
) -> None:
    now = ctx.clock()
    payload = _payload(release)
    body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(body).hexdigest()
    with ctx.sessions() as session, session.begin():
        comp = _load(session, computation_id, lock=True)
        _drop_job_key(ctx, session, comp)
        key = ctx.keystore.new_data_key(
            session,
            owner_org=comp.requester_org,
            object_ref=_result_ref(comp.id),
            now=now,
        )
        comp.result_key_id = key.id
        comp.result_sealed = seal(key, body, _result_aad(comp.id))
        comp.result_digest = digest
        comp.epsilon_spent = release.epsilon_spent
        comp.retain_until = now + ctx.retention
        held = not release.released
        suppressed = f" suppressed={len(release.suppressed)}" if release.suppressed else ""
        _transition(
            ctx,
            session,
            comp,
            _platform_subject(),
            event="review" if held else "released",
            action="hold" if held else "release",
            now=now,
            state=State.REVIEW if held else State.RELEASED,
            detail=f"epsilon={release.epsilon_spent}{suppressed}",
            digest=f"sha256:{digest}",
        )


def _end(
    ctx: ComputeContext, computation_id: str, state: State, event: str, code: str, detail: str
) -> None:
    now = ctx.clock()
    with ctx.sessions() as session, session.begin():
        comp = _load(session, computation_id, lock=True)
        _drop_job_key(ctx, session, comp)
        comp.error = {"code": code, "detail": detail[:500]}
        _transition(
            ctx,
            session,
            comp,
            _platform_subject(),
            event=event,
            action="reject" if state is State.REJECTED else "fail",
            now=now,
            state=state,
            detail=f"{code}: {detail}"[:512],
        )


# -- lifecycle ------------------------------------------------------------------------------------


def recover(ctx: ComputeContext) -> int:
    """At start-up: fail jobs a crash interrupted, queue approved ones again. Returns both."""
    with ctx.sessions() as session:
        interrupted = list(
            session.scalars(select(Computation.id).where(Computation.state == State.RUNNING))
        )
        approved = list(
            session.execute(
                select(Computation.id, Computation.requester_org)
                .where(Computation.state == State.APPROVED)
                .order_by(Computation.created_at, Computation.id)
            ).tuples()
        )
    for comp_id in interrupted:
        _end(ctx, comp_id, State.FAILED, "failed", "interrupted", "the platform restarted")
    for comp_id, requester_org in approved:
        _submit(ctx, comp_id, requester_org)
    return len(interrupted) + len(approved)


def purge_expired(ctx: ComputeContext) -> int:
    """Crypto-shred released outputs past their retention (the data key is deleted)."""
    now = ctx.clock()
    count = 0
    with ctx.sessions() as session, session.begin():
        rows = session.scalars(
            select(Computation).where(
                Computation.result_key_id.is_not(None), Computation.retain_until < now
            )
        ).all()
        for comp in rows:
            _shred_result(ctx, session, comp)
            _transition(
                ctx,
                session,
                comp,
                _platform_subject(),
                event="result_destroyed",
                action="destroy",
                now=now,
                detail="retention ended",
            )
            count += 1
    return count

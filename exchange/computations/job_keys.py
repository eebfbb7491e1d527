"""Requester-held job keys: the public key a request carries, and running a job under it.

The requester's SDK (`pdx_client.jobkeys`) makes the job's Paillier key pair and sends
only its public half (`JobKeyIn`: n and its fingerprint). The platform stores that
(`ComputationJobKey`) and nothing else: no secret key is made, sealed or unsealed for
such a job. A job touching a provider's own node over HTTP must carry one
(`check_request`); with it, every input's vetted operator adds its noise share and
mask and encrypts under the requester's key (`sandbox.party_stats`), the coordinator
adds ciphertexts, and the encrypted aggregate is the result, which only the requester
can open. Budgets are charged here, before anything runs. A private join
(`psi.cardinality`, `psi.sum`, `stats.*` with a `join`) under such a key runs as
`sandbox.joins.JoinJob.run_under_party_key`: both parties add noise shares and the
platform relays ciphertexts under the requester's key only.

Inputs held by the platform (`custody: platform`) or on an embedded node run in the
platform's own processes: the operator is trusted for them (docs/privacy.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, Session, mapped_column

from exchange.errors import InvalidInput
from exchange.models import Computation, Dataset, ExchangeBase, ProviderNodeRecord
from sandbox.accounting import DEFAULT_DELTA
from sandbox.node_side import decode_outcome
from sandbox.nodes import NodeGrant, ProviderNode
from sandbox.operators import (
    OPERATORS,
    FlParams,
    HeteroParams,
    ProviderInput,
    PsiCardinalityParams,
    PsiIntersectionParams,
    PsiSumParams,
    StatsParams,
)
from sandbox.party_fl import ROUNDS_SUMMARY as FL_ROUNDS_SUMMARY
from sandbox.party_fl import SECURITY_MODEL as FL_SECURITY_MODEL
from sandbox.party_fl import PartyFlJob
from sandbox.party_stats import SECURITY_MODEL as PARTY_SECURITY_MODEL
from sandbox.party_stats import (
    MaskRelay,
    PartyJob,
    PartyRun,
    collect_mask_keys,
    fingerprint_of,
    mask_blobs,
    mask_public,
    run_party_stats,
)
from sandbox.release import Release, ReleaseGate, ReleaseObligations, unique

__all__ = [
    "MAX_PAILLIER_BITS",
    "MIN_PAILLIER_BITS",
    "ComputationJobKey",
    "JobKeyIn",
    "KeyedRun",
    "check_request",
    "job_key_binding",
    "load_party",
    "mask_relay",
    "party_job",
    "store_job_key",
]

JOB_KEY_PARAMS = (
    StatsParams,
    PsiCardinalityParams,
    PsiSumParams,
    PsiIntersectionParams,
    HeteroParams,
    FlParams,
)
"""Operators that run under a requester-held key (`pdx_client.jobkeys.takes_job_key`)."""

MIN_PAILLIER_BITS = 2048
"""NIST SP 800-57 part 1, table 2: a 2048-bit factoring modulus for 112-bit security."""
MAX_PAILLIER_BITS = 8192


class ComputationJobKey(ExchangeBase):
    """The public half of a requester-held job key (no secret is ever stored)."""

    __tablename__ = "computation_job_keys"

    computation_id: Mapped[str] = mapped_column(ForeignKey("computations.id"), primary_key=True)
    scheme: Mapped[str] = mapped_column(String(16))
    public_n: Mapped[str] = mapped_column(Text)
    """The Paillier modulus, lowercase hex."""
    fingerprint: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime]


class JobKeyIn(BaseModel):
    """The request's `job_key`: `pdx_client.jobkeys.JobKey.public()`."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    scheme: Literal["paillier"] = "paillier"
    n: str = Field(min_length=1, max_length=MAX_PAILLIER_BITS // 4 + 2, pattern=r"^[0-9a-fA-F]+$")
    fingerprint: str = Field(min_length=71, max_length=71, pattern=r"^sha256:[0-9a-f]{64}$")

    def modulus(self) -> int:
        """n, checked: long enough, odd, and matching the fingerprint (`InvalidInput`)."""
        n = int(self.n, 16)
        if n.bit_length() < MIN_PAILLIER_BITS:
            raise InvalidInput(
                f"job_key.n has {n.bit_length()} bits; a Paillier job key needs at least "
                f"{MIN_PAILLIER_BITS}",
                field="job_key.n",
            )
        if n.bit_length() > MAX_PAILLIER_BITS or n % 2 == 0:
            raise InvalidInput("job_key.n is not a Paillier modulus", field="job_key.n")
        if fingerprint_of(self.scheme, n) != self.fingerprint:
            raise InvalidInput(
                "job_key.fingerprint is not the sha256 of the canonical public key",
                field="job_key.fingerprint",
            )
        return n


def _on_http_node(session: Session, dataset: Dataset) -> bool:
    if dataset.custody != "node":
        return False
    record = session.get(ProviderNodeRecord, dataset.owner_org)
    return record is not None and record.kind != "embedded"


def check_request(
    session: Session,
    operator: str,
    datasets: Sequence[Dataset],
    job_key: JobKeyIn | None,
) -> int | None:
    """The job key's modulus, or None; refuses what requester-held keys cannot do.

    A provider's own node (HTTP) never computes for the platform's key: such a request
    without `job_key` is refused before anything is written (a join's included).
    """
    if job_key is None:
        if any(_on_http_node(session, d) for d in datasets):
            raise InvalidInput(
                "an input is held on its provider's own node: send job_key (the public "
                "half of a key pair you generate, e.g. pdx_client.jobkeys.JobKey.generate())",
                field="job_key",
            )
        return None
    n = job_key.modulus()
    if not issubclass(OPERATORS[operator].params, JOB_KEY_PARAMS):
        raise InvalidInput(
            "requester-held job keys support the statistics operators (stats.*, with or "
            "without a join), the private joins psi.cardinality and psi.sum, "
            "fl.hetero_logreg and fl.logreg for now",
            field="job_key",
        )
    return n


def store_job_key(session: Session, comp: Computation, job_key: JobKeyIn, now: datetime) -> None:
    """Keep the public key (and say so in the job's security model)."""
    n = job_key.modulus()
    session.add(
        ComputationJobKey(
            computation_id=comp.id,
            scheme=job_key.scheme,
            public_n=format(n, "x"),
            fingerprint=job_key.fingerprint,
            created_at=now,
        )
    )
    comp.security_model = {
        **comp.security_model,
        "job_key": {
            "scheme": job_key.scheme,
            "key_bits": n.bit_length(),
            "fingerprint": job_key.fingerprint,
        },
        "secret_key_custody": "requester: generated and kept by the requester's SDK; the "
        "platform holds the public key only and cannot decrypt partials or the aggregate",
        "noise": "distributed: each provider's sandbox adds a noise share (docs/privacy.md)",
        "threat_model": PARTY_SECURITY_MODEL.as_dict(),
    }
    if comp.operator == "fl.logreg":
        comp.security_model = {
            **comp.security_model,
            "noise": "under DP, each provider's node runs record-level DP-SGD with the noise "
            "its own approved epsilon and delta call for; the row count gets noise shares",
            "rounds": FL_ROUNDS_SUMMARY,
            "threat_model": FL_SECURITY_MODEL.as_dict(),
        }


def load_party(session: Session, computation_id: str) -> tuple[int, str] | None:
    """(n, fingerprint) of the job's requester-held key, or None (platform-keyed job)."""
    row = session.get(ComputationJobKey, computation_id)
    return None if row is None else (int(row.public_n, 16), row.fingerprint)


def job_key_binding(session: Session, computation_id: str) -> dict[str, str]:
    """What a provider's approval binds of the job key: its fingerprint (none: platform-keyed)."""
    key = load_party(session, computation_id)
    return {} if key is None else {"job_key_fingerprint": key[1]}


def party_job(
    computation_id: str, n: int, providers: int, obligations: ReleaseObligations
) -> PartyJob:
    """What every provider approves and runs for this job."""
    dp = None
    if obligations.dp_epsilon is not None:
        dp = {
            "epsilon": obligations.dp_epsilon,
            "delta": obligations.dp_delta,
            "mechanism": obligations.dp_mechanism,
        }
    return PartyJob(
        computation_id, n, providers=providers, min_cohort=obligations.min_cohort, dp=dp
    )


def mask_relay(
    party: PartyJob, operator: str, routes: Mapping[Any, tuple[ProviderNode, NodeGrant]]
) -> MaskRelay:
    """(fetch one input's mask public key, its seeds when the platform is its node).

    A node-held input's key comes from its node (`cmd: keys`, signed where the node has a
    party key) and its seeds are derived there; a platform-held input's are the
    platform's own (`sandbox.party_stats.mask_public`, `mask_blobs`).
    """
    job_params = {"job": party.public.params(), "party": party.binding()}

    def fetch(p: ProviderInput) -> bytes:
        route = routes.get(p.path)
        if route is None:  # the platform is this input's node
            return mask_public(party.job_id, p.dataset_id)
        node, grant = route
        request = {"cmd": "keys", "operator": operator, "session": "", "params": job_params,
                   "blobs": {}}  # fmt: skip
        return decode_outcome(node.call(grant, request), operator).unwrap()

    def local_blobs(p: ProviderInput, party_params: dict[str, Any]) -> dict[str, bytes]:
        return {} if p.path in routes else mask_blobs(party.job_id, p.dataset_id, party_params)

    return fetch, local_blobs


@dataclass(frozen=True)
class KeyedRun:
    """One job under the requester's key: its inputs, their nodes, the sandbox and the gate.

    Every operator under such a key charges the budget before anything runs, relays the
    inputs' mask keys, runs and is released as gated; `stats` and `fl` differ only in what
    runs between.
    """

    party: PartyJob
    providers: Sequence[ProviderInput]
    routes: dict[Any, tuple[ProviderNode, NodeGrant]]
    sandbox: Any
    gate: ReleaseGate
    obligations: ReleaseObligations

    def stats(self, operator: str, params_raw: dict[str, Any]) -> Release[dict[str, Any]]:
        """Charge the budget, relay the mask keys, run, add: the encrypted result, held as gated."""
        params = OPERATORS[operator].params.model_validate(params_raw)
        assert isinstance(params, StatsParams)
        query = params.query(operator)
        spent, run = self._charge_and_relay(operator, self.obligations)
        doc = run_party_stats(query, run)
        return self._release(operator, doc, spent)

    def fl(
        self,
        params_raw: dict[str, Any],
        exchange: Callable[[int, dict[str, Any]], dict[str, Any]],
    ) -> Release[dict[str, Any]]:
        """`fl.logreg` under the requester's key: charge, relay mask keys, run the rounds.

        `exchange` hands each step's encrypted aggregate to the requester and returns its
        reply (`exchange.computations.fl_rounds`). The result is the last step's encrypted
        aggregate with the model it updates; the SDK adds the two.
        """
        config = FlParams.model_validate(params_raw).config()
        # Before any data is touched; DP-SGD needs δ > 0, so the nodes' default δ is charged.
        ob = self.obligations
        charged = replace(ob, dp_delta=ob.dp_delta or DEFAULT_DELTA)
        spent, run = self._charge_and_relay("fl.logreg", charged)
        job = PartyFlJob(config, run)
        doc = job.run(exchange)
        return self._release("fl.logreg", doc, spent, FL_SECURITY_MODEL.as_dict())

    def _charge_and_relay(
        self, operator: str, charged: ReleaseObligations
    ) -> tuple[float | None, PartyRun]:
        """Charge every input's budget (before anything runs), then collect the mask keys."""
        datasets = unique(p.dataset_id for p in self.providers)
        spent = self.gate.charge(datasets, charged, self.party.job_id)
        fetch, local_blobs = mask_relay(self.party, operator, self.routes)
        keys = collect_mask_keys(self.providers, fetch)
        return spent, PartyRun(self.providers, self.party, self.sandbox, keys, local_blobs)

    def _release(
        self,
        operator: str,
        doc: dict[str, Any],
        spent: float | None,
        security_model: dict[str, Any] | None = None,
    ) -> Release[dict[str, Any]]:
        return Release(
            self.party.job_id,
            operator,
            doc,
            self.obligations,
            unique(p.provider_id for p in self.providers),
            epsilon_spent=spent,
            security_model=security_model,
        )

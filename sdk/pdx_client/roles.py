"""One object per role over an authenticated session: the daily tasks of each."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from pdx_client import fl, psi
from pdx_client._results import JobKeyLike, open_result
from pdx_client.errors import ComputationFailed, PdxError, TimedOut
from pdx_client.flseal import NodeTrust
from pdx_client.jobkeys import ENCRYPTED_FORMAT, JOB_KEY_FL_OPERATORS, JobKey, takes_job_key
from pdx_client.market import AuditorMarket, EnterpriseMarket, OperatorMarket, ProviderMarket
from pdx_client.models import (
    Agreement,
    Computation,
    ComputationResult,
    Dataset,
    Me,
    ScanReport,
    TrailEntry,
)
from pdx_client.partykeys import PartyKey, release_message, run_message
from pdx_client.proofs import Checkpoint
from pdx_client.resultsig import check_result, is_cohort_result
from pdx_client.session import Session
from pdx_client.stepsig import ResultUnverified, StepVerifier
from pdx_client.trail import Trail

__all__ = ["Auditor", "Enterprise", "Operator", "Progress", "Provider", "SecurityAdmin"]

Progress = Callable[[Computation], None]
"""Called with the computation each time it is polled (a progress display hooks in here)."""

# Today's routes for agreements (the market issue renames contracts to agreements).
AGREEMENTS = "/v1/contracts"
FINAL = frozenset({"released", "rejected", "failed"})


def _csv(data: str | bytes | Path | IO[bytes]) -> tuple[str, Any]:
    if isinstance(data, Path):
        return data.name, data.open("rb")
    if isinstance(data, str):
        return "data.csv", data.encode("utf-8")
    return "data.csv", data


class _Role:
    """What every role does: who am I, my trail, the public checkpoint."""

    def __init__(self, session: Session, *, hash_name: str = "sha256") -> None:
        self.session = session
        self.trail = Trail(session, hash_name=hash_name)

    @classmethod
    def login(cls, url: str, client_id: str, client_secret: str, **kw: Any) -> Any:
        """Log in with client credentials (`cert=(crt, key)` for mTLS, `transport=` in tests)."""
        hash_name = kw.pop("hash_name", "sha256")
        extra = {"party_key": kw.pop("party_key")} if "party_key" in kw else {}
        session = Session(url, client_id, client_secret, **kw)
        session.login()
        return cls(session, hash_name=hash_name, **extra)

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def me(self) -> Me:
        return Me.model_validate(self.session.get("/v1/me"))

    def checkpoint(self, verifier_key: str | None = None) -> Checkpoint:
        return self.trail.checkpoint(verifier_key)

    def my_entries(self) -> list[TrailEntry]:
        return self.trail.entries()

    def datasets(self, **filters: Any) -> list[Dataset]:
        return [Dataset.model_validate(d) for d in self.session.iterate("/v1/datasets", **filters)]

    def dataset(self, dataset_id: str) -> dict[str, Any]:
        body: dict[str, Any] = self.session.get(f"/v1/datasets/{dataset_id}")
        return body

    def agreements(self, state: str | None = None) -> list[Agreement]:
        return [Agreement.model_validate(a) for a in self.session.iterate(AGREEMENTS, status=state)]

    def computation(self, computation_id: str) -> Computation:
        return Computation.model_validate(self.session.get(f"/v1/computations/{computation_id}"))

    def computations(self, state: str | None = None) -> Iterator[Computation]:
        for c in self.session.iterate("/v1/computations", state=state):
            yield Computation.model_validate(c)

    def wait(
        self,
        computation_id: str,
        states: frozenset[str] | set[str] = FINAL,
        *,
        timeout: float = 600.0,
        progress: Progress | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Computation:
        """Poll with exponential backoff (0.2 s doubling to 5 s) until a state in `states`."""
        wanted = {s.replace("-", "_") for s in states}
        deadline = time.monotonic() + timeout
        delay = 0.2
        while True:
            job = self.computation(computation_id)
            if progress:
                progress(job)
            if job.stage in wanted or job.stage in FINAL:
                return job
            if time.monotonic() + delay > deadline:
                raise TimedOut(
                    f"computation {computation_id} still {job.state} after {timeout:.0f} s"
                )
            sleep(delay)
            delay = min(delay * 2, 5.0)


class Provider(_Role, ProviderMarket):
    """A data provider: register and scan datasets, sign agreements, approve computations.

    With a party key (`party_key=` or `use_key`), every decision on a computation is signed
    with it (`pdx_client.partykeys`): the platform verifies and keeps the signature, and
    never holds the private half.
    """

    def __init__(
        self, session: Session, *, hash_name: str = "sha256", party_key: PartyKey | None = None
    ) -> None:
        super().__init__(session, hash_name=hash_name)
        self.party_key = party_key

    def use_key(self, key: PartyKey, *, register: bool = True) -> PartyKey:
        """Sign decisions with `key` from now on; register its public half unless told not."""
        if register:
            key.register(self.session, self.me().org_id)
        self.party_key = key
        return key

    def _signature(
        self, computation_id: str, stage: str, approve: bool, query_digest: str | None = None
    ) -> dict[str, Any]:
        """The decision's `signature` field (empty without a party key)."""
        if self.party_key is None:
            return {}
        if stage == "run":
            if query_digest is None:
                query = self.session.get(f"/v1/computations/{computation_id}/query")
                query_digest = str(query["query_digest"])
            message = run_message(query_digest, approve)
        else:
            message = release_message(computation_id, self.review(computation_id), approve)
        return {"signature": self.party_key.sign(message)}

    def scan(self, metadata: dict[str, Any], data: str | bytes | Path | IO[bytes]) -> ScanReport:
        """Dry run: every problem registration would meet, at once; nothing is stored."""
        name, body = _csv(data)
        r = self.session.request(
            "POST",
            "/v1/datasets/scan",
            files={
                "metadata": (None, json.dumps(metadata, ensure_ascii=False), "application/json"),
                "file": (name, body, "text/csv"),
            },
        )
        return ScanReport.model_validate(r.json())

    def register(
        self,
        metadata: dict[str, Any],
        data: str | bytes | Path | IO[bytes],
        *,
        node: bool = False,
    ) -> Dataset:
        """Register a dataset (stored encrypted, or kept on this provider's node)."""
        name, body = _csv(data)
        r = self.session.request(
            "POST",
            "/v1/nodes/datasets" if node else "/v1/datasets",
            files={
                "metadata": (None, json.dumps(metadata, ensure_ascii=False), "application/json"),
                "file": (name, body, "text/csv"),
            },
        )
        return Dataset.model_validate(r.json())

    def register_node(self, kind: str = "embedded", **fields: Any) -> dict[str, Any]:
        body: dict[str, Any] = self.session.request(
            "PUT", "/v1/nodes/me", json={"kind": kind, **fields}
        ).json()
        return body

    def sign_agreement(self, agreement_id: str) -> Agreement:
        return Agreement.model_validate(self.session.post(f"{AGREEMENTS}/{agreement_id}/sign"))

    def terminate_agreement(self, agreement_id: str, reason: str = "") -> Agreement:
        body = self.session.post(f"{AGREEMENTS}/{agreement_id}/terminate", {"reason": reason})
        return Agreement.model_validate(body)

    def review(self, computation_id: str) -> dict[str, Any]:
        """The gated output held for this provider's review before release."""
        body: dict[str, Any] = self.session.get(f"/v1/computations/{computation_id}/review")
        return body

    def approve(self, computation_id: str, stage: str, reason: str = "") -> Computation:
        """Approve the `run` (awaiting approval) or the `release` (in review).

        The stage is checked against the computation's state first, so an approval meant
        for the run never releases an output (the server refuses it too, with 409). A run
        approval names the query it approves (`query_digest` of GET .../query), so the
        provider's yes cannot be used for another query.
        """
        expected = {"run": "awaiting_approval", "release": "review"}
        if stage not in expected:
            raise PdxError(f"stage must be run or release, not {stage!r}", title="Bad stage")
        job = self.computation(computation_id)
        if job.stage != expected[stage]:
            raise PdxError(
                f"computation {computation_id} is {job.state}, not waiting for a {stage} approval",
                type="https://pdx.dev/problems/computation-wrong-stage",
                title="Wrong stage",
                status=409,
            )
        decision: dict[str, Any] = {"reason": reason}
        if stage == "run":
            query = self.session.get(f"/v1/computations/{computation_id}/query")
            decision["query_digest"] = query["query_digest"]
        decision.update(self._signature(computation_id, stage, True, decision.get("query_digest")))
        body = self.session.post(f"/v1/computations/{computation_id}/approve-{stage}", decision)
        return Computation.model_validate(body)

    def reject(self, computation_id: str, reason: str = "") -> Computation:
        """Reject the run or the release, whichever is pending (signed with a party key)."""
        decision: dict[str, Any] = {"reason": reason}
        if self.party_key is not None:
            stage = {"awaiting_approval": "run", "review": "release"}.get(
                self.computation(computation_id).stage
            )
            if stage is not None:
                decision.update(self._signature(computation_id, stage, False))
        body = self.session.post(f"/v1/computations/{computation_id}/reject", decision)
        return Computation.model_validate(body)


class Enterprise(_Role, EnterpriseMarket):
    """A data consumer: propose agreements, request computations, fetch results."""

    def __init__(
        self, session: Session, *, hash_name: str = "sha256", party_key: PartyKey | None = None
    ) -> None:
        super().__init__(session, hash_name=hash_name)
        self.party_key = party_key  # signs market agreements (`use_key`)

    def propose_agreement(
        self,
        provider_org: str,
        datasets: list[str],
        purpose: str,
        *,
        agreement_id: str | None = None,
    ) -> Agreement:
        body: dict[str, Any] = {"provider_org": provider_org, "datasets": datasets}
        body["purpose"] = purpose
        if agreement_id:
            body["agreement_id"] = agreement_id
        return Agreement.model_validate(self.session.post(AGREEMENTS, body))

    def terminate_agreement(self, agreement_id: str, reason: str = "") -> Agreement:
        body = self.session.post(f"{AGREEMENTS}/{agreement_id}/terminate", {"reason": reason})
        return Agreement.model_validate(body)

    def operators(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.session.get("/v1/operators")
        return found

    def request(
        self,
        operator: str,
        inputs: list[str],
        params: dict[str, Any],
        purpose: str,
        *,
        legal_basis: str | None = None,
        job_key: dict[str, Any] | None = None,
        agreement_id: str | None = None,
    ) -> Computation:
        body: dict[str, Any] = {
            "operator": operator,
            "inputs": inputs,
            "params": params,
            "purpose": purpose,
        }
        if legal_basis:
            body["legal_basis"] = legal_basis
        if job_key is not None:
            body["job_key"] = job_key
        if agreement_id:
            body["agreement_id"] = agreement_id  # the market agreement it is metered under
        return Computation.model_validate(self.session.post("/v1/computations", body))

    def result(
        self,
        computation_id: str,
        job_key: JobKeyLike | None = None,
        *,
        trust: NodeTrust | None = None,
        steps: StepVerifier | None = None,
    ) -> ComputationResult:
        """The released result, opened with `job_key` when given.

        A join with your own cohort is checked before it is decrypted
        (`pdx_client.resultsig`): a provider whose party key `trust` (default
        `PDX_TRUSTED_PARTIES`) pins must have signed the encrypted count on its node, else
        `ResultUnverified` and nothing is decrypted; with nothing pinned it warns
        `UnverifiedSteps`. `steps`: the verifier that checked this job's steps, if any.
        """
        body = self.session.get(f"/v1/computations/{computation_id}/result")
        doc = body.get("output")
        if isinstance(job_key, JobKey) and isinstance(doc, dict):
            if doc.get("format") == ENCRYPTED_FORMAT:
                computation = self.session.get(f"/v1/computations/{computation_id}")
                if computation.get("id") != computation_id:
                    raise ResultUnverified(f"the server answered for {computation.get('id')}")
                if is_cohort_result(doc, computation):
                    check_result(body, computation, job_key.n, job_key.fingerprint,
                                 trust=trust, steps=steps)  # fmt: skip
        return ComputationResult.model_validate(open_result(body, job_key))

    def compute(
        self,
        operator: str,
        inputs: list[str],
        params: dict[str, Any],
        purpose: str,
        *,
        approvers: list[Provider] | None = None,
        timeout: float = 600.0,
        progress: Progress | None = None,
        job_key: JobKey | None = None,
        agreement_id: str | None = None,
        cohort: list[str] | None = None,
        legal_basis: str | None = None,
    ) -> ComputationResult:
        """Request, wait through approvals (`approvers` approve when given), fetch the result.

        Statistics and private joins run under a job key generated here (or `job_key`, if
        given): only its public half goes to the platform, and the encrypted aggregate is
        opened here.

        `cohort`: your own identifiers for a join with `params["cohort"]` (e.g.
        `{"key": "msisdn", "kind": "phone"}`): they stay here; this SDK runs your side of
        the join (`pdx_client.psi`) and fills in the cohort's declared `size`.
        """
        party: psi.CohortParty | None = None
        if isinstance(params.get("cohort"), dict):
            if cohort is None:
                raise PdxError("params.cohort names your own cohort: pass cohort=[...]")
            declared = {"size": len(cohort), **params["cohort"]}
            params = {**params, "cohort": declared}
            party = psi.CohortParty(cohort, declared["kind"])
        elif cohort is not None:
            raise PdxError("cohort=[...] needs params.cohort (the provider's key and its kind)")
        if job_key is None and takes_job_key(operator, params):
            job_key = JobKey.generate()
        public = job_key.public() if job_key is not None else None
        job = self.request(
            operator, inputs, params, purpose, job_key=public, agreement_id=agreement_id,
            legal_basis=legal_basis,
        )  # fmt: skip
        if progress:
            progress(job)
        if job_key is not None and operator in JOB_KEY_FL_OPERATORS:
            return self._compute_fl(job, job_key, approvers, timeout, progress)
        if party is not None and job_key is not None:
            return self._compute_cohort(job, job_key, party, approvers, timeout, progress)
        for stage, state in (("run", "awaiting_approval"), ("release", "review")):
            job = self.wait(job.id, {state, "released"}, timeout=timeout, progress=progress)
            if job.stage == state and approvers:
                for p in approvers:
                    p.approve(job.id, stage)
        job = self.wait(job.id, {"released"}, timeout=timeout, progress=progress)
        if job.stage != "released":
            detail = (job.error or {}).get("detail") or job.state
            raise ComputationFailed(
                f"computation {job.id} {job.state}: {detail}",
                type="https://pdx.dev/problems/computation-" + job.stage,
                title="Computation did not release",
            )
        return self.result(job.id, job_key)

    def _compute_fl(
        self,
        job: Computation,
        job_key: JobKey,
        approvers: list[Provider] | None,
        timeout: float,
        progress: Progress | None,
    ) -> ComputationResult:
        """A federated job under `job_key`: approvals, then every round closed here.

        The SDK decrypts each round's aggregate and posts the next global model
        (`pdx_client.fl.drive`); the final model is added here from the result.
        """
        trainers: list[fl.FlTrainer] = []

        def drive(job_id: str) -> None:
            trainers.append(fl.drive(self.session, job_id, job_key, timeout=timeout))

        job = self._driven(job, approvers, timeout, progress, drive)
        result = self.result(job.id, job_key)
        result.output["rounds"] = list(trainers[0].history)
        return result

    def _compute_cohort(
        self,
        job: Computation,
        job_key: JobKey,
        party: psi.CohortParty,
        approvers: list[Provider] | None,
        timeout: float,
        progress: Progress | None,
    ) -> ComputationResult:
        """A join with this enterprise's own cohort: approvals, then every step answered here."""

        def drive(job_id: str) -> None:
            psi.drive(self.session, job_id, party, timeout=timeout, fingerprint=job_key.fingerprint)

        job = self._driven(job, approvers, timeout, progress, drive)
        if party.members is not None:  # psi.intersection: matched here, nothing to decrypt
            result = self.result(job.id)
            result.output["members"] = list(party.members)
            return result
        # The node signed the encrypted count in the session whose steps were checked here.
        return self.result(job.id, job_key, steps=party.steps)

    def _driven(
        self,
        job: Computation,
        approvers: list[Provider] | None,
        timeout: float,
        progress: Progress | None,
        drive: Callable[[str], None],
    ) -> Computation:
        """The job through its approvals to `released` (else `ComputationFailed`).

        Between the run and release approvals, `drive(job id)` answers the requester's steps.
        """
        job = self.wait(
            job.id, {"awaiting_approval", "running"}, timeout=timeout, progress=progress
        )
        if job.stage == "awaiting_approval" and approvers:
            for p in approvers:
                p.approve(job.id, "run")
        drive(job.id)
        job = self.wait(job.id, {"review", "released"}, timeout=timeout, progress=progress)
        if job.stage == "review" and approvers:
            for p in approvers:
                p.approve(job.id, "release")
        job = self.wait(job.id, {"released"}, timeout=timeout, progress=progress)
        if job.stage != "released":
            detail = (job.error or {}).get("detail") or job.state
            raise ComputationFailed(
                f"computation {job.id} {job.state}: {detail}",
                type="https://pdx.dev/problems/computation-" + job.stage,
                title="Computation did not release",
            )
        return job


class Auditor(_Role, AuditorMarket):
    """The auditor: the full ledger, proofs, policies; changes nothing."""

    def ledger_entries(self, **filters: Any) -> list[dict[str, Any]]:
        return list(self.session.iterate("/v1/ledger/entries", limit=500, **filters))

    def entries_of(self, org: str) -> list[TrailEntry]:
        """Any organisation's entries, with proofs (auditors read every party's trail)."""
        return self.trail.entries(org)

    def policy(self) -> dict[str, Any]:
        body: dict[str, Any] = self.session.get("/v1/policies")
        return body

    def audit_records(self, **filters: Any) -> list[dict[str, Any]]:
        return list(self.session.iterate("/v1/audit/records", **filters))


class Operator(_Role, OperatorMarket):
    """The platform operator: verifies market parties and settles (`pdx_client.market`)."""


class SecurityAdmin(_Role):
    """The security administrator: policies and keys."""

    def policy(self) -> dict[str, Any]:
        body: dict[str, Any] = self.session.get("/v1/policies")
        return body

    def put_matrix(self, matrix: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = self.session.request(
            "PUT", "/v1/policies/matrix", json=matrix
        ).json()
        return body

    def keys(self) -> list[dict[str, Any]]:
        return list(self.session.iterate("/v1/kms/keys"))

    def rotate_key(self, key_id: str) -> dict[str, Any]:
        body: dict[str, Any] = self.session.post(f"/v1/kms/keys/{key_id}/rotate")
        return body

"""Running an approved computation: input preparation, execution, the job key, recovery.

* `running`: per provider, the vetted operator runs on that provider's rows inside the
  sandbox isolation: platform-held inputs are decrypted (`iter_plaintext`) into a
  private job directory for the platform's sandbox, node-held inputs run on the
  provider's node (`sandbox.nodes`). Each returns only an encrypted partial; the
  coordinator adds ciphertexts; the result party (the requester) decrypts the
  aggregate with the job's secret key, which is sealed under its KEK.
* The release gate enforces `min_cohort`, `dp_epsilon` (charged to each dataset's
  budget) and shape; with `release_review` the output is held in `review` until each
  provider approves it.

Every move is a compare-and-set on the state it expects (`state.transition`), and every
end of a run is fenced by the run's lease (`leases`): a runner whose lease lapsed and was
taken over by a recovered run changes nothing. Recovery runs again only jobs whose lease
has lapsed (issue 13), never one another worker or gateway is still running.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

import crypto
import policies
from exchange.approval_binding import ApprovalMismatch, check_bindings
from exchange.catalog import iter_plaintext
from exchange.commitments import record_commitment
from exchange.computations import fl_rounds, job_keys, join_steps, joins, leases
from exchange.computations.context import ComputeContext, release_obligations
from exchange.computations.results import result_aad, result_ref
from exchange.computations.state import State, load, platform_subject, transition
from exchange.custody import node_data_key, node_for
from exchange.errors import ExchangeError, StaleTransition
from exchange.jobs import export_secret, open_sealed, restore_result_party, seal
from exchange.models import Computation, Dataset, NodeDataset, Organisation
from sandbox.cohort_joins import CohortJoinJob
from sandbox.errors import ReleaseRefused, SandboxError
from sandbox.fl import FlJob
from sandbox.joins import SESSION_OPERATOR, JoinJob
from sandbox.nodes import NodeGrant, NodeJob, NodeSandbox, ProviderNode, node_input_path
from sandbox.operators import OPERATORS, FlParams, HeteroParams, ProviderInput, StatsParams
from sandbox.party_stats import PartyJob
from sandbox.release import Release, ReleaseGate
from sandbox.stats import StatsJob
from sandbox.vertical_ops import HeteroJob, model_obligations

__all__ = ["MAX_ATTEMPTS", "recover", "run_job", "submit"]

log = logging.getLogger("pdx.computations")


MAX_ATTEMPTS = 3
"""A job whose runs lapsed this often (it kills its workers) fails instead of running again."""


def submit(ctx: ComputeContext, computation_id: str, requester_org: str) -> None:
    """Queue a job: on the shared queue if there is one, else on this process's runner."""
    if ctx.queue is not None:
        ctx.queue.enqueue(computation_id, requester_org)
    else:
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
    """Run an approved computation (or one whose run's lease lapsed) to its end state.

    Any number of deliveries of the same job may arrive (a shared queue delivers at least
    once, recovery re-delivers): only the one that moves `approved → running`, or takes a
    lapsed lease over, runs; the others return at once.
    """
    lease = _start(ctx, computation_id)
    if lease is None:
        return
    with ctx.sessions() as session:
        comp = load(session, computation_id)
        operator, params_raw = comp.operator, dict(comp.params)
        ob = policies.Obligations.from_decision(comp.obligations)
        requester = comp.requester_org
    ctx.lease_keeper.hold(lease)
    prepared: _Prepared | None = None
    try:
        _check_query(ctx, computation_id)
        ctx.sandbox_runs += 1
        party = _party(ctx, computation_id, ob, operator, params_raw)
        prepared = _prepare_inputs(ctx, computation_id, operator, params_raw, party)
        release = _execute(
            ctx, computation_id, requester, operator, params_raw, ob, prepared, party
        )
        _finish(ctx, computation_id, release, ob, lease)
    except StaleTransition:
        # Someone else ended this run, or a recovered run took its lease: output discarded.
        log.warning("computation %s: ended elsewhere; this run's output discarded", computation_id)
    except ReleaseRefused as exc:
        _end(ctx, computation_id, State.REJECTED, "rejected", exc.code, exc.detail, lease)
    except (SandboxError, _JobFailed, ExchangeError) as exc:
        _end(ctx, computation_id, State.FAILED, "failed", exc.code, exc.detail, lease)
    except crypto.CryptoError as exc:
        log.error("computation %s: key failure %s", computation_id, exc.code)
        _end(
            ctx,
            computation_id,
            State.FAILED,
            "failed",
            "crypto-failure",
            "a key was unusable",
            lease,
        )
    except Exception:
        log.exception("computation %s failed", computation_id)
        _end(
            ctx,
            computation_id,
            State.FAILED,
            "failed",
            "internal-error",
            "the computation failed",
            lease,
        )
    finally:
        ctx.lease_keeper.drop(lease)
        if prepared is not None:
            shutil.rmtree(prepared.workdir, ignore_errors=True)


def _party(
    ctx: ComputeContext,
    computation_id: str,
    ob: policies.Obligations,
    operator: str,
    params: dict[str, Any],
) -> PartyJob | None:
    """The job under the requester's own key (`exchange.computations.job_keys`), or None."""
    with ctx.sessions() as session:
        key = job_keys.load_party(session, computation_id)
        if key is None:
            return None
        inputs = len(load(session, computation_id).inputs)
    # A join's cohort is its minimum intersection (as on the platform-key path).
    obligations = (
        joins.join_release_obligations(ob)
        if joins.is_join_request(operator, params)
        else release_obligations(ob)
    )
    if operator == joins.HETERO:  # the model's Gaussian output perturbation (δ > 0)
        obligations = model_obligations(obligations)
    return job_keys.party_job(computation_id, key[0], inputs, obligations)


def _check_query(ctx: ComputeContext, computation_id: str) -> None:
    """The query about to run is the one every provider approved (exchange.approval_binding)."""
    with ctx.sessions() as session:
        try:
            check_bindings(session, load(session, computation_id))
        except ApprovalMismatch as exc:
            raise _JobFailed(exc.code, exc.detail) from None


def _start(ctx: ComputeContext, computation_id: str) -> leases.Lease | None:
    """Take the job: `approved → running` with a new lease, or a lapsed lease taken over."""
    keeper = ctx.lease_keeper
    now = ctx.clock()
    with ctx.sessions() as session, session.begin():
        comp = load(session, computation_id, lock=True)
        move = partial(transition, ctx, session, comp, platform_subject(), now=now)
        if comp.state == State.APPROVED:
            move(event="running", action="run", expect=State.APPROVED, state=State.RUNNING)
            return leases.grant(session, computation_id, keeper.holder, now, keeper.ttl)
        if comp.state != State.RUNNING:
            return None  # ended, or no longer runnable
        lease = leases.take_over(session, computation_id, keeper.holder, now, keeper.ttl)
        if lease is None:
            return None  # its run's lease is live: another worker runs it
        # The lapsed run's job key is useless to this run (it makes its own).
        _drop_job_key(ctx, session, comp)
        fl_rounds.forget(session, comp.id)  # and its open federated round with it
        if lease.attempt > MAX_ATTEMPTS:
            lapsed = f"{lease.attempt - 1} runs lapsed"
            comp.error = {"code": "interrupted", "detail": lapsed}
            leases.end(session, lease)
            why = f"interrupted: {lapsed}"
            move(
                event="failed", action="fail", expect=State.RUNNING, state=State.FAILED, detail=why
            )
            return None
        move(
            event="recovered", action="run", expect=State.RUNNING, detail=f"attempt={lease.attempt}"
        )
        return lease


def _prepare_inputs(
    ctx: ComputeContext,
    computation_id: str,
    operator: str,
    params: dict[str, Any],
    party: PartyJob | None = None,
) -> _Prepared:
    """Per input: decrypt a platform-held file privately, or get the node's approval."""
    # Memory-backed and this process's own (exchange.workdirs): never on disk, and
    # swept by recovery if this process dies.
    workdir = ctx.job_dirs.new(f"job-{computation_id[:8]}-")
    prepared = _Prepared([], {}, False, workdir)
    # Under the requester's key FL standardises inside fl.logreg itself: the node approves
    # that operator alone, so no extra statistic can be run on it for this job.
    operators = joins.node_operators(operator, params) or (
        ("stats.variance", "fl.logreg")
        if operator == "fl.logreg" and party is None
        else (operator,)
    )
    rounds = int(params.get("rounds", 1))
    node_jobs: list[tuple[str, Path, NodeJob]] = []
    with ctx.sessions() as session:
        comp = load(session, computation_id)
        total_rows = 0
        for inp in comp.inputs:
            found = session.get(Dataset, inp.dataset_id)
            total_rows += int(found.rows) if found is not None else 0
        calls = joins.node_max_calls(operator, params, total_rows) or rounds + 8
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
                    max_calls=calls,
                    data_key=node_data_key(ctx.keystore, session, ds),
                    party=party.binding() if party is not None else None,
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
    ob: policies.Obligations,
    prepared: _Prepared,
    party: PartyJob | None = None,
) -> Release[Any]:
    """Create the job keys (sealed under the requester's KEK), run, decrypt, gate.

    Under a requester-held key (`party`) no secret key exists here: the result is the
    encrypted aggregate (`exchange.computations.job_keys`).
    """
    sandbox = NodeSandbox(ctx.sandbox(), prepared.routes, local_inputs=prepared.local)
    assert ctx.budget is not None
    gate = ReleaseGate(ctx.budget, noise=ctx.noise)
    params = OPERATORS[operator].params.model_validate(params_raw)
    plan = joins.join_plan(operator, params)  # type: ignore[arg-type]
    if party is not None and plan is not None and plan.cohort is not None:
        # The requester's own cohort: its SDK answers every step (join_steps), the
        # provider's sandbox counts, adds the noise and encrypts under the requester's key.
        cohort = CohortJoinJob(
            operator, plan, prepared.providers[0], sandbox=sandbox, job_id=computation_id,
            party=party,
        )  # fmt: skip
        return cohort.run_under_party_key(
            gate, joins.join_release_obligations(ob),
            join_steps.requester_exchange(ctx, computation_id),
        )  # fmt: skip
    if party is not None and plan is not None:
        # The requester's key: no secret is made, sealed or unsealed for this join.
        relay = job_keys.mask_relay(party, SESSION_OPERATOR, prepared.routes)
        join = JoinJob(
            operator, plan, *prepared.providers, sandbox=sandbox, job_id=computation_id,
            party=party, relay=relay,
        )  # fmt: skip
        return join.run_under_party_key(gate, joins.join_release_obligations(ob))
    if party is not None and isinstance(params, HeteroParams):
        # The requester's key: each party's block of weights leaves encrypted under it.
        hetero = HeteroJob(
            params, prepared.providers, sandbox=sandbox, job_id=computation_id,
            key_bits=ctx.paillier_bits, min_rows=joins.min_intersection(ob), party=party,
            relay=job_keys.mask_relay(party, joins.HETERO, prepared.routes),
        )  # fmt: skip
        return hetero.run_under_party_key(gate, joins.join_release_obligations(ob))
    if party is not None:
        keyed = job_keys.KeyedRun(
            party, prepared.providers, prepared.routes, sandbox, gate, release_obligations(ob)
        )
        if isinstance(params, FlParams):
            # The requester closes every round from its SDK (exchange.computations.fl_rounds).
            return keyed.fl(params_raw, fl_rounds.requester_exchange(ctx, computation_id))
        return keyed.stats(operator, params_raw)
    if plan is not None:
        join = JoinJob(
            operator,
            plan,
            *prepared.providers,
            sandbox=sandbox,
            job_id=computation_id,
            paillier_bits=ctx.paillier_bits,
        )
        assert join.result_party is not None  # the platform's key (platform custody)
        _store_job_key(ctx, computation_id, requester, export_secret(join.result_party))
        join.result_party = _load_job_key(ctx, computation_id)
        return join.run(gate, joins.join_release_obligations(ob))
    if isinstance(params, HeteroParams):
        # The guest's Paillier key is made and kept in the guest's sandbox: no job key here.
        hetero = HeteroJob(
            params,
            prepared.providers,
            sandbox=sandbox,
            job_id=computation_id,
            key_bits=ctx.paillier_bits,
            min_rows=joins.min_intersection(ob),
            clip_rows=ob.dp_epsilon is not None,  # the DP bound; without DP, as centralised
        )
        return hetero.run(gate, joins.join_release_obligations(ob))
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
        assert isinstance(params, FlParams)
        job = FlJob(params.config(), prepared.providers, sandbox=sandbox, job_id=computation_id)
    _store_job_key(ctx, computation_id, requester, export_secret(job.result_party))
    # From here the secret exists only sealed, and as unsealed for this job's decryption.
    job.result_party = _load_job_key(ctx, computation_id)
    if isinstance(job, StatsJob):
        aggregate = job.aggregate(job.compute_partials())
        return job.release(job.decrypt(aggregate), gate, release_obligations(ob))
    return job.run(gate, release_obligations(ob))


def _store_job_key(ctx: ComputeContext, computation_id: str, owner_org: str, secret: bytes) -> None:
    with ctx.sessions() as session, session.begin():
        # Several workers: the organisation's KEK is created on first use, so serialise
        # that per organisation and read the clock only then, or a KEK another job has
        # just created is not yet valid at this job's earlier `now` (key-expired).
        session.get(Organisation, owner_org, with_for_update={"key_share": True})
        now = ctx.clock()
        comp = load(session, computation_id, lock=True)
        key = ctx.keystore.new_data_key(
            session, owner_org=owner_org, object_ref=_secret_ref(computation_id), now=now
        )
        comp.secret_key_id = key.id
        comp.secret_sealed = seal(key, secret, _secret_aad(computation_id))


def _secret_ref(comp_id: str) -> str:
    return f"computation:{comp_id}:job-key"


def _secret_aad(comp_id: str) -> bytes:
    return f"pdx:computation-job-key:{comp_id}".encode()


def _load_job_key(ctx: ComputeContext, computation_id: str) -> Any:
    with ctx.sessions() as session:
        comp = load(session, computation_id)
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


def _payload(release: Release[Any]) -> dict[str, Any]:
    value = release.review()
    as_dict = getattr(value, "as_dict", None)
    out: dict[str, Any] = as_dict() if callable(as_dict) else dict(value)
    return json.loads(json.dumps(out, default=str))  # type: ignore[no-any-return]


def _finish(
    ctx: ComputeContext,
    computation_id: str,
    release: Release[Any],
    ob: policies.Obligations,
    lease: leases.Lease,
) -> None:
    now = ctx.clock()
    payload = _payload(release)
    body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(body).hexdigest()
    held = not release.released
    suppressed = f" suppressed={len(release.suppressed)}" if release.suppressed else ""
    with ctx.sessions() as session, session.begin():
        comp = load(session, computation_id, lock=True)
        leases.fence(session, lease)  # under the row lock: a taken-over run stops here
        leases.end(session, lease)
        _drop_job_key(ctx, session, comp)
        fl_rounds.forget(session, comp.id)
        key = ctx.keystore.new_data_key(
            session,
            owner_org=comp.requester_org,
            object_ref=result_ref(comp.id),
            now=now,
        )
        comp.result_key_id = key.id
        comp.result_sealed = seal(key, body, result_aad(comp.id))
        comp.result_digest = digest
        comp.epsilon_spent = release.epsilon_spent
        comp.retain_until = now + ctx.retention
        # Compare-and-set: a run no longer `running` raises here and its transaction,
        # keys and sealed output included, rolls back.
        transition(
            ctx,
            session,
            comp,
            platform_subject(),
            event="review" if held else "released",
            action="hold" if held else "release",
            now=now,
            expect=State.RUNNING,
            state=State.REVIEW if held else State.RELEASED,
            detail=f"epsilon={release.epsilon_spent}{suppressed}",
            # Keyed (exchange.commitments): a small result is not brute-forced off the ledger.
            digest=record_commitment(session, comp.id, "result", body, now=now),
        )


def _end(
    ctx: ComputeContext,
    computation_id: str,
    state: State,
    event: str,
    code: str,
    detail: str,
    lease: leases.Lease,
) -> None:
    """End a running job as `state`; a job no longer running, or no longer this run's, stays."""
    now = ctx.clock()
    try:
        with ctx.sessions() as session, session.begin():
            comp = load(session, computation_id, lock=True)
            leases.fence(session, lease)
            leases.end(session, lease)
            _drop_job_key(ctx, session, comp)
            fl_rounds.forget(session, comp.id)
            comp.error = {"code": code, "detail": detail[:500]}
            transition(
                ctx,
                session,
                comp,
                platform_subject(),
                event=event,
                action="reject" if state is State.REJECTED else "fail",
                now=now,
                expect=State.RUNNING,
                state=state,
                detail=f"{code}: {detail}"[:512],
            )
    except StaleTransition:
        log.warning("computation %s: already ended; %s not recorded", computation_id, event)


def recover(ctx: ComputeContext, *, approved: bool = True) -> int:
    """Queue again the jobs whose run's lease has lapsed, and (`approved`) approved ones.

    Called at start-up and periodically (`exchange.jobqueue.Recovery`) by every gateway
    and worker: a job another process is running keeps its live lease and is left alone.
    Re-delivery is safe: `run_job` takes a job only by a compare-and-set. Returns how
    many jobs were queued.
    """
    now = ctx.clock()
    with ctx.sessions() as session:
        lapsed = leases.expired(session, now)
        waiting: list[tuple[str, str]] = []
        if approved:
            waiting = [
                (c, o)
                for c, o in session.execute(
                    select(Computation.id, Computation.requester_org)
                    .where(Computation.state == State.APPROVED)
                    .order_by(Computation.created_at, Computation.id)
                ).tuples()
            ]
    for comp_id, requester_org in lapsed:
        log.warning("computation %s: its run's lease lapsed; running it again", comp_id)
        if ctx.queue is not None:
            ctx.queue.retry(comp_id, requester_org)
        else:
            submit(ctx, comp_id, requester_org)
    for comp_id, requester_org in waiting:
        submit(ctx, comp_id, requester_org)
    return len(lapsed) + len(waiting)

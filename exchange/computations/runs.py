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

Every move is a compare-and-set on the state it expects (`state.transition`): a runner
that finishes a job recovery has already ended changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

import crypto
import policies
from exchange.catalog import iter_plaintext
from exchange.computations import joins
from exchange.computations.context import ComputeContext, release_obligations
from exchange.computations.results import result_aad, result_ref
from exchange.computations.state import State, load, platform_subject, transition
from exchange.custody import node_data_key, node_for
from exchange.errors import ExchangeError, StaleTransition
from exchange.jobs import export_secret, open_sealed, restore_result_party, seal
from exchange.models import Computation, Dataset, NodeDataset, Organisation
from sandbox.errors import ReleaseRefused, SandboxError
from sandbox.fl import FlJob
from sandbox.joins import JoinJob
from sandbox.nodes import NodeGrant, NodeJob, NodeSandbox, ProviderNode, node_input_path
from sandbox.operators import OPERATORS, FlParams, HeteroParams, ProviderInput, StatsParams
from sandbox.release import Release, ReleaseGate
from sandbox.stats import StatsJob
from sandbox.vertical_ops import HeteroJob

__all__ = ["recover", "run_job", "submit"]

log = logging.getLogger("pdx.computations")


def submit(ctx: ComputeContext, computation_id: str, requester_org: str) -> None:
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
        comp = load(session, computation_id, lock=True)
        if comp.state != State.APPROVED:
            return  # already taken, or no longer runnable
        transition(
            ctx,
            session,
            comp,
            platform_subject(),
            event="running",
            action="run",
            now=now,
            expect=State.APPROVED,
            state=State.RUNNING,
        )
        operator, params_raw = comp.operator, dict(comp.params)
        ob = policies.Obligations.from_decision(comp.obligations)
        requester = comp.requester_org
    prepared: _Prepared | None = None
    try:
        ctx.sandbox_runs += 1
        prepared = _prepare_inputs(ctx, computation_id, operator, params_raw)
        release = _execute(ctx, computation_id, requester, operator, params_raw, ob, prepared)
        _finish(ctx, computation_id, release, ob)
    except StaleTransition:
        # Someone else ended this run (recovery failed it): our output is discarded.
        log.warning("computation %s: ended elsewhere; this run's output discarded", computation_id)
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
    operators = joins.node_operators(operator, params) or (
        ("stats.variance", "fl.logreg") if operator == "fl.logreg" else (operator,)
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
) -> Release[Any]:
    """Create the job keys (sealed under the requester's KEK), run, decrypt, gate."""
    sandbox = NodeSandbox(ctx.sandbox(), prepared.routes, local_inputs=prepared.local)
    assert ctx.budget is not None
    gate = ReleaseGate(ctx.budget)
    params = OPERATORS[operator].params.model_validate(params_raw)
    plan = joins.join_plan(operator, params)  # type: ignore[arg-type]
    if plan is not None:
        join = JoinJob(
            operator,
            plan,
            *prepared.providers,
            sandbox=sandbox,
            job_id=computation_id,
            paillier_bits=ctx.paillier_bits,
        )
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
    ctx: ComputeContext, computation_id: str, release: Release[Any], ob: policies.Obligations
) -> None:
    now = ctx.clock()
    payload = _payload(release)
    body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(body).hexdigest()
    held = not release.released
    suppressed = f" suppressed={len(release.suppressed)}" if release.suppressed else ""
    with ctx.sessions() as session, session.begin():
        comp = load(session, computation_id, lock=True)
        _drop_job_key(ctx, session, comp)
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
            digest=f"sha256:{digest}",
        )


def _end(
    ctx: ComputeContext, computation_id: str, state: State, event: str, code: str, detail: str
) -> None:
    """End a running job as `state`; a job no longer running is left as it is."""
    now = ctx.clock()
    try:
        with ctx.sessions() as session, session.begin():
            comp = load(session, computation_id, lock=True)
            _drop_job_key(ctx, session, comp)
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
        submit(ctx, comp_id, requester_org)
    return len(interrupted) + len(approved)

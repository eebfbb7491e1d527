"""Computation requests and their state machine ("usable but invisible", 可用不可见).

    requested ─► awaiting_approval ─► approved ─► running ─► review ─► released
        │               │                           │          │
        └───────────────┴──► rejected ◄─────────────┴──────────┘    running ─► failed

* `requested`: the enterprise asked; the enforcement point has decided
  `computation.request` on every input (a denial never gets here) and passed the
  strictest obligations, which are stored with the request.
* `awaiting_approval` (obligation `require_provider_approval`): each input's provider
  approves or rejects (`computation.approve` decisions). No operator code runs before
  every approval is in: the job is handed to the runner only on entering `approved`.
* `running`: per provider, the vetted operator runs on that provider's rows inside the
  sandbox isolation: platform-held inputs are decrypted (`iter_plaintext`) into a
  private job directory for the platform's sandbox, node-held inputs run on the
  provider's node (`sandbox.nodes`). Each returns only an encrypted partial; the
  coordinator adds ciphertexts; the result party (the requester) decrypts the
  aggregate with the job's secret key, which is sealed under its KEK. With a
  requester-held `job_key` (required for inputs on a provider's own node) no secret key
  exists on the platform: nodes add noise shares and masks, encrypt under the
  requester's key, and the encrypted aggregate is the result (`job_keys`).
* The release gate enforces `min_cohort`, `dp_epsilon` (charged to each dataset's
  budget) and shape; with `release_review` the output is held in `review` until each
  provider approves it. `rejected`: a provider said no, or the gate refused.
* `released`: the requester (result party) alone fetches the output; each fetch is
  recorded as a delivery (PIPL art. 23, docs/compliance.md PI-04).

Every transition is an audit record and a ledger entry in the transaction that makes it
(`Trail.record`), and a compare-and-set on the state it expects; the computation lists
the ledger index of each.

The package, by responsibility: `schemas` (API models), `state` (states, moves,
transitions), `requests` (one load of inputs, decision, checks, write), `approvals`
(run and release), `runs` (preparation, execution, job key, recovery), `results`
(views, delivery, review, retention), `fl_rounds` (the requester's replies to a
federated job's rounds under its own key); `context` holds what the composition root passes
in. Operator parameters live in `sandbox.operators`, obligations in `policies`, policy
resources in `exchange.resources`; every public name is importable from here.
"""

from __future__ import annotations

from exchange.computations.approvals import decide
from exchange.computations.context import (
    DEFAULT_MIN_COHORT,
    DEFAULT_RETENTION,
    MAX_INPUTS,
    ComputeContext,
    release_obligations,
)
from exchange.computations.fl_rounds import current_round as fl_current_round
from exchange.computations.fl_rounds import post_reply as fl_post_reply
from exchange.computations.join_steps import current_step as join_current_step
from exchange.computations.join_steps import post_reply as join_post_reply
from exchange.computations.requests import Decide, request_computation
from exchange.computations.results import (
    get_computation,
    get_result,
    list_computations,
    purge_expired,
    review_output,
)
from exchange.computations.runs import recover, run_job
from exchange.computations.schemas import (
    ApprovalPublic,
    ComputationCreate,
    ComputationPublic,
    ComputationResult,
    InputPublic,
    OperatorPublic,
    ParticipantPublic,
    TransitionPublic,
    list_operators,
    to_public,
)
from exchange.computations.state import PLATFORM_PARTY, TERMINAL, State
from exchange.resources import approval_resources
from policies import Obligations
from sandbox.operators import OPERATORS, FlParams, StatsParams

__all__ = [
    "DEFAULT_MIN_COHORT",
    "DEFAULT_RETENTION",
    "MAX_INPUTS",
    "OPERATORS",
    "PLATFORM_PARTY",
    "TERMINAL",
    "ApprovalPublic",
    "ComputationCreate",
    "ComputationPublic",
    "ComputationResult",
    "ComputeContext",
    "Decide",
    "FlParams",
    "InputPublic",
    "Obligations",
    "OperatorPublic",
    "ParticipantPublic",
    "State",
    "StatsParams",
    "TransitionPublic",
    "approval_resources",
    "decide",
    "fl_current_round",
    "fl_post_reply",
    "join_current_step",
    "join_post_reply",
    "get_computation",
    "get_result",
    "list_computations",
    "list_operators",
    "purge_expired",
    "recover",
    "release_obligations",
    "request_computation",
    "review_output",
    "run_job",
    "to_public",
]

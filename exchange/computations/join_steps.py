"""The requester in the loop of a join with its own cohort: each open step and its reply.

A join whose cohort is the requester's own list (`params.cohort`, `sandbox.cohort_joins`)
needs the requester's SDK at every step: it blinds its identifiers, then blinds and
shuffles the provider's points (`pdx_client.psi`). The run keeps one row per job (the
federated rounds' table, `fl_rounds.ComputationFlRound`: a job is one or the other):
the open step, and the reply once posted. The SDK fetches the step
(GET /v1/computations/{id}/join-step) and posts its reply
(POST /v1/computations/{id}/join-step/{step}); each reply is a ledger entry and an audit
record (`computation.join_step_posted`) in one transaction. The run waits for each reply
up to `PDX_FL_ROUND_TIMEOUT_S`, then fails the job (`join-step-timeout`); the row is
deleted in the transaction that ends the job, whatever the end.

What is stored and relayed is what `sandbox.cohort_joins` names: counts, the job salt and
opaque bytes (counts only: a `return` reply carries blinded elements, no value). A reply
is checked for shape here (its operation, base64 fields, sizes); the provider's sandbox
checks the rest (distinct elements, all of them returned). The SDK may answer any step
with `{"op": "stop", "reason": ...}` (a provider step its node did not sign, say): it is
recorded like every reply and the run fails at once with `join-stopped`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from exchange.accounts import Caller
from exchange.computations import fl_rounds
from exchange.computations.context import ComputeContext
from exchange.computations.joins import is_cohort_request
from exchange.errors import ExchangeError, InvalidInput, JoinStepTimeout

__all__ = ["JoinStepTimeout", "current_step", "post_reply", "requester_exchange"]

_FIELDS: dict[str, dict[str, type]] = {
    "blind": {"op": str, "elements": str, "final": bool},
    "pairs": {"op": str, "ok": bool},
    "doubled": {"op": str, "ok": bool},
    "return": {"op": str, "elements": str, "final": bool},
}
_STOP: dict[str, type] = {"op": str, "reason": str}
"""The SDK's answer to any step it refuses (the run fails with `join-stopped`)."""
_REASON_MAX = 500


def requester_exchange(
    ctx: ComputeContext, computation_id: str
) -> Callable[[int, dict[str, Any]], dict[str, Any]]:
    """The run's side: open step k, wait for the SDK's reply, fail the job on the deadline."""

    def timed_out(step: int, timeout: float) -> ExchangeError:
        return JoinStepTimeout(f"the requester did not answer step {step} within {timeout:g} s")

    return fl_rounds.requester_exchange(ctx, computation_id, timeout_error=timed_out)


def current_step(ctx: ComputeContext, caller: Caller, computation_id: str) -> dict[str, Any]:
    """The open step, for the requester (409 when none is waiting)."""
    return fl_rounds.open_step(
        ctx, caller, computation_id, document="request", takes=is_cohort_request
    )


def _check_reply(reply: dict[str, Any], open_doc: dict[str, Any]) -> None:
    """Refused unless the reply answers the open step's operation, in its shape."""
    op = open_doc.get("op")
    if reply.get("op") == "stop":  # answers any step
        shape = _STOP
        if len(str(reply.get("reason", ""))) > _REASON_MAX:
            raise InvalidInput(
                f"a stop's reason is at most {_REASON_MAX} characters", field="reason"
            )
    else:
        found = _FIELDS.get(str(op))
        if found is None or reply.get("op") != op:
            raise InvalidInput(f"the open step is {op!r}: reply with op = {op!r}", field="op")
        shape = found
    if set(reply) != set(shape):
        raise InvalidInput(
            f"a {op} reply has exactly the fields {', '.join(sorted(shape))}", field="reply"
        )
    for name, kind in shape.items():
        if not isinstance(reply[name], kind):
            raise InvalidInput(f"{name} must be a {kind.__name__}", field=name)
    if "elements" in reply:
        try:
            raw = base64.b64decode(reply["elements"], validate=True)
        except ValueError:
            raise InvalidInput("elements is not base64", field="elements") from None
        if len(raw) % 32:
            raise InvalidInput("elements are 32-byte abscissae", field="elements")


def post_reply(
    ctx: ComputeContext, caller: Caller, computation_id: str, step: int, reply: dict[str, Any]
) -> dict[str, Any]:
    """The requester's reply to step `step`: recorded (ledger + audit) with the job's row."""
    return fl_rounds.record_reply(
        ctx,
        caller,
        computation_id,
        step,
        reply,
        lambda open_step: _check_reply(reply, json.loads(open_step)),
        event="join_step_posted",
        action="join_step",
        detail=f"step={step} op={reply.get('op')}",
        takes=is_cohort_request,
    )

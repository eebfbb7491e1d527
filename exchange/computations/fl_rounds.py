"""The requester in the loop of `fl.logreg` under its own key: each step's aggregate and reply.

A federated job under a requester-held key (`sandbox.party_fl`) needs each round's global
model, which only the requester can compute (it alone decrypts the aggregate). The run
keeps one row per job (`ComputationFlRound`): the step's encrypted aggregate, and the
requester's reply once posted. The requester's SDK fetches the step
(GET /v1/computations/{id}/fl-round), decrypts it on its machine and posts the next
global model (POST /v1/computations/{id}/fl-round/{step}); the run waits for it up to
its deadline, then fails the job. The row is deleted in the transaction that ends the
job, whatever the end: no aggregate or model is left behind.

A reply is sealed by the requester's SDK (`pdx_client.flseal`): the standardisation and
each global model for each provider's node, and a copy for the requester itself. The
platform stores and forwards ciphertexts it cannot open, so it sees no model, only how
many rounds ran and when the requester stopped (`sandbox.party_fl.SECURITY_MODEL`). A
reply carrying a model in the clear is refused.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ForeignKey, Integer, Text, delete
from sqlalchemy.orm import Mapped, Session, mapped_column

from exchange.accounts import Caller, Role
from exchange.computations.context import ComputeContext
from exchange.computations.state import State, load, transition
from exchange.errors import (
    Conflict,
    ExchangeError,
    FlRoundTimeout,
    Forbidden,
    InvalidInput,
    NotFound,
)
from exchange.models import ExchangeBase
from exchange.resources import sees_computation

__all__ = [
    "DEFAULT_ROUND_TIMEOUT_S",
    "ComputationFlRound",
    "FlRoundTimeout",
    "current_round",
    "forget",
    "post_reply",
    "requester_exchange",
    "requester_row",
]

DEFAULT_ROUND_TIMEOUT_S = 600.0
"""How long a run waits for the requester's reply to one step (`PDX_FL_ROUND_TIMEOUT_S`)."""
MAX_REPLY_BYTES = 1 << 20
_SEALED_FIELDS = frozenset({"format", "requester_key", "nodes", "requester"})
_POLL_S = 0.2


class ComputationFlRound(ExchangeBase):
    """The open step of a running federated job under a requester key (one row per job)."""

    __tablename__ = "computation_fl_rounds"

    computation_id: Mapped[str] = mapped_column(ForeignKey("computations.id"), primary_key=True)
    step: Mapped[int] = mapped_column(Integer)
    aggregate: Mapped[str] = mapped_column(Text)
    """The step's encrypted aggregate (`sandbox.party_fl.FL_ROUND_FORMAT`), JSON."""
    reply: Mapped[str | None] = mapped_column(Text, nullable=True)
    """The requester's sealed reply (or stop), JSON; None until posted."""
    opened_at: Mapped[datetime]
    deadline: Mapped[datetime]


def forget(session: Session, computation_id: str) -> None:
    """Delete the job's round row (in the transaction that ends the job)."""
    session.execute(
        delete(ComputationFlRound).where(ComputationFlRound.computation_id == computation_id)
    )


def requester_exchange(
    ctx: ComputeContext,
    computation_id: str,
    *,
    sleep: Callable[[float], None] = time.sleep,
    timeout_error: Callable[[int, float], ExchangeError] | None = None,
) -> Callable[[int, dict[str, Any]], dict[str, Any]]:
    """The run's side: open step k with its aggregate, wait for the reply (or time out).

    Also the private join with the requester's own cohort (`join_steps`), which passes
    its own `timeout_error`.
    """
    timeout = ctx.fl_round_timeout_s

    def exchange(step: int, doc: dict[str, Any]) -> dict[str, Any]:
        now = ctx.clock()
        with ctx.sessions() as session, session.begin():
            comp = load(session, computation_id, lock=True)
            if comp.state != State.RUNNING:
                raise Conflict("the computation is no longer running", state=comp.state)
            row = session.get(ComputationFlRound, computation_id)
            if row is None:
                row = ComputationFlRound(computation_id=computation_id)
                session.add(row)
            row.step = step
            row.aggregate = json.dumps(doc, separators=(",", ":"))
            row.reply = None
            row.opened_at = now
            row.deadline = now + timedelta(seconds=timeout)
        give_up = time.monotonic() + timeout
        while True:
            with ctx.sessions() as session:
                found = session.get(ComputationFlRound, computation_id)
                reply = found.reply if found is not None and found.step == step else None
                state = load(session, computation_id).state
            if reply is not None:
                out: dict[str, Any] = json.loads(reply)
                return out
            if state != State.RUNNING:
                raise Conflict("the computation is no longer running", state=state)
            if time.monotonic() >= give_up:
                if timeout_error is not None:
                    raise timeout_error(step, timeout)
                raise FlRoundTimeout(
                    f"no global model was posted for step {step} within {timeout:g} s"
                )
            sleep(_POLL_S)

    return exchange


def requester_row(
    session: Session,
    caller: Caller,
    computation_id: str,
    takes: Callable[[str, dict[str, Any]], bool] = lambda op, _params: op == "fl.logreg",
) -> tuple[Any, ComputationFlRound]:
    """The requester's open step of a running job whose operator `takes` such steps."""
    comp = load(session, computation_id, lock=True)
    if caller.org_id != comp.requester_org:
        if sees_computation(caller, comp):
            raise Forbidden("only the requesting organisation takes part in the rounds")
        raise NotFound("no such computation", computation_id=computation_id)
    caller.require(Role.DATA_CONSUMER)
    if comp.state != State.RUNNING:
        raise Conflict(f"the computation is {comp.state}, not running", state=comp.state)
    row = session.get(ComputationFlRound, computation_id)
    if row is None or not takes(comp.operator, dict(comp.params)):
        raise Conflict("no step is waiting for the requester here", state=comp.state)
    return comp, row


def open_step(
    ctx: ComputeContext,
    caller: Caller,
    computation_id: str,
    *,
    document: str,
    takes: Callable[[str, dict[str, Any]], bool] = lambda op, _params: op == "fl.logreg",
) -> dict[str, Any]:
    """The requester's view of the open step, its JSON under `document` (409: none waiting)."""
    with ctx.sessions() as session, session.begin():
        _, row = requester_row(session, caller, computation_id, takes)
        return {
            "computation_id": computation_id,
            "step": row.step,
            "posted": row.reply is not None,
            "deadline": row.deadline.isoformat(),
            document: json.loads(row.aggregate),
        }


def current_round(ctx: ComputeContext, caller: Caller, computation_id: str) -> dict[str, Any]:
    """The open step's encrypted aggregate, for the requester (409 when none is waiting)."""
    return open_step(ctx, caller, computation_id, document="aggregate")


def _check_reply(reply: dict[str, Any], step: int) -> None:
    """A sealed model or stop; a model in the clear is refused."""
    extra = set(reply) - {"sealed", "stop"}
    if extra:
        raise InvalidInput(
            f"unexpected field(s) in the reply: {', '.join(sorted(extra))} (a global model "
            "travels sealed for the nodes)"
        )
    stop = reply.get("stop") is True
    sealed = reply.get("sealed")
    if stop and sealed is not None:
        raise InvalidInput("a stop carries no model", field="sealed")
    if not stop:
        if not isinstance(sealed, dict):
            raise InvalidInput("the reply needs the sealed next model or stop", field="sealed")
        if set(sealed) != _SEALED_FIELDS or not isinstance(sealed.get("nodes"), list):
            raise InvalidInput("malformed sealed model", field="sealed")


def post_reply(
    ctx: ComputeContext, caller: Caller, computation_id: str, step: int, reply: dict[str, Any]
) -> dict[str, Any]:
    """The requester's reply to federated step `step`: checked, then recorded."""
    return record_reply(
        ctx,
        caller,
        computation_id,
        step,
        reply,
        lambda _open: _check_reply(reply, step),
        event="fl_round_posted",
        action="fl_round",
        detail=f"step={step}" + (" stop" if reply.get("stop") is True else ""),
    )


def record_reply(
    ctx: ComputeContext,
    caller: Caller,
    computation_id: str,
    step: int,
    reply: dict[str, Any],
    check: Callable[[str], None],
    *,
    event: str,
    action: str,
    detail: str,
    takes: Callable[[str, dict[str, Any]], bool] = lambda op, _params: op == "fl.logreg",
) -> dict[str, Any]:
    """The requester's reply to the open step `step`, recorded in one transaction.

    `check(the open step's stored JSON)` refuses a reply that does not answer it; the
    reply's canonical JSON is stored with the job's row, with its ledger entry and audit
    record.
    """
    now = ctx.clock()
    with ctx.sessions() as session, session.begin():
        comp, row = requester_row(session, caller, computation_id, takes)
        if row.step != step:
            raise Conflict(f"step {row.step} is open, not {step}", state=comp.state)
        if row.reply is not None:
            raise Conflict(f"step {step} was already answered", state=comp.state)
        check(row.aggregate)
        text = json.dumps(reply, sort_keys=True, separators=(",", ":"))
        if len(text) > MAX_REPLY_BYTES:
            raise InvalidInput("the reply is too large")
        row.reply = text
        index = transition(
            ctx,
            session,
            comp,
            caller.subject(),
            event=event,
            action=action,
            now=now,
            expect=State.RUNNING,
            detail=detail,
            digest="sha256:" + hashlib.sha256(text.encode()).hexdigest(),
        )
        return {"computation_id": computation_id, "step": step, "ledger_index": index}

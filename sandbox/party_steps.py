"""One step of a party's side of a multi-step operator, named by `params.step`, in order."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from sandbox._isolation_model import OperatorContext
from sandbox.errors import InvalidParameters

Step = Callable[[OperatorContext], bytes]


def run_step(ctx: OperatorContext, steps: Mapping[str, Step], *, kind: str, party: str) -> bytes:
    """Run the step `params.step` names: a role's `.start` once, then only that role's steps.

    A step's role is its name up to the first dot (`guest.round` is the guest's); its start
    step records that role in `ctx.state["role"]`.
    """
    name = str(ctx.params.get("step", ""))
    fn = steps.get(name)
    if fn is None:
        raise InvalidParameters(f"unknown {kind} step")
    if name.endswith(".start"):
        if ctx.state:
            raise InvalidParameters(f"{party} starts once")
    elif ctx.state.get("role") != name.split(".", 1)[0]:
        raise InvalidParameters(f"{kind} step out of order")
    return fn(ctx)

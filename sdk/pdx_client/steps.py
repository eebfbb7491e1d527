"""The requester in the loop: answer each open step of a running computation until it ends.

Federated rounds (`pdx_client.fl`) and joins with the requester's own cohort
(`pdx_client.psi`) both wait for the server to open a step (`GET .../{kind}`), answer it
(`POST .../{kind}/{step}`) and go on until the computation leaves `running`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from typing import Any, Protocol

from pdx_client.errors import ApiError, TimedOut

__all__ = ["Http", "answer_steps"]


class Http(Protocol):
    """What the steps need of a session (`pdx_client.session.Session`)."""

    def get(self, path: str, **params: Any) -> Any: ...

    def post(self, path: str, json: Any = None, **kw: Any) -> Any: ...


def answer_steps(
    http: Http,
    computation_id: str,
    kind: str,
    reply: Callable[[int, dict[str, Any]], dict[str, Any]],
    *,
    ended: Collection[str],
    timeout: float,
    poll: float,
    sleep: Callable[[float], None] = time.sleep,
    on_step: Callable[[int], None] | None = None,
) -> None:
    """Post `reply(step, open step)` for every step not yet answered, until a state in `ended`.

    `timeout` is how long to wait for the next step (or the end) after the last answer.
    Any unanswered step is answered, the first too: a run recovered after a restart
    begins again at step 0.
    """
    deadline = time.monotonic() + timeout
    base = f"/v1/computations/{computation_id}"
    while True:
        state = str(http.get(base)["state"]).replace("-", "_")
        if state in ended:
            return
        if state == "running":
            try:
                step = http.get(f"{base}/{kind}")
            except ApiError as exc:
                if exc.status != 409:
                    raise
                step = None  # no step open yet (or the job just ended)
            if step is not None and not step["posted"]:
                k = int(step["step"])
                http.post(f"{base}/{kind}/{k}", reply(k, step))
                deadline = time.monotonic() + timeout
                if on_step:
                    on_step(k)
                continue
        if time.monotonic() > deadline:
            raise TimedOut(f"computation {computation_id} still {state} after {timeout:.0f} s")
        sleep(poll)

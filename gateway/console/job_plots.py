"""Job durations for the enterprise's page: how long its computations waited and ran.

Read from each computation's own transitions (as `GET /v1/computations` returns them):
waiting is request → `running` (approvals and the queue), running is `running` → its
end. A job recovered after a lapsed lease counts from its first `running`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from markupsafe import Markup

from gateway.console import plots, reads

ENDS = ("released", "review", "awaiting_release", "rejected", "failed")


def durations(computation: dict[str, Any]) -> tuple[datetime, float, float] | None:
    """(ended at, seconds waiting, seconds running) of an ended computation, else None."""
    created = reads.when(computation.get("created_at"))
    started = ended = None
    for step in computation.get("transitions") or ():
        at = reads.when(step.get("at"))
        if at is None:
            continue
        state = str(step.get("state", "")).replace("-", "_")
        if state == "running" and started is None:
            started = at
        elif state in ENDS and started is not None:
            ended = at
    if created is None or started is None or ended is None:
        return None
    return ended, (started - created).total_seconds(), (ended - started).total_seconds()


def durations_plot(computations: Sequence[dict[str, Any]], t: Callable[..., str]) -> Markup:
    """Two lines over the computations' end times: seconds waiting, seconds running."""
    points = sorted(d for d in (durations(c) for c in computations) if d is not None)
    if not points:
        return plots.lines(t("job_durations"), [], ("", ""))
    origin = points[0][0]
    waiting = [((end - origin).total_seconds(), wait) for end, wait, _ in points]
    running = [((end - origin).total_seconds(), run) for end, _, run in points]
    labels = (points[0][0].strftime("%m-%d %H:%M"), points[-1][0].strftime("%m-%d %H:%M"))
    return plots.lines(
        t("job_durations"),
        [(t("job_waiting_s"), "#b54708", waiting), (t("job_running_s"), "#175cd3", running)],
        labels,
    )

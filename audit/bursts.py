"""Flood aggregation: repeated failures from one source become one audit record with a count.

The first failure for a key (source address, event type, subject) is recorded at once,
as before, and opens a window; further failures with that key inside the window are
only counted. When the window ends, one `<area>.failure_burst` record carries the count
and the first and last times (docs/compliance.md AUD-01 fields: subject, address, time, action,
result). A flood therefore writes two rows per key and window instead of one per
request (issue 11: 3,000 `Bearer x` requests wrote 3,000 rows), and nothing is lost:
the first record plus the burst counts add up to every failure seen.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from audit.events import AuditEvent, Result, Subject, record
from audit.models import AuditRecord

BurstKey = tuple[str | None, str, str | None]  # (address, event type, subject id)

# Open windows kept at most; beyond this the oldest are closed early (written sooner).
MAX_OPEN = 10_000
# Subject windows open at once per (address, event type); further subjects fold.
MAX_SUBJECTS = 8


@dataclass
class Burst:
    """Failures counted after the first one of a window (not recorded one by one)."""

    address: str | None
    event_type: str
    subject_id: str | None
    action: str
    opened: datetime
    count: int = 0
    first: datetime | None = None
    last: datetime | None = None
    folded: int = 0  # of `count`: failures naming other subjects (past `MAX_SUBJECTS`)


class BurstAggregator:
    """Counts repeated failures per key within `window`; thread-safe."""

    def __init__(
        self, *, window: timedelta, max_open: int = MAX_OPEN, max_subjects: int = MAX_SUBJECTS
    ) -> None:
        self.window = window
        self._max_open = max_open
        self._max_subjects = max_subjects
        self._open: dict[BurstKey, Burst] = {}
        self._subjects: dict[tuple[str | None, str], int] = {}  # open subject windows
        self._closed: list[Burst] = []
        self._lock = threading.Lock()

    def _opened(self, key: BurstKey, delta: int) -> None:
        if key[2] is None:
            return
        source = (key[0], key[1])
        n = self._subjects.get(source, 0) + delta
        if n > 0:
            self._subjects[source] = n
        else:
            self._subjects.pop(source, None)

    def _pop(self, key: BurstKey) -> Burst:
        self._opened(key, -1)
        return self._open.pop(key)

    def observe(
        self,
        *,
        address: str | None,
        event_type: str,
        subject_id: str | None,
        action: str,
        now: datetime,
    ) -> bool:
        """Note one failure; True when the caller should record it individually now."""
        key: BurstKey = (address, event_type, subject_id)
        folded = False
        with self._lock:
            burst = self._open.get(key)
            if (
                burst is None
                and subject_id is not None
                and self._subjects.get((address, event_type), 0) >= self._max_subjects
            ):
                key, folded = (address, event_type, None), True
                burst = self._open.get(key)
            if burst is not None and now - burst.opened < self.window:
                burst.count += 1
                burst.folded += folded
                burst.first = burst.first or now
                burst.last = now
                burst.action = action
                return False
            if burst is not None and burst.count:
                self._closed.append(burst)  # window over: `due` writes it
            if burst is None:
                self._opened(key, +1)
            self._open[key] = Burst(address, event_type, key[2], action, opened=now)
            return True

    def due(self, now: datetime) -> list[Burst]:
        """Take the windows that have ended (or overflow the bound) and hold counts."""
        with self._lock:
            ended = [k for k, b in self._open.items() if now - b.opened >= self.window]
            overflow = len(self._open) - len(ended) - self._max_open
            if overflow > 0:
                closing = set(ended)
                rest = sorted(
                    (k for k in self._open if k not in closing),
                    key=lambda k: self._open[k].opened,
                )
                ended.extend(rest[:overflow])
            taken = [self._pop(k) for k in ended] + self._closed
            self._closed = []
        return [b for b in taken if b.count]

    def drain(self) -> list[Burst]:
        """Take every window that holds counts (at shutdown)."""
        with self._lock:
            taken = list(self._open.values()) + self._closed
            self._open.clear()
            self._subjects.clear()
            self._closed = []
        return [b for b in taken if b.count]


def burst_event_type(event_type: str) -> str:
    """`auth.denied` → `auth.failure_burst`; `request.failed` → `request.failure_burst`."""
    return event_type.partition(".")[0] + ".failure_burst"


def record_burst(session: Session, burst: Burst) -> AuditRecord:
    """Write one burst as an audit record in `session`'s transaction."""
    assert burst.first is not None and burst.last is not None
    # Machine-readable: count, first and last time, and the aggregated event type.
    detail = (
        f"count={burst.count} first={burst.first.isoformat()} "
        f"last={burst.last.isoformat()} event={burst.event_type}"
    )
    if burst.folded:
        detail += f" folded={burst.folded}"  # failures naming subjects past the cap
    return record(
        session,
        Subject(burst.subject_id, None, burst.address, None, None),
        AuditEvent(
            burst_event_type(burst.event_type),
            burst.action,
            Result.DENY,
            object_id=burst.subject_id,
            detail=detail,
        ),
        now=burst.last,
    )

"""The sealer: a background thread that turns committed entries into signed blocks.

It wakes every `seal_interval_s`, or early once `seal_max_entries` were appended in
this process, and seals until caught up. Several processes may run one each: a
sealer that loses the race for a block height rolls back and tries again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from ledger.log import Ledger, LedgerSigner, SealedBlock

log = logging.getLogger(__name__)


class Sealer:
    """Seals the ledger on time or size triggers; `seal_now()` for callers that wait."""

    def __init__(
        self,
        ledger: Ledger,
        sessions: Callable[[], Session],
        signer: Callable[[Session], LedgerSigner],
        clock: Callable[[], datetime],
    ) -> None:
        self._ledger = ledger
        self._sessions = sessions
        self._signer = signer
        self._clock = clock
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pending = 0
        self._thread: threading.Thread | None = None
        ledger.on_append(self._appended)

    def _appended(self, count: int) -> None:
        self._pending += count
        if self._pending >= self._ledger.config.seal_max_entries:
            self._wake.set()

    def seal_now(self) -> list[SealedBlock]:
        """Seal everything committed so far; returns the new blocks."""
        sealed: list[SealedBlock] = []
        with self._lock:
            self._pending = 0
            for _ in range(5):
                try:
                    while True:
                        with self._sessions() as session, session.begin():
                            block = self._ledger.seal(
                                session, self._signer(session), now=self._clock()
                            )
                        if block is None:
                            return sealed
                        sealed.append(block)
                except (IntegrityError, OperationalError) as exc:
                    # Another process sealed this height, or SQLite was busy: retry.
                    log.info("ledger seal retried: %s", exc.__class__.__name__)
        return sealed

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="ledger-sealer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread after a final seal."""
        if self._thread is None:
            return
        self._stop.set()
        self._wake.set()
        self._thread.join()
        self._thread = None
        self.seal_now()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._ledger.config.seal_interval_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.seal_now()
            except Exception:  # the thread must survive a bad moment; next tick retries
                log.exception("ledger sealing failed")

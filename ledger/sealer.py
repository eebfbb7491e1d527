"""The sealer: a background thread that turns committed entries into signed blocks.

It wakes every `seal_interval_s`, or early once `seal_max_entries` were appended in
this process, and seals until caught up. Several processes may run one each: a
sealer that loses the race for a block height rolls back and tries again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from ledger.errors import SealRace
from ledger.log import Ledger, LedgerSigner, LogTransaction
from ledger.storage import SealedBlock

__all__ = ["Sealer"]

# A transaction source: a session factory (SQL), or a factory of `LogStore`
# transactions such as `MemoryLogStorage.transaction` (yielding a session or a store).
Transactions = Callable[[], Session] | Callable[[], AbstractContextManager[LogTransaction]]

# How many times one seal_now retries after losing a race to another sealer.
_ATTEMPTS = 5

log = logging.getLogger(__name__)


class Sealer:
    """Seals the ledger on time or size triggers; `seal_now()` for callers that wait."""

    def __init__(
        self,
        ledger: Ledger,
        sessions: Transactions,
        signer: Callable[[Any], LedgerSigner],
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
        self._on_seal: list[Callable[[int], None]] = []
        ledger.on_append(self._appended)

    def on_seal(self, listener: Callable[[int], None]) -> None:
        """Call `listener(blocks)` after new blocks committed, outside any transaction.

        The publisher (witness cosigning, chain anchoring) listens here; it does its
        network calls in its own thread, so a slow witness never holds up sealing.
        """
        self._on_seal.append(listener)

    def _appended(self, count: int) -> None:
        self._pending += count
        if self._pending >= self._ledger.config.seal_max_entries:
            self._wake.set()

    @contextmanager
    def _transaction(self) -> Iterator[LogTransaction]:
        opened = self._sessions()
        if isinstance(opened, Session):
            with opened as session, session.begin():
                yield session
        else:
            with opened as store:
                yield store

    def seal_now(self) -> list[SealedBlock]:
        """Seal everything committed so far; returns the new blocks."""
        sealed = self._seal()
        if sealed:
            for listener in self._on_seal:
                listener(len(sealed))
        return sealed

    def _seal(self) -> list[SealedBlock]:
        sealed: list[SealedBlock] = []
        with self._lock:
            self._pending = 0
            for _ in range(_ATTEMPTS):
                try:
                    while True:
                        with self._transaction() as tx:
                            block = self._ledger.seal(tx, self._signer(tx), now=self._clock())
                        if block is None:
                            return sealed
                        sealed.append(block)
                except (SealRace, IntegrityError, OperationalError) as exc:
                    # Another process sealed this height or extended a tile first (its
                    # blocks are as good as ours), or SQLite was busy: roll back, retry.
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

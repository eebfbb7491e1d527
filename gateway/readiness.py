"""Readiness: the checks behind /readyz, each cached briefly so probes stay cheap."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import exchange.identity
from gateway.platform import Platform, pending_migrations
from ledger import verify_inclusion

# A load balancer may probe every second from several places: each check runs at most
# once per this interval per process.
CACHE_S = 2.0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


class Readiness:
    """Runs the readiness checks of one platform; results are cached for `cache_s`."""

    def __init__(
        self,
        platform: Platform,
        *,
        cache_s: float = CACHE_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._platform = platform
        self._cache_s = cache_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._cached: dict[str, tuple[float, Check]] = {}
        self._checks: dict[str, Callable[[], str | None]] = {
            "database": self._database,
            "store_identity": self._identity,
            "ledger": self._ledger,
            "objects_writable": self._objects_writable,
            "free_space": self._free_space,
            "sandbox": self._sandbox,
            "decision_logs": self._decision_logs,
        }

    def run(self) -> list[Check]:
        return [self._cached_check(name) for name in self._checks]

    def _cached_check(self, name: str) -> Check:
        now = self._monotonic()
        with self._lock:
            hit = self._cached.get(name)
            if hit is not None and now - hit[0] < self._cache_s:
                return hit[1]
        try:
            problem = self._checks[name]()
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            problem = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        check = Check(name, problem is None, problem or "ok")
        with self._lock:
            self._cached[name] = (now, check)
        return check

    # -- the checks: each returns None when fine, else why not ----------------------------

    def _database(self) -> str | None:
        """The schema is at the Alembic heads this code expects (no migration pending)."""
        from alembic.runtime.migration import MigrationContext

        with self._platform.engine.connect() as conn:
            current = tuple(sorted(MigrationContext.configure(conn).get_current_heads()))
        missing = list(pending_migrations(current))
        if missing:
            return f"schema at {list(current)}, migrations pending up to {missing}"
        return None

    def _identity(self) -> str | None:
        """The database and `$PDX_HOME` still name the store this process started with."""
        expected = self._platform.identity
        if expected is None:
            return "not initialised"
        with self._platform.session() as session:
            row = exchange.identity.read_row(session)
        if row is None:
            return "the database has no store identity (deleted or replaced?)"
        if row.store_id != expected.store_id:
            return f"the database now belongs to store {row.store_id}"
        on_disk = exchange.identity.read_file(self._platform.settings.home)
        if on_disk is None or on_disk.store_id != expected.store_id:
            return "the store identity file in PDX_HOME is missing or changed"
        return None

    def _ledger(self) -> str | None:
        """A signed checkpoint exists and the stored entries and tiles give its root."""
        ledger = self._platform.ledger
        with self._platform.session() as session:
            latest = ledger.latest(session)
            if latest is None:
                return "no sealed block"
            size = latest.block.tree_size
            if ledger.size(session) < size:
                return f"the newest block covers {size} entries but fewer are stored"
            if size == 0:
                return None
            last = ledger.entry(session, size - 1)
            proof = ledger.inclusion_proof(session, size - 1, size)
        h = ledger.hasher
        try:
            verify_inclusion(h, size - 1, size, h.leaf(last.leaf), proof, latest.block.root)
        except Exception:  # noqa: BLE001 - any proof error is a mismatch
            return f"the stored tree does not match the signed root at size {size}"
        return None

    def _decision_logs(self) -> str | None:
        """Decision logs are not being dropped: what waits for a write is under its cap."""
        writer = self._platform.decision_logs
        if writer.pending >= writer.max_pending:
            return f"{writer.pending} decision logs waiting (the cap): writes are failing"
        return None

    def _objects_writable(self) -> str | None:
        return self._platform.catalog.objects.problem()

    def _free_space(self) -> str | None:
        free = self._platform.catalog.objects.free_bytes()
        minimum = self._platform.settings.min_free_bytes
        if free < minimum:
            return f"{free} bytes free, below PDX_MIN_FREE_BYTES={minimum}"
        return None

    def _sandbox(self) -> str | None:
        return self._platform.compute.sandbox().unavailable_reason()

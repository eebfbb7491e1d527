"""Object store for encrypted dataset content under `$PDX_HOME/objects`."""

from __future__ import annotations

import errno
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from exchange.errors import InsufficientStorage, StoreUnavailable

log = logging.getLogger("pdx.storage")

# A full filesystem or an exhausted quota: the upload cannot be stored (HTTP 507).
FULL_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# A read-only remount or lost permissions: the store cannot take uploads (HTTP 503).
UNWRITABLE_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})

_ID = re.compile(r"^[0-9a-f\-]{36}$")
_PARTIAL = ".partial"
_SUFFIX = ".pdxs"

# A file touched this recently may belong to a registration still in progress in another
# worker process (each worker sweeps when it starts): it is left for a later sweep.
SWEEP_GRACE_S = 900.0


class ObjectStore:
    """Files named by object id; written as `.partial`, published by rename.

    A registration writes `<id>.pdxs.partial`, publishes it with an atomic rename
    just before its database commit and discards it when anything fails. `sweep`
    removes what a crash may have left: partial files and published files whose
    database row never committed, once untouched for `SWEEP_GRACE_S`.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        # Objects whose registration is still running in this process: never swept,
        # however long the scan or the commit takes (other processes rely on the grace).
        self._active: set[str] = set()
        self._active_lock = threading.Lock()
        try:
            root.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:  # read-only mount: reported by `problem`, not a crash
            log.error("object store %s cannot be created: %s", root, exc.strerror)

    def problem(self) -> str | None:
        """Why objects cannot be written now (missing, read-only, unwritable), or None."""
        probe = self.root / f".probe-{uuid.uuid4().hex}"
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            return f"objects directory not writable: {exc.strerror}"
        os.close(fd)
        probe.unlink(missing_ok=True)
        return None

    def free_bytes(self) -> int:
        """Bytes available to this process on the objects' filesystem."""
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    @staticmethod
    def present(root: Path) -> bool:
        """Whether any published object is under `root` (a store that holds data)."""
        try:
            return any(p.name.endswith(_SUFFIX) for p in root.iterdir())
        except FileNotFoundError:
            return False

    def _path(self, object_id: str, suffix: str = "") -> Path:
        if not _ID.match(object_id):
            raise ValueError("object ids are UUIDs")
        return self.root / f"{object_id}{_SUFFIX}{suffix}"

    def create_partial(self, object_id: str) -> BinaryIO:
        with self._active_lock:
            self._active.add(object_id)
        fd = os.open(self._path(object_id, _PARTIAL), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        return os.fdopen(fd, "wb", buffering=1 << 20)

    def publish(self, object_id: str) -> Path:
        """Make a finished partial file visible (fsync'd, then renamed)."""
        partial = self._path(object_id, _PARTIAL)
        with open(partial, "rb") as f:
            os.fsync(f.fileno())
        final = self._path(object_id)
        os.replace(partial, final)
        dir_fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return final

    def settle(self, object_id: str) -> None:
        """The registration of `object_id` ended (its row committed): sweep as usual."""
        with self._active_lock:
            self._active.discard(object_id)

    def discard(self, object_id: str) -> None:
        """Remove an object in any state; missing files are fine, and so is a failing unlink.

        Never raises: it runs while another error is on its way out, and a file it could
        not remove (read-only remount) is left to the periodic sweep.
        """
        for path in (self._path(object_id, _PARTIAL), self._path(object_id)):
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                log.error("cannot remove %s: %s", path.name, exc.strerror)
        self.settle(object_id)

    def open(self, object_id: str) -> BinaryIO:
        return open(self._path(object_id), "rb")

    def sweep(
        self, known_ids: Iterable[str], *, now: float | None = None, grace_s: float = SWEEP_GRACE_S
    ) -> list[str]:
        """Delete partial files and objects not in `known_ids`; return what was removed."""
        known = set(known_ids)
        return self.sweep_checked(lambda ids: known & set(ids), now=now, grace_s=grace_s)

    def sweep_checked(
        self,
        lookup: Callable[[Collection[str]], set[str]],
        *,
        now: float | None = None,
        grace_s: float = SWEEP_GRACE_S,
    ) -> list[str]:
        """Delete stale partial files and objects without a row; return what was removed.

        Files modified within `grace_s` of `now` are kept: another process may be writing
        that partial file, or about to commit the row of an object it just published.
        Candidates are then looked up (`lookup(ids)` returns the ids that have a dataset
        row) *after* they were found stale, so a row that committed while the directory
        was listed keeps its object. An unreadable directory is logged, never raised.
        """
        cutoff = (time.time() if now is None else now) - grace_s
        try:
            stale = list(self._stale(cutoff))
        except OSError as exc:
            log.error("object sweep cannot list %s: %s", self.root, exc.strerror)
            return []
        orphans = [oid for oid, partial in stale if not partial]
        keep = lookup(orphans) if orphans else set()
        removed: list[str] = []
        with self._active_lock:
            active = set(self._active)
        for object_id, partial in stale:
            if object_id in active or (not partial and object_id in keep):
                continue
            path = self._path(object_id, _PARTIAL if partial else "")
            try:
                if path.stat().st_mtime > cutoff:  # rewritten or republished meanwhile
                    continue
                path.unlink()
            except FileNotFoundError:  # published or discarded meanwhile
                continue
            except OSError as exc:
                log.error("object sweep cannot remove %s: %s", path.name, exc.strerror)
                continue
            removed.append(path.name)
        return removed

    def _stale(self, cutoff: float) -> Iterator[tuple[str, bool]]:
        """(object id, is partial) of files untouched since `cutoff`."""
        for path in self.root.iterdir():
            name = path.name
            if name.endswith(_PARTIAL):
                object_id, partial = name[: -len(_SUFFIX + _PARTIAL)], True
            elif name.endswith(_SUFFIX):
                object_id, partial = name[: -len(_SUFFIX)], False
            else:
                continue
            if not _ID.match(object_id):
                continue
            try:
                if path.stat().st_mtime > cutoff:
                    continue
            except FileNotFoundError:
                continue
            yield object_id, partial


@contextmanager
def storage_errors() -> Iterator[None]:
    """Turn a full disk into `InsufficientStorage` (507), a read-only one into 503."""
    try:
        yield
    except OSError as exc:
        if exc.errno in FULL_DISK_ERRNOS:
            raise InsufficientStorage(
                "the platform's storage is full; the upload was discarded, try again later"
            ) from None
        if exc.errno in UNWRITABLE_ERRNOS:
            log.error("object store not writable: %s", exc.strerror)
            raise StoreUnavailable("the platform's object store is not writable") from None
        raise

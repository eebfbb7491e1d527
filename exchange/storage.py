"""Object store for encrypted dataset content under `$PDX_HOME/objects`."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

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
        root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _path(self, object_id: str, suffix: str = "") -> Path:
        if not _ID.match(object_id):
            raise ValueError("object ids are UUIDs")
        return self.root / f"{object_id}{_SUFFIX}{suffix}"

    def create_partial(self, object_id: str) -> BinaryIO:
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

    def discard(self, object_id: str) -> None:
        """Remove an object in any state; missing files are fine."""
        for path in (self._path(object_id, _PARTIAL), self._path(object_id)):
            path.unlink(missing_ok=True)

    def open(self, object_id: str) -> BinaryIO:
        return open(self._path(object_id), "rb")

    def sweep(
        self, known_ids: Iterable[str], *, now: float | None = None, grace_s: float = SWEEP_GRACE_S
    ) -> list[str]:
        """Delete partial files and objects not in `known_ids`; return what was removed.

        Files modified within `grace_s` of `now` are kept: with several worker processes,
        one starting up must not delete the partial file (or the just-published object
        whose row is about to commit) of a registration another is serving.
        """
        known = set(known_ids)
        cutoff = (time.time() if now is None else now) - grace_s
        removed: list[str] = []
        for path in self.root.iterdir():
            name = path.name
            if name.endswith(_PARTIAL) or (
                name.endswith(_SUFFIX) and name[: -len(_SUFFIX)] not in known
            ):
                try:
                    if path.stat().st_mtime > cutoff:
                        continue
                except FileNotFoundError:  # published or discarded meanwhile
                    continue
                path.unlink(missing_ok=True)
                removed.append(name)
        return removed

"""Job working directories: memory-backed, this process's own, swept once it is gone.

A job's platform-held inputs are decrypted for its sandbox run. They go only to a
directory on memory-backed storage (tmpfs, by default under /dev/shm), never to
`$PDX_HOME` or a disk-backed temporary directory, so a crash or a power cut leaves no
plaintext at rest. Each process works in a directory of its own, `<base>/p-<holder>/`
(mode 0700), and holds an exclusive `flock` on its `.lock` for as long as it lives: the
kernel drops that lock when the process dies, however it dies (kill -9 included), so a
sweeper that can take it knows the owner is gone and removes the directory with all it
held. Each process sweeps at start-up and with every recovery pass.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path

__all__ = ["DEFAULT_BASE", "JobDirs", "is_memory_backed", "sweep_legacy"]

log = logging.getLogger("pdx.jobs")

DEFAULT_BASE = Path("/dev/shm")
MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})
_LOCK = ".lock"
_PREFIX = "p-"


def is_memory_backed(path: Path) -> bool:
    """Whether `path` lies on tmpfs or ramfs (the longest mount point of /proc/self/mounts)."""
    try:
        mounts = Path("/proc/self/mounts").read_text(encoding="utf-8").splitlines()
    except OSError:
        return False
    target = str(path.resolve())
    best, kind = "", ""
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, parts[2]
    return kind in MEMORY_FILESYSTEMS


class JobDirs:
    """The job directories of this process under `root` (created on first use)."""

    def __init__(self, root: Path, holder: str) -> None:
        self.root = root
        self._name = _PREFIX + "".join(c if c.isalnum() else "-" for c in holder)[:100]
        self._mine: Path | None = None
        self._lock_fd: int | None = None
        self._guard = threading.Lock()

    @property
    def mine(self) -> Path:
        """The directory of this process, locked for its lifetime."""
        with self._guard:
            if self._mine is None:
                self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
                os.chmod(self.root, 0o700)
                mine = self.root / self._name
                mine.mkdir(mode=0o700, exist_ok=True)
                fd = os.open(mine / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._lock_fd, self._mine = fd, mine
            return self._mine

    def new(self, prefix: str) -> Path:
        """A fresh private directory for one job (the caller removes it when done)."""
        return Path(tempfile.mkdtemp(prefix=prefix, dir=self.mine))

    def sweep(self) -> int:
        """Remove the directories of processes that are gone; returns how many."""
        if not self.root.is_dir():
            return 0
        removed = 0
        for entry in self.root.iterdir():
            if not entry.name.startswith(_PREFIX) or entry == self._mine:
                continue
            if _owner_gone(entry):
                shutil.rmtree(entry, ignore_errors=True)
                if not entry.exists():
                    removed += 1
                    log.warning("removed job directory %s of a process that died", entry)
        return removed

    def close(self) -> None:
        """Remove this process's directory (a clean stop) and release its lock."""
        with self._guard:
            if self._mine is not None:
                shutil.rmtree(self._mine, ignore_errors=True)
            if self._lock_fd is not None:
                os.close(self._lock_fd)
            self._mine, self._lock_fd = None, None


def _owner_gone(directory: Path) -> bool:
    """True when nobody holds the directory's lock (a dead owner's lock is released)."""
    try:
        fd = os.open(directory / _LOCK, os.O_RDWR)
    except FileNotFoundError:
        # Created and not yet locked, or its lock removed: gone unless just created.
        try:
            return (os.stat(directory).st_mtime + 60) < _now()
        except FileNotFoundError:
            return False
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # releases the lock if this call took it
    return True


def _now() -> float:
    import time

    return time.time()


def sweep_legacy(jobs_dir: Path) -> int:
    """Remove job directories earlier versions left under `$PDX_HOME/jobs` (plaintext CSVs).

    Called under the start-up lock, before this process runs any job; nothing writes
    there any more.
    """
    if not jobs_dir.is_dir():
        return 0
    removed = 0
    for entry in jobs_dir.iterdir():
        if entry.is_dir() and entry.name.startswith("job-"):
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
    if removed:
        log.warning("removed %d job directories a crash left under %s", removed, jobs_dir)
    return removed

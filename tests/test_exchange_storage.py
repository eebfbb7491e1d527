"""The object store's crash sweep: stale leftovers go, work in progress elsewhere stays."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from exchange.storage import SWEEP_GRACE_S, ObjectStore


def _file(root: Path, name: str, age_s: float) -> Path:
    path = root / name
    path.write_bytes(b"x")
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def test_sweep_removes_stale_partials_and_orphans_only(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "objects")
    known, orphan, partial = (str(uuid.uuid4()) for _ in range(3))
    old = SWEEP_GRACE_S + 60
    _file(store.root, f"{known}.pdxs", old)
    _file(store.root, f"{orphan}.pdxs", old)
    _file(store.root, f"{partial}.pdxs.partial", old)
    removed = store.sweep([known])
    assert sorted(removed) == sorted([f"{orphan}.pdxs", f"{partial}.pdxs.partial"])
    assert [p.name for p in store.root.iterdir()] == [f"{known}.pdxs"]


def test_sweep_keeps_what_another_worker_may_be_writing(tmp_path: Path) -> None:
    """Each worker sweeps at start; another may be mid-registration (seen under load)."""
    store = ObjectStore(tmp_path / "objects")
    writing, publishing = str(uuid.uuid4()), str(uuid.uuid4())
    _file(store.root, f"{writing}.pdxs.partial", 1)  # being streamed in
    _file(store.root, f"{publishing}.pdxs", 1)  # renamed, its row about to commit
    assert store.sweep([]) == []
    assert len(list(store.root.iterdir())) == 2
    # Once untouched for the grace period they are leftovers, and go.
    later = time.time() + SWEEP_GRACE_S + 5
    assert len(store.sweep([], now=later)) == 2
    assert list(store.root.iterdir()) == []

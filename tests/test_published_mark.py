"""The published-checkpoint high-water mark under writers in several processes.

`pdx run --workers N` serves `GET /v1/ledger/checkpoint` from N processes, and each
raises the mark (`exchange.backup.record_published`). The load test's mix once failed
one such request: two processes wrote the same temporary file and the second rename
found it gone (a 500); and a slower writer could put back a smaller size after a larger
one, so a restore could fork the log below a checkpoint already served.
"""

from __future__ import annotations

import multiprocessing as mp
from multiprocessing.synchronize import Event
from pathlib import Path

from exchange.backup import published_tree_size, record_published

WRITERS = 3
STEPS = 400


def _write(path: str, first: int, start: Event, errors: mp.Queue[str]) -> None:
    start.wait()
    try:
        for size in range(first, WRITERS * STEPS + 1, WRITERS):
            record_published(Path(path), size)
            if published_tree_size(Path(path)) < size:
                errors.put(f"after recording {size} the mark reads lower")
    except Exception as exc:  # any failure here is a failed request on the server
        errors.put(f"{type(exc).__name__}: {exc}")


def _watch(path: str, start: Event, stop: Event, errors: mp.Queue[str]) -> None:
    start.wait()
    seen = 0
    while not stop.is_set():
        try:
            now = published_tree_size(Path(path))
        except Exception as exc:
            errors.put(f"reader: {type(exc).__name__}: {exc}")
            return
        if now < seen:
            errors.put(f"the mark went down from {seen} to {now}")
            return
        seen = now


def test_the_mark_only_rises_and_never_fails_under_writers_in_several_processes(
    tmp_path: Path,
) -> None:
    ctx = mp.get_context("fork")
    path = str(tmp_path / "published.json")
    start, stop = ctx.Event(), ctx.Event()
    errors: mp.Queue[str] = ctx.Queue()
    writers = [
        ctx.Process(target=_write, args=(path, first, start, errors))
        for first in range(1, WRITERS + 1)
    ]
    reader = ctx.Process(target=_watch, args=(path, start, stop, errors))
    for p in [*writers, reader]:
        p.start()
    start.set()
    for p in writers:
        p.join(60)
    stop.set()
    reader.join(60)
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert found == []
    assert published_tree_size(Path(path)) == WRITERS * STEPS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["published.json", "published.lock"]

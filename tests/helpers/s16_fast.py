"""Fast secret searches for the attack tests: a process's memory image and a one-pass byte scan.

`memory_image` copies what a core dump of a process would hold that can hold anything:
every mapping that holds pages (the others read as zeros or as their file), read through
`/proc/PID/mem` while the process is stopped, as `gcore` stops it. `find_all` says which
of many byte patterns occur in a buffer in one pass over it: each pattern is keyed by a
4-byte window of its own, every 4-byte window of the buffer is hashed at once (numpy) and
looked up, and each candidate is confirmed by comparison, so the answer is exactly the
set of patterns that `buffer.find(pattern) != -1` would report.
"""

from __future__ import annotations

import mmap
import os
import re
import signal
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

PAGE = mmap.PAGESIZE
_MULT = np.uint32(0x9E3779B1)  # Fibonacci hashing of a 4-byte window
_BITS = 18  # the hash table's size: 256 KiB of flags
_CHUNK = 1 << 24  # bytes hashed per numpy step, at each of the 4 alignments
_UNREADABLE = ("[vvar]", "[vvar_vclock]", "[vsyscall]")  # kernel pages /proc/PID/mem refuses
_REGION = re.compile(rb"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+ *(.*)$")


def _anchor(pat: bytes) -> int:
    """The offset of the pattern's most varied 4-byte window (zero-free if it has one):
    the rarer its window, the fewer candidates the scan confirms."""
    scores = [(0 not in pat[k : k + 4], len(set(pat[k : k + 4])), k) for k in range(len(pat) - 3)]
    return max(scores)[2]


def find_all(buf: bytes | mmap.mmap, patterns: dict[str, bytes], chunk: int = _CHUNK) -> set[str]:
    """The names of the patterns that occur in `buf` (a single pass over it, `chunk` bytes
    of it at a time: a multiple of 4)."""
    found = {name for name, pat in patterns.items() if len(pat) < 4 and buf.find(pat) != -1}
    by_word: dict[int, list[tuple[str, bytes, int]]] = {}
    for name, pat in patterns.items():
        if len(pat) >= 4:
            k = _anchor(pat)
            by_word.setdefault(int.from_bytes(pat[k : k + 4], "little"), []).append((name, pat, k))
    n = len(buf)
    if not by_word or n < 4:
        return found
    words_wanted = np.array(sorted(by_word), dtype=np.uint32)
    table = np.zeros(1 << _BITS, dtype=bool)  # a first, inexact filter that fits a cache
    table[(words_wanted * _MULT) >> np.uint32(32 - _BITS)] = True
    view = memoryview(buf)
    try:
        for start in range(0, n - 3, chunk):
            for align in range(4):
                first = start + align
                count = min(chunk // 4, (n - first) // 4)
                if count <= 0:
                    continue
                words = np.frombuffer(view, dtype="<u4", count=count, offset=first)
                hashes = words * _MULT  # uint32 arithmetic wraps
                hashes >>= np.uint32(32 - _BITS)
                maybe = np.flatnonzero(table[hashes])
                exact = maybe[np.isin(words[maybe], words_wanted)]
                for i in exact.tolist():
                    pos = first + 4 * i
                    for name, pat, k in by_word[int(words[i])]:
                        at = pos - k
                        if name not in found and at >= 0 and buf[at : at + len(pat)] == pat:
                            found.add(name)
                del words, hashes
    finally:
        view.release()
    return found


def file_hits(paths: Iterable[Path], patterns: dict[str, bytes]) -> list[tuple[str, Path]]:
    """(pattern name, file) for every pattern found in every non-empty file."""
    hits: list[tuple[str, Path]] = []
    for path in paths:
        if not path.is_file() or path.stat().st_size == 0:
            continue
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            found = find_all(m, patterns)
        hits += [(name, path) for name in patterns if name in found]
    return hits


# -- a process's memory ---------------------------------------------------------------------------


def _stopped(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] in ("T", "t")


def _resident_runs(pid: int, lo: int, hi: int) -> list[tuple[int, int]]:
    """[start, end) runs of the region's resident (or swapped) pages, each widened by a page
    on both sides: what lies beyond reads as zeros, and a pattern may end in zero bytes."""
    runs: list[tuple[int, int]] = []
    with open(f"/proc/{pid}/pagemap", "rb", buffering=0) as pm:
        step = 1 << 20  # pages per read (8 MiB of pagemap)
        for first in range(lo // PAGE, hi // PAGE, step):
            pages = min(step, hi // PAGE - first)
            pm.seek(first * 8)
            entries = np.frombuffer(pm.read(pages * 8), dtype="<u8")
            present = (entries >> np.uint64(62)) != 0  # bit 63 present, bit 62 swapped
            for i in np.flatnonzero(present).tolist():
                a, b = max(lo, (first + i - 1) * PAGE), min(hi, (first + i + 2) * PAGE)
                if runs and a <= runs[-1][1]:
                    runs[-1] = (runs[-1][0], max(runs[-1][1], b))
                else:
                    runs.append((a, b))
    return runs


def memory_image(pid: int, out: Path) -> Path:
    """Every mapping of a stopped `pid` that holds pages (resident or swapped out), in
    address order, in one file (the process is stopped while it is read and continued
    after, as by `gcore`).

    Mappings that hold no page read as zeros (anonymous) or as their file on disk, so they
    can hold nothing a search is after; a mapping far larger than what it holds (an
    allocator's reservation) is read page run by page run, not whole.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    os.kill(pid, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 30
        while not _stopped(pid):
            assert time.monotonic() < deadline, f"process {pid} did not stop"
            time.sleep(0.01)
        regions: list[tuple[int, int, bytes, str, int]] = []  # start, end, perms, name, held
        for line in Path(f"/proc/{pid}/smaps").read_bytes().splitlines():
            m = _REGION.match(line)
            if m:
                regions.append((int(m[1], 16), int(m[2], 16), m[3], m[4].decode(), 0))
            elif line.startswith((b"Rss:", b"Swap:")):  # bytes resident, bytes swapped out
                lo, hi, perms, name, held = regions[-1]
                regions[-1] = (lo, hi, perms, name, held + int(line.split()[1]) * 1024)
        with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem, open(out, "wb") as f:
            for lo, hi, perms, name, held in regions:
                if not held or name in _UNREADABLE:
                    continue
                readable = perms.startswith(b"r")
                if hi - lo <= max(64 << 20, 4 * held):
                    runs = [(lo, hi)]
                else:
                    runs = _resident_runs(pid, lo, hi)
                try:
                    for a, b in runs:
                        mem.seek(a)
                        while a < b:
                            chunk = mem.read(min(b - a, 64 << 20))
                            assert chunk, f"short read of {pid} at {a:#x}"
                            f.write(chunk)
                            a += len(chunk)
                except OSError:
                    if readable:
                        raise
                    # A PROT_NONE mapping that holds pages is read if the kernel lets us (as
                    # gdb would not dump it at all); one it refuses is left out.
    finally:
        os.kill(pid, signal.SIGCONT)
    return out

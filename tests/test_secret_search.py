"""The secret search of the attack tests finds what `find` finds, and a memory image holds it.

The attack tests (`tests/attacks/test_*party_keys.py`) assert that no key and no plaintext
is anywhere in the platform's files or memory: `tests.helpers.s16_fast` must then miss
nothing. `find_all` is checked against one `bytes.find` per pattern on a buffer with
patterns planted across its chunk boundaries, at every alignment, at both ends, sharing
anchors and overlapping; `memory_image` against a live process holding a secret in its
heap and a pattern whose zero tail lies in an untouched page of a large reservation.
"""

from __future__ import annotations

import mmap
import os
import random
import subprocess
import sys
from pathlib import Path

from tests.helpers.i15_keys import encodings
from tests.helpers.s16_fast import _CHUNK, file_hits, find_all, memory_image


def test_find_all_is_exact_at_every_chunk_edge() -> None:
    rng = random.Random(12)
    chunk = 64
    buf = bytearray(rng.randbytes(chunk * 40))
    patterns: dict[str, bytes] = {}
    for k in range(1, 33):  # 4 to 7 bytes starting 4 before to 3 after a chunk's end
        at, pat = k * chunk - 4 + k % 8, rng.randbytes(4 + k % 4)
        buf[at : at + len(pat)] = pat
        patterns[f"edge {k}"] = pat
    patterns |= {f"absent {i}": rng.randbytes(4 + i % 4) for i in range(8)}
    data = bytes(buf)
    expected = {name for name, pat in patterns.items() if data.find(pat) != -1}
    assert {n for n in patterns if n.startswith("edge")} <= expected
    assert find_all(data, patterns, chunk=chunk) == expected


def test_find_all_reports_exactly_what_find_reports(tmp_path: Path) -> None:
    rng = random.Random(16)
    buf = bytearray(rng.randbytes(_CHUNK + 1000)) + bytes(_CHUNK) + rng.randbytes(_CHUNK // 2)
    patterns: dict[str, bytes] = {}

    def plant(name: str, at: int, pat: bytes) -> None:
        buf[at : at + len(pat)] = pat
        patterns[name] = pat

    for align in range(4):  # across the first chunk boundary, at each alignment
        plant(f"boundary {align}", _CHUNK - 5 + align * 40, rng.randbytes(9))
    plant("start", 0, rng.randbytes(12))
    plant("end", len(buf) - 7, rng.randbytes(7))
    plant("short", 5000, b"\xfe\xed")  # under a 4-byte window: searched with find
    plant("zero tail", _CHUNK + 2000 - 3, b"\x07\x01\x02\x00\x00\x00\x00\x00")  # into zeros
    plant("double 560.0", 2 * _CHUNK + 100, bytes.fromhex("0000000000808140"))
    secret = rng.getrandbits(1024)
    for enc, b in encodings(secret).items():
        plant(f"secret {enc}", 3000 + 400 * len(patterns), b)
    plant("long", 777_777, rng.randbytes(300))
    patterns["prefix of long"] = patterns["long"][:20]  # same place, same anchor or not
    patterns["inside long"] = patterns["long"][101:140]
    patterns["long, one byte off"] = patterns["long"][:-1] + bytes([patterns["long"][-1] ^ 1])
    patterns |= {f"absent {i}": rng.randbytes(8 + i) for i in range(20)}
    patterns["absent zeros"] = bytes(64)[:-1] + b"\x01"
    data = bytes(buf)
    expected = {name for name, pat in patterns.items() if data.find(pat) != -1}
    assert {n for n in expected if not n.startswith("absent")} == {
        n for n in patterns if not n.startswith("absent") and n != "long, one byte off"
    }
    assert find_all(data, patterns) == expected
    path = tmp_path / "image"
    path.write_bytes(data)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        assert find_all(m, patterns) == expected
    assert sorted(n for n, _ in file_hits([path], patterns)) == sorted(expected)


_CHILD = r"""
import mmap, sys
secret = int(sys.argv[1])
text = str(secret)
reserved = mmap.mmap(-1, 512 << 20)  # a large reservation, one page of it touched
at = (300 << 20) - 5
reserved[at : at + 5] = bytes.fromhex(sys.argv[2])[:5]  # its zero tail: the next page
print("READY", flush=True)
for line in sys.stdin:
    print(line.strip(), flush=True)  # it still answers once continued
"""


def test_a_memory_image_holds_what_the_process_holds(tmp_path: Path) -> None:
    secret = random.SystemRandom().getrandbits(1024) | 1
    tail = os.urandom(5) + bytes(7)  # ends in zeros read from a page never touched
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(secret), tail.hex()],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "READY"
        image = memory_image(proc.pid, tmp_path / "core")
        proc.stdin.write("still here\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "still here"
    finally:
        proc.kill()
        proc.wait()
    assert image.stat().st_size < 256 << 20  # not the whole reservation
    patterns = {f"secret {e}": b for e, b in encodings(secret).items()}
    patterns |= {"tail": tail, "absent": os.urandom(16)}
    found = {name for name, _ in file_hits([image], patterns)}
    assert {"secret decimal", "secret cpython-digits", "tail"} <= found
    assert "absent" not in found

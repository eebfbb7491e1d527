"""Job directories: a dead process's decrypted inputs are swept, a live one's never are."""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchange.workdirs import JobDirs, is_memory_backed

CHILD = """
import sys, time
from pathlib import Path
from exchange.workdirs import JobDirs
dirs = JobDirs(Path(sys.argv[1]), sys.argv[2])
job = dirs.new("job-")
(job / "input.csv").write_text("ref,value\\nSECRET-ROW,1\\n")
print(job, flush=True)
time.sleep(600)
"""


@pytest.fixture
def root() -> Iterator[Path]:
    path = Path("/dev/shm") / f"pdx-dirs-{uuid.uuid4().hex[:10]}"
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


def _child(root: Path, holder: str) -> tuple[subprocess.Popen[str], Path]:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root), holder], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    return proc, Path(proc.stdout.readline().strip())


def test_a_killed_processs_inputs_are_swept_and_a_live_ones_are_kept(root: Path) -> None:
    assert is_memory_backed(root.parent)
    dead, dead_job = _child(root, "dead-worker")
    live, live_job = _child(root, "live-worker")
    try:
        assert (dead_job / "input.csv").is_file() and (live_job / "input.csv").is_file()
        assert dead_job.stat().st_mode & 0o777 == 0o700
        dead.send_signal(signal.SIGKILL)
        dead.wait(30)
        assert (dead_job / "input.csv").is_file()  # kill -9 cleans nothing up by itself
        me = JobDirs(root, "recoverer")
        assert me.sweep() == 1
        assert not dead_job.parent.exists()
        assert (live_job / "input.csv").is_file()  # its owner still holds its lock
        me.close()
    finally:
        live.kill()
        live.wait(30)


def test_a_disk_directory_is_not_memory_backed(tmp_path: Path) -> None:
    assert is_memory_backed(Path("/dev/shm"))
    assert not is_memory_backed(Path(__file__).parent)

"""The repository stands on its own: no file points at the steering folder's documents."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN = ("../shared", "COMPLIANCE.md", "BENCH.md")


def test_no_tracked_file_refers_to_the_shared_folder() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    offenders = []
    for name in tracked:
        path = REPO / name
        if name == "tests/test_self_contained.py" or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        offenders += [f"{name}: {word}" for word in FORBIDDEN if word in text]
    assert offenders == []

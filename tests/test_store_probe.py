"""The sandbox probe: a transient failure (EMFILE) is not remembered for the process's life."""

from __future__ import annotations

import os
import resource
import shutil
from pathlib import Path

import pytest

from sandbox.isolation import Sandbox
from sandbox.operators import REGISTRY


def test_probe_checks_again_after_a_transient_emfile(tmp_path: Path) -> None:
    """Before: the first failure was cached, so /readyz and every job stayed refused."""
    tools = {}
    for tool in ("bwrap", "prlimit"):
        found = shutil.which(tool)
        if found is None:
            pytest.skip(f"{tool} not installed")
        # A path of its own, so this test's probe is not one another test already cached.
        tools[tool] = tmp_path / tool
        tools[tool].symlink_to(found)
    sandbox = Sandbox(REGISTRY, bwrap=str(tools["bwrap"]), prlimit=str(tools["prlimit"]))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    held: list[int] = []
    try:
        # Use up every descriptor the (lowered) limit allows: the probe cannot make a pipe.
        highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 8, hard))
        while True:
            try:
                held.append(os.open(os.devnull, os.O_RDONLY))
            except OSError:
                break
        reason = sandbox.unavailable_reason()
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert reason is not None and "Too many open files" in reason
    assert sandbox.unavailable_reason() is None  # descriptors back: isolation available

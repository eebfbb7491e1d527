"""Run a snippet in a fresh interpreter with this test's import path: what a new process
imports, not what this already-warm pytest process holds in `sys.modules`."""

from __future__ import annotations

import os
import subprocess
import sys


def fresh_python(code: str) -> str:
    """The standard output of `python -c code` (a failure shows its standard error)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout

"""A sandboxed operator that reports the niceness it runs at (imported inside the sandbox)."""

from __future__ import annotations

import os
from typing import Any


def op_niceness(ctx: Any) -> bytes:
    return str(os.nice(0)).encode()

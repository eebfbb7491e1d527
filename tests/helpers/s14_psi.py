"""A sandbox operator for tests/test_psi_lanes.py: which multiplication path runs in bubblewrap."""

from __future__ import annotations

import json
from typing import Any


def op_psi_lanes(ctx: Any) -> bytes:
    """Blind the given points inside the sandbox; say whether crypto_mb's lanes loaded there."""
    from crypto import _mb_p256, psi_ec

    group = psi_ec.PsiGroup(bytes.fromhex(ctx.params["dst"]))
    key = group.load_scalar(bytes.fromhex(ctx.params["key"]))
    out = {
        "lanes": _mb_p256.available(),
        "blinded": group.blind_packed(bytes.fromhex(ctx.params["elements"]), key).hex(),
    }
    return json.dumps(out).encode()

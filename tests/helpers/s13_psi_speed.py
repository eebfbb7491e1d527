"""A sandbox operator for tests/test_psi_fast.py: the PSI bulk path as it runs inside bubblewrap."""

from __future__ import annotations

import json
from typing import Any


def op_psi_bulk_path(ctx: Any) -> bytes:
    """Blind and hash-blind the given inputs inside the sandbox; say which path ran."""
    from crypto import _ossl_p256, psi_ec

    group = psi_ec.PsiGroup(bytes.fromhex(ctx.params["dst"]))
    key = group.load_scalar(bytes.fromhex(ctx.params["key"]))
    out = {
        "libcrypto": _ossl_p256.available(),
        "blinded": group.blind_packed(bytes.fromhex(ctx.params["elements"]), key).hex(),
        "hashed": group.hash_blind_packed(bytes.fromhex(ctx.params["messages"]), key).hex(),
    }
    return json.dumps(out).encode()

"""The de-identification techniques pdx offers (GB/T 37964-2019 Annex A) and where each lives.

Compliance check PI-09 reads this catalogue; the composition root keeps only the entries
whose component imports, so a technique cannot be declared without its code. A technique
missing here is not offered. Pseudonymisation is the keyed hash identifiers get before a
private join (the pseudonyms never leave the parties' sandboxes); pdx does not deliver
pseudonymised rows as data.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

TECHNIQUES: Mapping[str, str] = {
    # Previews show each value's shape with its characters replaced, never the value.
    "masking": "exchange.synth:ShapeProfiler",
    # Small cells and groups below the minimum cohort are withheld by the release gate.
    "suppression": "sandbox.release:ReleaseGate",
    # Histograms release counts per bin of a declared width, not values.
    "generalisation": "sandbox.stats:partial_vector",
    # OpenDP discrete Laplace / Gaussian noise on every DP release.
    "noise": "sandbox.dp:OpenDPNoise",
    # Every release is an aggregate over at least the minimum cohort.
    "aggregation": "sandbox.stats:run_stats",
    # Join identifiers become HMAC-SHA256(job salt, job ‖ kind ‖ value) before PSI.
    "pseudonymisation": "sandbox.identifiers:JobDomain",
}


def offered() -> dict[str, str]:
    """The declared techniques whose component exists (module imports, attribute present)."""
    out: dict[str, str] = {}
    for technique, target in TECHNIQUES.items():
        module, _, attr = target.partition(":")
        try:
            found = hasattr(importlib.import_module(module), attr)
        except ImportError:
            found = False
        if found:
            out[technique] = target
    return out

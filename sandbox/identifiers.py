"""Identifier normalisation and per-job domain separation: the SDK's module, shared (issue 18).

The enterprise's SDK hashes its own cohort exactly as a provider's sandbox hashes its
key column, so both import one implementation: `pdx_client.identifiers` (standard library
only; bound into the bubblewrap sandbox file by file, `sandbox._bwrap`).
"""

from __future__ import annotations

from pdx_client.identifiers import (
    DST_PREFIX,
    IdKind,
    JobDomain,
    id_check_char,
    normalise,
    normalise_email,
    normalise_id_number,
    normalise_phone,
)

__all__ = [
    "DST_PREFIX",
    "IdKind",
    "JobDomain",
    "id_check_char",
    "normalise",
    "normalise_email",
    "normalise_id_number",
    "normalise_phone",
]

"""Ledger error hierarchy: every failure `ledger` raises on purpose, with a stable code."""

from __future__ import annotations

from typing import ClassVar

from crypto.problem import CodedError


class LedgerError(CodedError):
    """Root of every error `ledger` raises on purpose.

    Its shape is `crypto.problem.CodedError`'s. `detail` names hashes, sizes and key names
    only, never key material; `extensions` holds tree sizes, indexes and key names.
    """

    code: ClassVar[str] = "ledger-error"
    title: ClassVar[str] = "Ledger error"


class CanonicalJsonError(LedgerError):
    """A value outside the RFC 8785 (JCS) / I-JSON data model."""

    code = "ledger-canonical-json"
    title = "Value cannot be canonicalised as JSON"


class ProofError(LedgerError):
    """An RFC 9162 inclusion or consistency proof that does not verify, or bad proof arguments."""

    code = "ledger-proof-invalid"
    title = "Invalid Merkle proof"


class NoteError(LedgerError):
    """A malformed signed note (C2SP signed-note), a bad signature, or no trusted signature."""

    code = "ledger-note-invalid"
    title = "Invalid signed note"


class CheckpointError(LedgerError):
    """A checkpoint body that does not follow C2SP tlog-checkpoint."""

    code = "ledger-checkpoint-invalid"
    title = "Invalid checkpoint"

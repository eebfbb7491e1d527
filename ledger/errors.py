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


class InvalidRecord(LedgerError):
    code = "ledger-record-invalid"
    title = "Invalid ledger record"


class InvalidBlock(LedgerError):
    code = "ledger-block-invalid"
    title = "Invalid ledger block"


class MissingNode(LedgerError):
    code = "ledger-node-missing"
    title = "Ledger node not stored"


class SealRace(LedgerError):
    """Another sealer extended the log first; this attempt must roll back and retry."""

    code = "ledger-seal-race"
    title = "Ledger sealed concurrently"


class TileRace(SealRace):
    """A stored tile does not end where the new hashes start (issue 13's sealer race)."""

    code = "ledger-tile-race"
    title = "Ledger tile extended concurrently"


class BlockConflict(SealRace):
    """A block at this height was sealed by another transaction."""

    code = "ledger-block-conflict"
    title = "Ledger block sealed concurrently"


class EntryNotFound(LedgerError):
    code = "ledger-entry-not-found"
    title = "Ledger entry not found"


class BlockNotFound(LedgerError):
    code = "ledger-block-not-found"
    title = "Ledger block not found"


class InvalidRange(LedgerError):
    code = "ledger-invalid-range"
    title = "Invalid ledger range"


class ExportTargetNotEmpty(LedgerError):
    code = "ledger-export-target-not-empty"
    title = "Export directory is not empty"


class AnchorError(LedgerError):
    code = "ledger-anchor-failed"
    title = "Anchoring failed"


class AnchorRefused(AnchorError):
    """The chain reverted the anchor (not a writer, size does not grow, inconsistent)."""

    code = "ledger-anchor-refused"
    title = "The chain refused the anchor"


class WitnessRefusal(LedgerError):
    """The witness will not cosign: `status` is the tlog-witness HTTP status to answer."""

    code = "ledger-witness-refused"
    title = "Witness refused the checkpoint"

    def __init__(self, detail: str, *, status: int, known_size: int | None = None) -> None:
        super().__init__(detail, status=status, known_size=known_size)
        self.status = status
        self.known_size = known_size

"""Verifiable log (RFC 9162 Merkle tree, signed blocks and checkpoints): the names others may use.

Other packages import from here (`from ledger import Ledger`); the modules behind
these names may move. Storage backends implement `LogStore` (see `ledger.storage`).
"""

from ledger.anchor import (
    Anchorer,
    AnchorSchedule,
    ChainAnchors,
    ChainWriter,
)
from ledger.blocks import GENESIS_PREV, Block
from ledger.canonical import canonical_json
from ledger.checkpoint import Checkpoint
from ledger.errors import (
    AnchorError,
    AnchorRefused,
    BlockConflict,
    BlockNotFound,
    CanonicalJsonError,
    CheckpointError,
    EntryNotFound,
    ExportTargetNotEmpty,
    InvalidBlock,
    InvalidRange,
    InvalidRecord,
    LedgerError,
    NoteError,
    ProofError,
    SealRace,
    TileRace,
    WitnessRefusal,
)
from ledger.export import ExportSummary, export
from ledger.log import (
    MAX_PAGE,
    Ledger,
    LedgerConfig,
    LedgerSigner,
    LogTransaction,
)
from ledger.memory_storage import MemoryLogStorage
from ledger.merkle import (
    TreeBuilder,
    TreeHasher,
    consistency_proof,
    hasher,
    inclusion_proof,
    root,
    verify_consistency,
    verify_inclusion,
)
from ledger.models import LedgerBase
from ledger.note import (
    Ed25519NoteSigner,
    Ed25519NoteVerifier,
    NoteSigner,
    NoteVerifier,
    open_note,
    parse_verifier_key,
    sign_note,
    verifier_key,
)
from ledger.publish import (
    LedgerCosignature,
    MemoryCosignatures,
    Publisher,
    SqlCosignatures,
    WitnessEndpoint,
    cosigned_notes,
)
from ledger.records import LedgerRecord, decode_leaf
from ledger.sealer import Sealer
from ledger.signing import Ed25519LedgerSigner, KmsLedgerSigner, signer_key_id
from ledger.sql_storage import SqlLogStore
from ledger.storage import (
    MAX_INDEX,
    EntryQuery,
    LogStore,
    NewLeaf,
    SealedBlock,
    StoredEntry,
)
from ledger.tiles import TILE_HEIGHT, TILE_WIDTH, TileCache
from ledger.witness import (
    CosignatureV1Signer,
    CosignatureV1Verifier,
    LogConfig,
    Witness,
    WitnessState,
    serve_witness,
)

__all__ = [
    "GENESIS_PREV",
    "MAX_INDEX",
    "MAX_PAGE",
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "AnchorError",
    "AnchorRefused",
    "AnchorSchedule",
    "Anchorer",
    "Block",
    "BlockConflict",
    "BlockNotFound",
    "CanonicalJsonError",
    "ChainAnchors",
    "ChainWriter",
    "Checkpoint",
    "CheckpointError",
    "CosignatureV1Signer",
    "CosignatureV1Verifier",
    "Ed25519LedgerSigner",
    "Ed25519NoteSigner",
    "Ed25519NoteVerifier",
    "EntryNotFound",
    "EntryQuery",
    "ExportSummary",
    "ExportTargetNotEmpty",
    "InvalidBlock",
    "InvalidRange",
    "InvalidRecord",
    "KmsLedgerSigner",
    "Ledger",
    "LedgerBase",
    "LedgerConfig",
    "LedgerCosignature",
    "LedgerError",
    "LedgerRecord",
    "LedgerSigner",
    "LogConfig",
    "LogStore",
    "LogTransaction",
    "MemoryCosignatures",
    "MemoryLogStorage",
    "NewLeaf",
    "NoteError",
    "NoteSigner",
    "NoteVerifier",
    "ProofError",
    "Publisher",
    "SealRace",
    "SealedBlock",
    "Sealer",
    "SqlCosignatures",
    "SqlLogStore",
    "StoredEntry",
    "TileCache",
    "TileRace",
    "TreeBuilder",
    "TreeHasher",
    "Witness",
    "WitnessEndpoint",
    "WitnessRefusal",
    "WitnessState",
    "canonical_json",
    "consistency_proof",
    "cosigned_notes",
    "decode_leaf",
    "export",
    "hasher",
    "inclusion_proof",
    "open_note",
    "parse_verifier_key",
    "root",
    "serve_witness",
    "sign_note",
    "signer_key_id",
    "verifier_key",
    "verify_consistency",
    "verify_inclusion",
]

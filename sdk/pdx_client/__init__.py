"""pdx-client: the typed Python SDK of the pdx data exchange (one object per role)."""

from pdx_client.errors import (
    ApiError,
    ComputationFailed,
    PdxError,
    TimedOut,
    TransportError,
    VerificationError,
)
from pdx_client.models import (
    Agreement,
    Computation,
    ComputationResult,
    Dataset,
    Me,
    ScanReport,
    TrailEntry,
    TrailVerification,
)
from pdx_client.partykeys import PartyKey
from pdx_client.proofs import Checkpoint, open_checkpoint, verify_consistency, verify_receipt
from pdx_client.roles import Auditor, Enterprise, Provider, SecurityAdmin
from pdx_client.session import Session
from pdx_client.trail import CheckpointStore, Trail

__version__ = "0.1.0"

__all__ = [
    "Agreement",
    "ApiError",
    "Auditor",
    "Checkpoint",
    "CheckpointStore",
    "Computation",
    "ComputationFailed",
    "ComputationResult",
    "Dataset",
    "Enterprise",
    "Me",
    "PartyKey",
    "PdxError",
    "Provider",
    "ScanReport",
    "SecurityAdmin",
    "Session",
    "TimedOut",
    "Trail",
    "TrailEntry",
    "TrailVerification",
    "TransportError",
    "VerificationError",
    "__version__",
    "open_checkpoint",
    "verify_consistency",
    "verify_receipt",
]

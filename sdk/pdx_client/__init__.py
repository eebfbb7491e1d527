"""pdx-client: the typed Python SDK of the pdx data exchange (one object per role)."""

from pdx_client.errors import (
    ApiError,
    ComputationFailed,
    PdxError,
    TimedOut,
    TransportError,
    VerificationError,
)
from pdx_client.market_models import (
    CatalogItem,
    CatalogPage,
    Certificate,
    Dispute,
    MarketAgreement,
    Negotiation,
    Party,
    Product,
    Settlement,
    Statement,
    Usage,
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
from pdx_client.roles import Auditor, Enterprise, Operator, Provider, SecurityAdmin
from pdx_client.session import Session
from pdx_client.trail import CheckpointStore, Trail

__version__ = "0.1.0"

__all__ = [
    "Agreement",
    "ApiError",
    "Auditor",
    "CatalogItem",
    "CatalogPage",
    "Certificate",
    "Checkpoint",
    "CheckpointStore",
    "Computation",
    "ComputationFailed",
    "ComputationResult",
    "Dataset",
    "Dispute",
    "Enterprise",
    "MarketAgreement",
    "Me",
    "Negotiation",
    "Operator",
    "Party",
    "PartyKey",
    "PdxError",
    "Product",
    "Provider",
    "ScanReport",
    "SecurityAdmin",
    "Session",
    "Settlement",
    "Statement",
    "TimedOut",
    "Trail",
    "TrailEntry",
    "TrailVerification",
    "TransportError",
    "Usage",
    "VerificationError",
    "__version__",
    "open_checkpoint",
    "verify_consistency",
    "verify_receipt",
]

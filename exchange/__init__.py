"""Organisations and accounts, the dataset catalogue with grading, and the content pipeline."""

import exchange.login_budgets  # noqa: F401  (sign-in failure budgets join ExchangeBase)
import exchange.market.models  # noqa: F401  (the market's tables join ExchangeBase)
import exchange.passkeys  # noqa: F401  (the passkey tables join ExchangeBase)
from exchange.accounts import (
    Caller,
    IssuedClient,
    OrgKind,
    Role,
    authenticate_client,
    create_client,
    create_organisation,
    list_organisations,
)
from exchange.catalog import (
    CatalogContext,
    Registration,
    get_dataset,
    iter_plaintext,
    list_datasets,
    preview,
)
from exchange.computations import (
    ComputationCreate,
    ComputationPublic,
    ComputationResult,
    ComputeContext,
    OperatorPublic,
)
from exchange.contracts import ContractCreate, ContractPublic, ContractStatus
from exchange.custody import NodeCreate, NodePublic, NodeRegistration
from exchange.errors import ExchangeError, InvalidGrant, StoreMismatch
from exchange.identity import StoreIdentity
from exchange.ingest import configure_arrow_memory
from exchange.jobs import DbPrivacyBudget, InlineRunner, ThreadRunner
from exchange.models import Client, Dataset, DatasetField, ExchangeBase, Organisation
from exchange.resources import policy_resource
from exchange.schemas import DatasetCreate, DatasetPublic, DatasetSummary, PreviewPublic
from exchange.seed import seed_demo
from exchange.storage import ObjectStore
from exchange.trail import Receipt, Trail

__all__ = [
    "Caller",
    "CatalogContext",
    "Client",
    "Dataset",
    "DatasetCreate",
    "DatasetField",
    "DatasetPublic",
    "DatasetSummary",
    "ExchangeBase",
    "ExchangeError",
    "InvalidGrant",
    "IssuedClient",
    "ObjectStore",
    "OrgKind",
    "Organisation",
    "PreviewPublic",
    "Receipt",
    "Registration",
    "Role",
    "Trail",
    "authenticate_client",
    "configure_arrow_memory",
    "create_client",
    "create_organisation",
    "get_dataset",
    "iter_plaintext",
    "list_datasets",
    "list_organisations",
    "policy_resource",
    "preview",
    "seed_demo",
    "ComputationCreate",
    "ComputationPublic",
    "ComputationResult",
    "ComputeContext",
    "ContractCreate",
    "ContractPublic",
    "ContractStatus",
    "DbPrivacyBudget",
    "InlineRunner",
    "NodeCreate",
    "NodePublic",
    "NodeRegistration",
    "OperatorPublic",
    "ThreadRunner",
    "StoreIdentity",
    "StoreMismatch",
]

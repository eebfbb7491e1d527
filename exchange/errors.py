"""Exchange error hierarchy: every failure a caller can cause, with a stable code."""

from __future__ import annotations

from typing import ClassVar

from crypto.problem import CodedError


class ExchangeError(CodedError):
    """Root of every error `exchange` raises on purpose.

    Its shape is `crypto.problem.CodedError`'s. `detail` never holds a data value;
    `extensions` holds field names and row numbers.
    """

    code: ClassVar[str] = "exchange-error"
    title: ClassVar[str] = "Exchange error"


class InvalidInput(ExchangeError):
    code = "invalid-input"
    title = "Invalid input"


class NotFound(ExchangeError):
    code = "not-found"
    title = "Not found"


class Conflict(ExchangeError):
    code = "conflict"
    title = "Conflict"


class Forbidden(ExchangeError):
    code = "forbidden"
    title = "Forbidden"


class AuthenticationFailed(ExchangeError):
    code = "authentication-failed"
    title = "Authentication failed"


class DuplicateDatasetName(Conflict):
    code = "dataset-name-taken"
    title = "Dataset name already registered by this provider"


class InvalidMetadata(InvalidInput):
    code = "invalid-metadata"
    title = "Invalid dataset metadata"


class LevelTooLow(InvalidInput):
    code = "level-below-content"
    title = "Declared level is lower than the content requires"


class UploadTooLarge(InvalidInput):
    code = "upload-too-large"
    title = "Upload exceeds the size limit"


class CsvError(InvalidInput):
    code = "csv-invalid"
    title = "Invalid CSV"


class CsvEmpty(CsvError):
    code = "csv-empty"
    title = "CSV has no header or no rows"


class CsvHeaderInvalid(CsvError):
    code = "csv-header-invalid"
    title = "CSV header is invalid"


class CsvMalformed(CsvError):
    code = "csv-malformed"
    title = "CSV is malformed"


class CsvColumnCount(CsvError):
    code = "csv-column-count"
    title = "CSV row has the wrong number of fields"


class CsvEncoding(CsvError):
    code = "csv-not-utf8"
    title = "CSV is not valid UTF-8"


class SeparationOfDuties(Forbidden):
    code = "separation-of-duties"
    title = "Separation of duties"


class InvitationInvalid(Forbidden):
    """Unknown, expired or already redeemed: one answer for all three."""

    code = "invitation-invalid"
    title = "Invitation not valid"


class InsufficientStorage(ExchangeError):
    """The object store's filesystem is full (ENOSPC) or over quota (EDQUOT)."""

    code = "insufficient-storage"
    title = "Insufficient storage"


class StoreUnavailable(ExchangeError):
    """The store (database or objects) is not the one this process started with."""

    code = "store-unavailable"
    title = "Store unavailable"


class StaleTransition(Conflict):
    """A state transition found the row no longer in the state it expected: nothing changed.

    Computations move by compare-and-set on their current state, so a late or duplicate
    transition (a recovered job's old runner finishing, a second approval) is refused.
    """


class FlRoundTimeout(ExchangeError):
    """The requester did not post the next global model before the step's deadline."""

    code = "fl-round-timeout"
    title = "The requester did not close the federated round in time"


class JoinStepTimeout(ExchangeError):
    """The requester's SDK did not answer a step of the join before its deadline."""

    code = "join-step-timeout"
    title = "The requester did not answer the join's step in time"


class ApprovalSignatureInvalid(Forbidden):
    """The decision's signature does not verify over what this decision covers."""

    code = "approval-signature-invalid"
    title = "The decision's signature does not verify"


class SigningKeyUnknown(InvalidInput):
    """The decision names a key the provider's organisation has not registered."""

    code = "approval-signing-key-unknown"
    title = "Unknown signing key"


class AnalysisRulesViolation(InvalidInput):
    """A request asks for an operator, a column, bounds or groups outside the provider's rules."""

    code = "analysis-rules-violation"
    title = "The request is outside the provider's analysis rules"


class ApprovalMismatch(Conflict):
    """An approval names another query, or the query to run is not the one approved."""

    code = "approval-query-mismatch"
    title = "The approval does not cover this query"


class BudgetExceeded(Conflict):
    """The request's ε (or δ) would pass its lineage's or its requester's budget."""

    code = "privacy-budget-exceeded"
    title = "The request would exceed a privacy budget"


class NodeAddressRefused(InvalidInput):
    """The node URL's host resolves to an address the platform may not connect to."""

    code = "node-address-refused"
    title = "The node's address is not allowed"


class NodeUnreachable(InvalidInput):
    """Logging in to the node failed; deliberately one answer for every cause."""

    code = "node-unreachable"
    title = "The node could not be reached"


class NodeDataShredded(ExchangeError):
    """The key of a node-held dataset's sealed rows is gone (its provider's KEK destroyed)."""

    code = "dataset-shredded"
    title = "The dataset was crypto-shredded"


class QuotaExceeded(ExchangeError):
    """The organisation already has as many computations in flight as its quota allows."""

    code = "computation-quota-exceeded"
    title = "Computation quota exceeded"


class OutputTooLarge(InvalidInput):
    """The operator's declared output is larger than the platform releases."""

    code = "computation-output-too-large"
    title = "Computation output too large"


class ComputationTooCostly(InvalidInput):
    """The operator's declared cost (rows × passes) is above the platform's limit."""

    code = "computation-too-costly"
    title = "Computation too costly"


class BackupError(ExchangeError):
    """A backup cannot be made, verified or restored; the detail says why."""

    code = "backup-invalid"
    title = "Backup invalid"


class RestoreRefused(BackupError):
    """The restore would overwrite a store or go back below a published tree size."""

    code = "restore-refused"
    title = "Restore refused"


class StoreMismatch(ExchangeError):
    """`$PDX_HOME` and the database do not belong to the same store."""

    code = "store-mismatch"
    title = "Store identity mismatch"


class InvalidGrant(ExchangeError):
    code = "invalid-grant"
    title = "Invalid grant"


class PartyNotVerified(Forbidden):
    """A party to a negotiation has not had its identity verified (DSL art. 33)."""

    code = "party-not-verified"


class OutsideAgreement(Forbidden):
    """The computation asks for an operator, purpose or delivery the agreement does not grant."""

    code = "outside-agreement"


class AgreementExhausted(Forbidden):
    """The agreement's count, rows or ε share would be exceeded."""

    code = "agreement-exhausted"

"""Audit error hierarchy: failures `audit` raises on purpose, with a stable code."""

from __future__ import annotations

from typing import ClassVar

from crypto.problem import CodedError


class AuditError(CodedError):
    """Root of every error `audit` raises on purpose (same shape as the other packages')."""

    code: ClassVar[str] = "audit-error"
    title: ClassVar[str] = "Audit error"


class VerificationInputError(AuditError):
    """The material to verify is missing or unreadable (not the same as tampered)."""

    code = "verification-input-invalid"
    title = "Cannot read what was to be verified"


class MonitorUnavailable(AuditError):
    code = "monitor-unavailable"
    title = "The ledger server could not be reached"

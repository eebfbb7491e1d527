"""Audit error hierarchy: failures `audit` raises on purpose, with a stable code."""

from __future__ import annotations

from typing import Any, ClassVar


class AuditError(Exception):
    """Root of every error `audit` raises on purpose (same shape as the other packages')."""

    code: ClassVar[str] = "audit-error"
    title: ClassVar[str] = "Audit error"

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions: dict[str, Any] = extensions


class VerificationInputError(AuditError):
    """The material to verify is missing or unreadable (not the same as tampered)."""

    code = "verification-input-invalid"
    title = "Cannot read what was to be verified"

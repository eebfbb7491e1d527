"""The one shape of a deliberate pdx error: a stable code, a safe detail, structured extras."""

from __future__ import annotations

from typing import Any, ClassVar


class CodedError(Exception):
    """Base of every package's error root (`CryptoError`, `LedgerError`, `ExchangeError`...).

    Like sigstore's `errors.Error`: `code` is stable and becomes the problem `type` at the
    gateway edge (`gateway/errors.py` maps each error type to a status); `title` is the
    short human summary; `detail` is safe to show a client (never key material, a data
    value or a row); `extensions` carries structured facts (ids, limits, field names) for
    the problem document or the log. Codes are never renamed: clients match on them.
    """

    code: ClassVar[str] = "error"
    title: ClassVar[str] = "Error"

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions: dict[str, Any] = extensions

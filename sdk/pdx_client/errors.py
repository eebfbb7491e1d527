"""One exception root for the SDK: `PdxError`, carrying the server's RFC 9457 problem."""

from __future__ import annotations

from typing import Any

__all__ = [
    "ApiError",
    "ComputationFailed",
    "PdxError",
    "TimedOut",
    "TransportError",
    "VerificationError",
]


class PdxError(Exception):
    """Every SDK failure: `type`, `title`, `detail` as in a problem document (RFC 9457)."""

    def __init__(
        self,
        detail: str,
        *,
        type: str = "about:blank",
        title: str = "pdx client error",
        status: int | None = None,
        extensions: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.type = type
        self.title = title
        self.detail = detail
        self.status = status
        self.extensions: dict[str, Any] = dict(extensions or {})

    @property
    def code(self) -> str:
        """The stable tail of `type` (`https://pdx.dev/problems/<code>`)."""
        return self.type.rsplit("/", 1)[-1]

    def __str__(self) -> str:
        status = f"{self.status} " if self.status else ""
        return f"{status}{self.code}: {self.detail}"

    def to_problem(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "title": self.title, "detail": self.detail}
        if self.status is not None:
            out["status"] = self.status
        return {**self.extensions, **out}


class ApiError(PdxError):
    """The server answered with a problem (4xx/5xx)."""


class TransportError(PdxError):
    """The server could not be reached, or answered something that is not the API."""


class VerificationError(PdxError):
    """A signature, inclusion or consistency proof did not check out."""


class TimedOut(PdxError):
    """A computation did not reach the awaited state before the deadline."""


class ComputationFailed(PdxError):
    """A computation ended rejected or failed."""

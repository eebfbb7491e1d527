"""`Timestamp`: a datetime field that the API always shows as RFC 3339 UTC with `Z`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import PlainSerializer

from crypto.rfc3339 import rfc3339

__all__ = ["Timestamp", "aware", "rfc3339"]

Timestamp = Annotated[datetime, PlainSerializer(rfc3339, return_type=str, when_used="json")]
"""Use for every datetime of a response model: `+08:00` inputs and naive values come out
as UTC `...Z` (one serializer, `crypto.rfc3339`)."""


def aware(value: datetime) -> datetime:
    """A stored time as aware UTC (SQLite hands back naive UTC, PostgreSQL aware)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)

"""The one timestamp format the platform shows: RFC 3339 in UTC with `Z` (2026-12-04T23:40:00Z).

It lives in `crypto` because every package may import `crypto` and it imports none of
them (as `crypto.sqltypes`); it holds no key material. Stored documents that are signed
(compliance reports, backups) keep the format they were signed with.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["rfc3339"]


def rfc3339(value: datetime) -> str:
    """`value` in UTC as RFC 3339 §5.6 `date-time` with the `Z` offset; naive means UTC."""
    aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return aware.isoformat().replace("+00:00", "Z")

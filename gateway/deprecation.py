"""Deprecated routes: `Deprecation` (RFC 9745) and `Link: rel="successor-version"` headers.

A route that is renamed keeps answering for one release. Its responses say so, and name
their successors, so clients can move before it goes:

    Deprecation: @1796428800
    Link: </v1/computations/42/approve-run>; rel="successor-version"

(RFC 9745 §2.1: the date the route was deprecated, as a structured-field Date;
RFC 5829 §3 `successor-version`.) The OpenAPI marks the operation `deprecated`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from fastapi import Request, Response

__all__ = ["DEPRECATED_IN_0_2", "deprecated"]

DEPRECATED_IN_0_2 = datetime(2026, 12, 5, tzinfo=UTC)
"""When the routes renamed by issue 12 were deprecated (release 0.2)."""


def deprecated(*successors: str, since: datetime = DEPRECATED_IN_0_2) -> Callable[..., None]:
    """A route dependency adding the headers for `successors` (path templates).

    Templates use the route's own path parameters: "/v1/computations/{computation_id}/...".
    """

    def headers(request: Request, response: Response) -> None:
        response.headers["Deprecation"] = f"@{int(since.timestamp())}"
        links = [
            f'<{template.format(**request.path_params)}>; rel="successor-version"'
            for template in successors
        ]
        response.headers["Link"] = ", ".join(links)

    return headers

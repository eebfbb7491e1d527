"""The seam where a computation's result is opened on the requester's side.

Today the server releases the result in the clear to the requesting organisation, so
this returns it as served. With requester-held job keys (`pdx_client.jobkeys`, issue
15) the integrator switches this one function to `job_key.decrypt(body)`.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["JobKeyLike", "open_result"]


class JobKeyLike(Protocol):
    def decrypt(self, result: dict[str, Any]) -> dict[str, Any]: ...


def open_result(body: dict[str, Any], job_key: JobKeyLike | None = None) -> dict[str, Any]:
    """The body of GET /v1/computations/{id}/result, opened with the requester's key if any."""
    if job_key is not None:
        return job_key.decrypt(body)
    return body

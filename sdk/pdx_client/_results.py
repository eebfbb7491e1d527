"""Where a computation's result is opened on the requester's side.

Under a requester-held job key (`pdx_client.jobkeys`) the server returns an encrypted
aggregate: the key decrypts and post-processes it here, and the body's `output` becomes
the opened result. Without a key (platform-custody data) the body is returned as served.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["JobKeyLike", "open_result"]


class JobKeyLike(Protocol):
    def decrypt(self, result: dict[str, Any]) -> dict[str, Any]: ...


def open_result(body: dict[str, Any], job_key: JobKeyLike | None = None) -> dict[str, Any]:
    """The body of GET /v1/computations/{id}/result, opened with the requester's key if any."""
    if job_key is not None:
        return {**body, "output": job_key.decrypt(body)}
    return body

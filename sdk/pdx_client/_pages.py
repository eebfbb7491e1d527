"""The one place list responses are read, whatever shape the server gives them."""

from __future__ import annotations

from typing import Any

import httpx

__all__ = ["read_page"]


def read_page(response: httpx.Response) -> tuple[list[Any], str | None, int | None]:
    """(items, next relative URL or None, total or None) of one list response.

    Tolerance kept here and only here: the server is moving every list to the target
    shape `{"items", "total", "next"}` (shared contract); until every route has moved,
    today's shapes are read too: a bare JSON array (with `X-Total-Count`), and the
    ledger's `{"entries", "next_start"}`. Delete the branches once the move is done.
    """
    body = response.json()
    if isinstance(body, dict) and "items" in body:
        nxt = body.get("next")
        return list(body["items"]), nxt if isinstance(nxt, str) else None, body.get("total")
    if isinstance(body, dict) and "entries" in body:
        start = body.get("next_start")
        nxt = None
        if isinstance(start, int):
            query = dict(response.request.url.params)
            query["start"] = str(start)
            nxt = str(response.request.url.copy_with(params=query).raw_path, "ascii")
        return list(body["entries"]), nxt, None
    if isinstance(body, list):
        header = response.headers.get("x-total-count")
        total = int(header) if header and header.isdigit() else None
        nxt = None
        params = dict(response.request.url.params)
        limit = int(params.get("limit", "0") or 0)
        if limit and len(body) == limit:  # offset paging: ask for the next slice
            params["offset"] = str(int(params.get("offset", "0") or 0) + limit)
            nxt = str(response.request.url.copy_with(params=params).raw_path, "ascii")
        if total is not None and nxt is not None:
            if int(params["offset"]) >= total:
                nxt = None
        return body, nxt, total
    raise ValueError("not a list response")

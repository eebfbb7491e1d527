"""Streaming multipart/form-data for registration: parts flow into `exchange` as they arrive.

Starlette's own form parser spools a whole upload to a temporary file before the
handler runs, which would put plaintext on disk. Here the body is parsed as it
streams, and file bytes go straight to the registration pipeline (which hashes,
encrypts and scans them) in ~1 MiB pieces.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from exchange import errors as xe
from gateway.edges import MAX_JSON_DEPTH, DepthMeter
from gateway.errors import GatewayError

if TYPE_CHECKING:  # a TypedDict that exists for type checkers only
    from python_multipart.multipart import MultipartCallbacks

_FEED_BYTES = 1 << 20
_MAX_HEADER_BYTES = 8 * 1024
_MAX_HEADERS = 16


def registration_body(metadata_schema: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI `requestBody` of a registration: a `metadata` part and a `file` part."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["metadata", "file"],
                        "properties": {
                            "metadata": metadata_schema,
                            "file": {"type": "string", "format": "binary"},
                        },
                    }
                }
            },
        }
    }


def check_metadata_depth(raw: bytes) -> None:
    """Refuse metadata nested too deeply before it is parsed (json.loads would recurse out)."""
    if not DepthMeter().feed(raw):
        raise GatewayError(
            "json-too-deep",
            "Request body nested too deeply",
            f"the metadata may nest at most {MAX_JSON_DEPTH} arrays or objects",
            max_depth=MAX_JSON_DEPTH,
        )


class _Parts:
    """Collects parser callbacks into (part name, event, data) tuples."""

    def __init__(self) -> None:
        self.events: list[tuple[str, bytes]] = []
        self.current: str | None = None
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}

    def callbacks(self) -> dict[str, Callable[..., Any]]:
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda d, s, e: self._grow(self._header_field, d[s:e]),
            "on_header_value": lambda d, s, e: self._grow(self._header_value, d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": lambda d, s, e: self.events.append(("data", bytes(d[s:e]))),
            "on_part_end": lambda: self.events.append(("end", b"")),
        }

    def _grow(self, buf: bytearray, data: bytes) -> None:
        buf.extend(data)
        if len(buf) > _MAX_HEADER_BYTES or len(self._headers) >= _MAX_HEADERS:
            raise xe.InvalidInput("a multipart part has too many or too large headers")

    def _begin(self) -> None:
        self._headers = {}
        self.current = None

    def _header_end(self) -> None:
        self._headers[bytes(self._header_field).lower()] = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        _, opts = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = opts.get(b"name", b"").decode("utf-8", "replace")
        self.events.append(("begin", name.encode()))


async def stream_registration(
    request: Request,
    *,
    max_bytes: int,
    on_metadata: Callable[[bytes], Any],
    on_file: Callable[[bytes], None],
) -> None:
    """Parse the request body, calling `on_metadata` once and `on_file` per ~1 MiB.

    Both callbacks are blocking and run in the thread pool; they raise
    `ExchangeError`s that end the upload at once.
    """
    ctype, opts = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or b"boundary" not in opts:
        raise GatewayError(
            "unsupported-media-type",
            "Unsupported media type",
            "send multipart/form-data with a 'metadata' JSON part and a 'file' CSV part",
        )
    declared = request.headers.get("content-length")
    # A multipart envelope adds little; refuse clearly oversized bodies before reading.
    if declared and declared.isdigit() and int(declared) > max_bytes + (1 << 20):
        raise xe.UploadTooLarge(
            f"the upload exceeds the limit of {max_bytes} bytes", limit_bytes=max_bytes
        )
    parts = _Parts()
    parser = MultipartParser(opts[b"boundary"], cast("MultipartCallbacks", parts.callbacks()))
    part: str | None = None
    seen: set[str] = set()
    meta = bytearray()
    pending = bytearray()
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > max_bytes + (1 << 20):
            raise xe.UploadTooLarge(
                f"the upload exceeds the limit of {max_bytes} bytes", limit_bytes=max_bytes
            )
        try:
            parser.write(chunk)
        except MultipartParseError:
            raise GatewayError(
                "invalid-request", "Malformed multipart body", "the multipart body is malformed"
            ) from None
        for kind, data in parts.events:
            if kind == "begin":
                part = data.decode()
                if part not in ("metadata", "file"):
                    raise xe.InvalidInput(f"unexpected form part '{part[:40]}'", field=part[:40])
                if part in seen:
                    raise xe.InvalidInput(f"the '{part}' part appears twice", field=part)
                seen.add(part)
            elif kind == "data" and part == "metadata":
                meta.extend(data)
                if len(meta) > 64 * 1024:
                    raise xe.InvalidMetadata("metadata exceeds 64 KiB")
            elif kind == "data" and part == "file":
                pending.extend(data)
                if len(pending) >= _FEED_BYTES:
                    await run_in_threadpool(on_file, bytes(pending))
                    pending.clear()
            elif kind == "end":
                if part == "metadata":
                    await run_in_threadpool(on_metadata, bytes(meta))
                elif part == "file":
                    # Called even when empty, so an empty file is judged as CSV (csv-empty).
                    await run_in_threadpool(on_file, bytes(pending))
                    pending.clear()
                part = None
        parts.events.clear()
    try:
        parser.finalize()
    except MultipartParseError:
        raise GatewayError(
            "invalid-request", "Malformed multipart body", "the multipart body is truncated"
        ) from None
    if part is not None:
        raise GatewayError(
            "invalid-request", "Malformed multipart body", "the multipart body is truncated"
        )

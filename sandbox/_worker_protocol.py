"""Framing shared by the sandbox parent and the worker: length-prefixed JSON header + blobs.

A frame is `u32 header_len | header (UTF-8 JSON object) | u64 body_len | body`. The body
of a request is its blobs concatenated in the order the header lists them; the body of
a response is the operator's output bytes. Sizes are checked before anything is
allocated, because the parent reads frames written by code it does not trust.
"""

from __future__ import annotations

import json
import struct
from typing import Any

MAX_HEADER = 1 << 20
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


class ProtocolError(Exception):
    """A frame is malformed or larger than allowed."""


def encode_frame(header: dict[str, Any], body: bytes = b"") -> bytes:
    """One frame: the header as compact JSON, then the body."""
    raw = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    if len(raw) > MAX_HEADER:
        raise ProtocolError("frame header too large")
    return b"".join((_U32.pack(len(raw)), raw, _U64.pack(len(body)), body))


def encode_request(params: dict[str, Any], blobs: dict[str, bytes]) -> bytes:
    """A request frame: JSON parameters plus named binary blobs."""
    names = list(blobs)
    header = {"params": params, "blobs": [[n, len(blobs[n])] for n in names]}
    return encode_frame(header, b"".join(blobs[n] for n in names))


def split_blobs(header: dict[str, Any], body: bytes) -> dict[str, bytes]:
    """Cut a request body back into its named blobs."""
    out: dict[str, bytes] = {}
    pos = 0
    for name, length in header.get("blobs", []):
        out[str(name)] = body[pos : pos + int(length)]
        pos += int(length)
    if pos != len(body):
        raise ProtocolError("request body does not match its blob table")
    return out


def parse_header_len(raw: bytes) -> int:
    (n,) = _U32.unpack(raw)
    if n > MAX_HEADER:
        raise ProtocolError("frame header too large")
    return int(n)


def parse_body_len(raw: bytes, limit: int) -> int:
    (n,) = _U64.unpack(raw)
    if n > limit:
        raise ProtocolError(f"frame body of {n} bytes exceeds the limit of {limit}")
    return int(n)


def parse_header(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ProtocolError("frame header is not JSON") from exc
    if not isinstance(value, dict):
        raise ProtocolError("frame header is not a JSON object")
    return value

"""Blocks: signed, hash-linked headers sealing a batch of entries.

The signature covers the canonical JSON of every header field except `signature`;
the block hash (what the next block links to) covers the whole header.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ledger.canonical import canonical_json
from ledger.errors import InvalidBlock
from ledger.records import rfc3339_ms

GENESIS_PREV = bytes(32)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise InvalidBlock(f"{what} must be base64 text")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise InvalidBlock(f"{what} is not valid base64") from exc


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def time_text(time_ms: int) -> str:
    """A block's Unix-millisecond time in the leaves' format (`records.rfc3339_ms`)."""
    return rfc3339_ms(_EPOCH + timedelta(milliseconds=time_ms))


@dataclass(frozen=True)
class Block:
    """A sealed block header."""

    height: int
    prev_block_hash: bytes
    first_index: int
    tree_size: int
    root: bytes
    time_ms: int
    signer_key_id: str
    signature: bytes = b""

    def body(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "prev_block_hash": b64(self.prev_block_hash),
            "first_index": self.first_index,
            "tree_size": self.tree_size,
            "root": b64(self.root),
            "time": time_text(self.time_ms),
            "signer_key_id": self.signer_key_id,
        }

    def signed_bytes(self) -> bytes:
        """What the signature covers."""
        return canonical_json(self.body())

    def to_json(self) -> dict[str, Any]:
        return {**self.body(), "signature": b64(self.signature)}

    def block_hash(self, hash_fn: Callable[[bytes], bytes]) -> bytes:
        """H(canonical JSON of the whole header): the next block's `prev_block_hash`."""
        return hash_fn(canonical_json(self.to_json()))

    @classmethod
    def from_json(cls, value: object) -> Block:
        """Parse a header as `to_json` writes it; raise InvalidBlock on any defect."""
        if not isinstance(value, dict):
            raise InvalidBlock("block must be a JSON object")
        expected = {
            "height",
            "prev_block_hash",
            "first_index",
            "tree_size",
            "root",
            "time",
            "signer_key_id",
            "signature",
        }
        if set(value) != expected:
            raise InvalidBlock("block fields are not the expected set")
        for name in ("height", "first_index", "tree_size"):
            if not isinstance(value[name], int) or isinstance(value[name], bool):
                raise InvalidBlock(f"{name} must be an integer")
            if value[name] < 0:
                raise InvalidBlock(f"{name} must not be negative")
        if not isinstance(value["signer_key_id"], str) or not isinstance(value["time"], str):
            raise InvalidBlock("signer_key_id and time must be text")
        try:
            ts = datetime.strptime(value["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        except ValueError as exc:
            raise InvalidBlock("time must be RFC 3339 UTC with milliseconds") from exc
        block = cls(
            height=value["height"],
            prev_block_hash=unb64(value["prev_block_hash"], "prev_block_hash"),
            first_index=value["first_index"],
            tree_size=value["tree_size"],
            root=unb64(value["root"], "root"),
            time_ms=round(ts.timestamp() * 1000),
            signer_key_id=value["signer_key_id"],
            signature=unb64(value["signature"], "signature"),
        )
        if block.to_json() != value:
            raise InvalidBlock("block is not in canonical form", height=block.height)
        return block

"""Checkpoints (C2SP tlog-checkpoint): the note text that commits to a log's tree head."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Final

from ledger.errors import CheckpointError
from ledger.note import b64decode_canonical

__all__ = ["Checkpoint", "parse"]

# Tree sizes are uint64 in every tlog implementation (Go's transparency-dev/formats
# rejects larger); the spec itself sets no bound.
_MAX_SIZE: Final = 2**64 - 1


def _check_line(line: str, what: str) -> None:
    if not line:
        raise CheckpointError(f"{what} must be non-empty")
    # A line holds no newline; control characters would make the signed note
    # unopenable (C2SP signed-note: no ASCII controls but newline).
    if any(c < " " for c in line):
        raise CheckpointError(f"{what} contains a newline or control character")
    try:
        line.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CheckpointError(f"{what} is not valid Unicode") from exc


@dataclass(frozen=True)
class Checkpoint:
    """A log's signed tree head body: origin, tree size, root hash, extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line(self.origin, "origin")
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise CheckpointError("tree size must be an integer")
        if not 0 <= self.size <= _MAX_SIZE:
            raise CheckpointError("tree size must be between 0 and 2**64 - 1", size=self.size)
        if not isinstance(self.root_hash, bytes) or not self.root_hash:
            raise CheckpointError("root hash must be non-empty bytes")
        if not isinstance(self.extensions, tuple):
            raise CheckpointError("extensions must be a tuple of lines")
        for line in self.extensions:
            _check_line(line, "extension line")

    def body(self) -> str:
        """The note text: origin, decimal size, base64 root hash, extensions; each + newline."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root_hash).decode("ascii")]
        lines.extend(self.extensions)
        return "".join(line + "\n" for line in lines)

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Parse and validate a checkpoint body (the text of its signed note)."""
        if not text.endswith("\n"):
            raise CheckpointError("checkpoint must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise CheckpointError("checkpoint needs origin, size and root hash lines")
        origin, size_text, hash_text, *extensions = lines
        # tlog-checkpoint "Note text" 2: ASCII decimal, no leading zeroes but "0".
        if (
            not size_text
            or not size_text.isascii()
            or not size_text.isdigit()
            or (size_text[0] == "0" and size_text != "0")
        ):
            raise CheckpointError("tree size must be decimal without leading zeroes")
        size = int(size_text)
        if size > _MAX_SIZE:
            raise CheckpointError("tree size does not fit in 64 bits")
        # tlog-checkpoint "Note text" 3: standard base64 (RFC 4648 4), canonical.
        try:
            root_hash = b64decode_canonical(hash_text)
        except ValueError as exc:  # "not base64" / "not canonical base64"
            raise CheckpointError(f"root hash is {exc}") from exc
        # __post_init__ checks the origin and every extension line is non-empty.
        return cls(origin, size, root_hash, tuple(extensions))


def parse(text: str) -> Checkpoint:
    """`Checkpoint.parse(text)`."""
    return Checkpoint.parse(text)

"""What every `pdx` verb shares: the one-line error a verb raises."""

from __future__ import annotations

from pathlib import Path


class CliError(Exception):
    """A failure to report as one line on stderr with a non-zero exit."""


def text_arg(value: str) -> str:
    """A literal value, or the contents of the file it names (verifier keys, notes)."""
    path = Path(value)
    if path.is_file():
        return path.read_text()
    return value

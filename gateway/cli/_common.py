"""What every `pdx` verb shares: the one-line error a verb raises, the migrated platform."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from gateway.settings import Settings

if TYPE_CHECKING:
    from gateway.platform import Platform


class CliError(Exception):
    """A failure to report as one line on stderr with a non-zero exit."""


def migrated_platform(settings: Settings | None = None) -> Platform:
    """The platform (of the environment's settings by default), its database migrated."""
    from gateway.platform import build_platform, upgrade_database

    platform = build_platform(settings or Settings.from_env())
    upgrade_database(platform.engine)
    return platform


def text_arg(value: str) -> str:
    """A literal value, or the contents of the file it names (verifier keys, notes)."""
    path = Path(value)
    if path.is_file():
        return path.read_text()
    return value

"""GB/T 43697-2024 grading levels and the catalogue attributes that go with them."""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "Level",
    "OpenAttribute",
    "ProcessingDegree",
    "ShareAttribute",
    "level_rank",
    "max_level",
]


class Level(StrEnum):
    """Data level, lowest first (GB/T 43697-2024 clause 5; 一般数据 is split into 1..4).

    Levels compare by severity, not alphabetically: ``Level.GENERAL_4 < Level.IMPORTANT``.
    Comparing a `Level` with a plain string is not supported (it would fall back to
    alphabetical order), so convert first: ``Level(text)``.
    """

    GENERAL_1 = "general-1"
    GENERAL_2 = "general-2"
    GENERAL_3 = "general-3"
    GENERAL_4 = "general-4"
    IMPORTANT = "important"
    CORE = "core"

    @property
    def rank(self) -> int:
        """0 for general-1 up to 5 for core."""
        return _RANKS[self]

    def __lt__(self, other: str) -> bool:
        if isinstance(other, Level):
            return self.rank < other.rank
        return NotImplemented

    def __le__(self, other: str) -> bool:
        if isinstance(other, Level):
            return self.rank <= other.rank
        return NotImplemented

    def __gt__(self, other: str) -> bool:
        if isinstance(other, Level):
            return self.rank > other.rank
        return NotImplemented

    def __ge__(self, other: str) -> bool:
        if isinstance(other, Level):
            return self.rank >= other.rank
        return NotImplemented


_RANKS: dict[Level, int] = {level: rank for rank, level in enumerate(Level)}


def level_rank(level: Level | str) -> int:
    """Rank of a level (0 = general-1 … 5 = core); raises ValueError for an unknown name."""
    return Level(level).rank


def max_level(*levels: Level | str) -> Level:
    """The most severe of the given levels (就高从严); general-1 when none are given."""
    result = Level.GENERAL_1
    for level in levels:
        candidate = Level(level)
        if candidate.rank > result.rank:
            result = candidate
    return result


class OpenAttribute(StrEnum):
    """Open attribute of a public-data resource (无条件开放 / 有条件开放 / 不予开放)."""

    OPEN = "open"
    CONDITIONAL = "conditional"
    CLOSED = "closed"


class ShareAttribute(StrEnum):
    """Share attribute between government bodies (无条件共享 / 有条件共享 / 不予共享)."""

    UNCONDITIONAL = "unconditional"
    CONDITIONAL = "conditional"
    NONE = "none"


class ProcessingDegree(StrEnum):
    """How far the data has been processed from its raw form (GB/T 43697-2024 Annex)."""

    RAW = "raw"
    DESENSITISED = "desensitised"
    STATISTICAL = "statistical"
    FUSED = "fused"

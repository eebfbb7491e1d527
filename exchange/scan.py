"""Sensitivity scan of CSV record batches: personal-information categories per field, minimum level.

The detectors (patterns, check digits, column-name checks) are in `exchange.scan_detectors`.

Design (measured on synthetic transit data, see bench/datagen.py; RE2 costs ~40 ns
per value whatever its length, so the aim is one regex pass per value):

1. Values of no possible length (shorter than "张三", longer than an e-mail address)
   skip the regexes; the lengths come free from the Arrow offsets.
2. A column that was mostly one category in the previous batch tests that category
   first; the rest, or every value of other columns, goes through one anchored RE2
   alternation of all categories (`_ANY`), which rejects most values at once.
3. Only values that matched are tested category by category, each category removing
   what its pattern claimed.
4. Check digits (GB 11643-1999 for ID numbers, Luhn for bank cards) are validated for
   every candidate with numpy over the raw UTF-8 bytes, never a Python loop per value.
5. Values that matched nothing and can hold a number inside text (remarks, addresses)
   are searched for embedded ID and mobile numbers.

The grading rules live in `ScanRules`; 就高从严 (GB/T 43697-2024 §5): the dataset's
minimum level is that of its most sensitive field, and one validated ID number or
bank card number is enough to grade a field.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from exchange.levels import Level
from exchange.scan_detectors import (
    _ANCHORED,
    _ANY,
    _EMBEDDED_ID,
    _EMBEDDED_MIN_ASCII,
    _EMBEDDED_MOBILE,
    _LONGEST_ANCHORED_CHARS,
    _MAX_MATCH_BYTES,
    _MIN_MATCH_BYTES,
    BANK_CARD,
    CATEGORIES,
    COMPOUND_SURNAMES,
    DEFAULT_LEVELS,
    EMAIL,
    ID_NUMBER,
    MOBILE,
    NAME_PLACEHOLDER,
    PERSON_NAME,
    PLACE_SUFFIXES,
    PLATE,
    SINGLE_SURNAMES,
    _bools,
    _id_check_mask,
    _lengths,
    _luhn_mask,
    _normalise_formatted_numbers,
    column_name_categories,
    id_check_char,
    is_name_header,
    luhn_valid,
    mask_column_name,
    valid_id_number,
    value_like_cells,
)

__all__ = [
    "BANK_CARD",
    "CATEGORIES",
    "DEFAULT_LEVELS",
    "EMAIL",
    "ID_NUMBER",
    "MOBILE",
    "PERSON_NAME",
    "COMPOUND_SURNAMES",
    "NAME_PLACEHOLDER",
    "PLACE_SUFFIXES",
    "PLATE",
    "SINGLE_SURNAMES",
    "CategoryHit",
    "FieldScan",
    "ScanResult",
    "ScanRules",
    "SensitivityScanner",
    "id_check_char",
    "column_name_categories",
    "is_name_header",
    "luhn_valid",
    "mask_column_name",
    "string_columns",
    "valid_id_number",
    "value_like_cells",
]


@dataclass(frozen=True)
class ScanRules:
    """When a detection grades a field, and to which level.

    `levels`: minimum level a category imposes on its field (DEFAULT_LEVELS explains
    each). `single_hit`: categories where one validated hit is enough (就高从严: the
    check digit already rules out chance). `min_ratio`: share of non-empty values the
    other categories need. `person_name_min_ratio`: names need more, because "common
    surname + 1-2 characters" also matches place and shop names in ordinary columns.
    """

    levels: Mapping[str, Level] = field(default_factory=lambda: dict(DEFAULT_LEVELS))
    single_hit: frozenset[str] = frozenset({ID_NUMBER, BANK_CARD})
    min_ratio: float = 0.01
    person_name_min_ratio: float = 0.3

    def __post_init__(self) -> None:
        unknown = (set(self.levels) | set(self.single_hit)) - set(CATEGORIES)
        if unknown:
            raise ValueError(f"unknown categories: {sorted(unknown)}")
        missing = set(CATEGORIES) - set(self.levels)
        if missing:
            raise ValueError(f"no level for categories: {sorted(missing)}")
        for name in ("min_ratio", "person_name_min_ratio"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        for level in self.levels.values():
            Level(level)  # raises ValueError for an unknown level name


@dataclass(frozen=True)
class CategoryHit:
    """How many non-empty values of a field fell in one category.

    `embedded` of the `hits` were found inside longer text; `counted` says whether the
    category graded the field under the rules in force; `in_name`, whether the field's
    column name held a value of the category (masked since: `mask_column_name`).
    """

    hits: int
    ratio: float
    embedded: int = 0
    counted: bool = False
    in_name: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # every field, as the dataset row keeps it (`Dataset.scan`)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CategoryHit:
        return cls(
            hits=int(data["hits"]),
            ratio=float(data["ratio"]),
            embedded=int(data.get("embedded", 0)),
            counted=bool(data.get("counted", False)),
            in_name=bool(data.get("in_name", False)),
        )


@dataclass(frozen=True)
class FieldScan:
    name: str
    non_empty: int
    detections: dict[str, CategoryHit]
    suggested_level: Level
    reason: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "non_empty": self.non_empty,
            "detections": {k: v.to_dict() for k, v in self.detections.items()},
            "suggested_level": self.suggested_level.value,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FieldScan:
        return cls(
            name=str(data["name"]),
            non_empty=int(data["non_empty"]),
            detections={
                str(k): CategoryHit.from_dict(v) for k, v in dict(data["detections"]).items()
            },
            suggested_level=Level(data["suggested_level"]),
            reason=None if data.get("reason") is None else str(data["reason"]),
        )


@dataclass(frozen=True)
class ScanResult:
    rows: int
    fields: list[FieldScan]
    min_level: Level
    most_sensitive_field: str | None

    def field(self, name: str) -> FieldScan:
        """The scan of one column; KeyError if there is no such column."""
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "min_level": self.min_level.value,
            "most_sensitive_field": self.most_sensitive_field,
            "fields": [f.to_dict() for f in self.fields],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScanResult:
        most = data.get("most_sensitive_field")
        return cls(
            rows=int(data["rows"]),
            fields=[FieldScan.from_dict(f) for f in data["fields"]],
            min_level=Level(data["min_level"]),
            most_sensitive_field=None if most is None else str(most),
        )


_NOUNS: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        ID_NUMBER: (
            "a mainland ID number with a valid GB 11643 check digit",
            "mainland ID numbers with a valid GB 11643 check digit",
        ),
        MOBILE: ("a mainland mobile number", "mainland mobile numbers"),
        BANK_CARD: (
            "a 16-19 digit card number passing the Luhn check",
            "16-19 digit card numbers passing the Luhn check",
        ),
        EMAIL: ("an e-mail address", "e-mail addresses"),
        PLATE: ("a mainland vehicle plate number", "mainland vehicle plate numbers"),
        PERSON_NAME: ("a Chinese personal name", "Chinese personal names"),
    }
)


def _reason(category: str, hit: CategoryHit, non_empty: int, context: str) -> str:
    singular, plural = _NOUNS[category]
    if hit.embedded == 0:
        text = f"{hit.hits} of {non_empty} values {'is' if hit.hits == 1 else 'are'} "
        text += singular if hit.hits == 1 else plural
    elif hit.embedded == hit.hits:
        verb = "contains" if hit.hits == 1 else "contain"
        text = f"{hit.hits} of {non_empty} values {verb} {singular} inside longer text"
    else:
        text = f"{hit.hits} of {non_empty} values are or contain {plural}"
    return text + context


# --- the scanner ---------------------------------------------------------------------


class _Column:
    def __init__(self, name: str) -> None:
        self.name = name
        self.non_empty = 0
        self.hits = dict.fromkeys(CATEGORIES, 0)
        self.embedded = dict.fromkeys((ID_NUMBER, MOBILE), 0)
        # Pattern matches per category in the last batch (before check digits).
        self.last_batch = dict.fromkeys(CATEGORIES, 0)
        self.dominant: str | None = None
        # Values the column name itself holds: they grade the field like its values.
        self.in_name = frozenset(column_name_categories(name))

    def order(self) -> list[str]:
        """Categories to try, most matched in the last batch first; ID always before bank card."""
        fixed = {c: i for i, c in enumerate(CATEGORIES)}
        order = sorted(CATEGORIES, key=lambda c: (-self.last_batch[c], fixed[c]))
        if order.index(BANK_CARD) < order.index(ID_NUMBER):
            order.remove(ID_NUMBER)
            order.insert(order.index(BANK_CARD), ID_NUMBER)
        return order


def string_columns(batch: pa.RecordBatch, width: int, reader: str) -> Iterator[pa.Array]:
    """The batch's columns as strings, nulls as "", once it has the `width` the reader expects."""
    if batch.num_columns != width:
        raise ValueError(f"batch has {batch.num_columns} columns; the {reader} has {width}")
    return (_as_strings(values) for values in batch.columns)


def _as_strings(values: pa.Array) -> pa.Array:
    if values.type != pa.string():
        values = values.cast(pa.string())
    if values.null_count:
        values = values.fill_null("")
    return values


class SensitivityScanner:
    """Feed record batches (all-string columns, in header order), then read `result()`."""

    def __init__(self, columns: Sequence[str], rules: ScanRules | None = None) -> None:
        self._columns = [_Column(name) for name in columns]
        self._rules = rules if rules is not None else ScanRules()
        self._rows = 0

    def feed(self, batch: pa.RecordBatch) -> None:
        columns = string_columns(batch, len(self._columns), "scanner")
        self._rows += batch.num_rows
        for state, values in zip(self._columns, columns, strict=True):
            self._scan_column(state, values)

    def _scan_column(self, state: _Column, values: pa.Array) -> None:
        values = _normalise_formatted_numbers(values)
        lengths = _lengths(values)
        filled = lengths > 0
        n_filled = int(np.count_nonzero(filled))
        state.non_empty += n_filled
        if n_filled == 0:
            return
        if n_filled < len(values) // 2:  # mostly empty (remarks): drop the empties first
            values = values.filter(pa.array(filled))
            lengths = lengths[filled]
        state.last_batch = dict.fromkeys(CATEGORIES, 0)
        matched = np.zeros(len(values), dtype=bool)
        # Values of no possible category length skip the regex (its cost is per value).
        todo = (lengths >= _MIN_MATCH_BYTES) & (lengths <= _MAX_MATCH_BYTES)
        tried: list[str] = []
        if state.dominant is not None:
            # A column that was mostly one category in the last batch tests that category
            # on every value and runs the catch-all only on the rest: one regex pass, not two.
            claimed = self._test(state, state.dominant, values)
            matched |= claimed
            todo &= ~claimed
            tried.append(state.dominant)
        n_todo = int(np.count_nonzero(todo))
        if n_todo:
            # Filtering costs a few ns per value, the catch-all ~40: filter when it saves.
            if n_todo == len(values) or n_todo > len(values) * 0.8:
                hit_any = _bools(pc.match_substring_regex(values, _ANY)) & todo
            else:
                hit_any = np.zeros(len(values), dtype=bool)
                subset = values.filter(pa.array(todo))
                hit_any[np.flatnonzero(todo)] = _bools(pc.match_substring_regex(subset, _ANY))
            if hit_any.any():
                matched |= hit_any
                self._classify(state, values.filter(pa.array(hit_any)), tried)
        top = max(CATEGORIES, key=lambda c: state.last_batch[c])
        state.dominant = top if 2 * state.last_batch[top] >= len(values) else None
        free_text = ~matched & (lengths >= _EMBEDDED_MIN_ASCII)
        if free_text.any():
            self._free_text(state, values, lengths, free_text)

    def _test(self, state: _Column, category: str, values: pa.Array) -> npt.NDArray[np.bool_]:
        """Count `category` in `values`; returns which values its pattern matched.

        Values failing a check digit count as no hit (but were matched by the pattern).
        """
        hit = _bools(pc.match_substring_regex(values, _ANCHORED[category]))
        matched = hit.copy()
        positions = np.flatnonzero(hit)
        if len(positions) and category in (ID_NUMBER, BANK_CARD):
            candidates = values if len(positions) == len(values) else values.take(positions)
            check = _id_check_mask if category == ID_NUMBER else _luhn_mask
            hit[positions[~check(candidates)]] = False
        count = int(np.count_nonzero(hit))
        state.hits[category] += count
        state.last_batch[category] += len(positions)
        if category == ID_NUMBER:
            return hit  # values failing the ID check stay in play as possible bank cards
        return matched

    def _classify(self, state: _Column, remaining: pa.Array, tried: Sequence[str]) -> None:
        """Values that matched the catch-all: find each one's category."""
        for category in state.order():
            if len(remaining) == 0:
                return
            if category in tried:
                continue
            claimed = self._test(state, category, remaining)
            if claimed.any():
                remaining = remaining.filter(pa.array(~claimed))

    def _free_text(
        self,
        state: _Column,
        values: pa.Array,
        lengths: npt.NDArray[np.int32],
        candidates: npt.NDArray[np.bool_],
    ) -> None:
        chars = np.asarray(pc.utf8_length(values).to_numpy(zero_copy_only=False))
        # ASCII characters, counting every non-ASCII character as 3 bytes (CJK): exact for
        # Chinese text, an over-estimate for 2-byte characters.
        ascii_chars = (3 * chars - lengths) // 2
        candidates = (
            candidates
            & (ascii_chars >= _EMBEDDED_MIN_ASCII)
            & ((chars > _LONGEST_ANCHORED_CHARS) | (lengths > chars))
        )
        if not candidates.any():
            return
        text = values.filter(pa.array(candidates))
        has_id = _bools(pc.match_substring_regex(text, _EMBEDDED_ID))
        if has_id.any():
            found = pc.struct_field(
                pc.extract_regex(text.filter(pa.array(has_id)), _EMBEDDED_ID), [0]
            )
            count = int(np.count_nonzero(_id_check_mask(found)))
            state.hits[ID_NUMBER] += count
            state.embedded[ID_NUMBER] += count
        has_mobile = _bools(pc.match_substring_regex(text, _EMBEDDED_MOBILE))
        count = int(np.count_nonzero(has_mobile))
        state.hits[MOBILE] += count
        state.embedded[MOBILE] += count

    def result(self) -> ScanResult:
        rules = self._rules
        # Names count only next to ID or mobile numbers (or under a name header), so the
        # other categories are settled first, for every column.
        counted_by_ratio = [
            {
                c
                for c in CATEGORIES
                if c != PERSON_NAME and _counts(rules, c, col.hits[c], col.non_empty)
            }
            | col.in_name
            for col in self._columns
        ]
        people_present = any(cats & {ID_NUMBER, MOBILE} for cats in counted_by_ratio)
        fields: list[FieldScan] = []
        for col, counted in zip(self._columns, counted_by_ratio, strict=True):
            name_header = is_name_header(col.name)
            if (people_present or name_header) and _counts(
                rules, PERSON_NAME, col.hits[PERSON_NAME], col.non_empty
            ):
                counted.add(PERSON_NAME)
            detections = {
                c: CategoryHit(
                    hits=col.hits[c],
                    ratio=col.hits[c] / col.non_empty if col.non_empty else 0.0,
                    embedded=col.embedded.get(c, 0),
                    counted=c in counted,
                    in_name=c in col.in_name,
                )
                for c in CATEGORIES
                if col.hits[c] or c in col.in_name
            }
            level = Level.GENERAL_1
            reason = None
            if counted:
                decisive = max(counted, key=lambda c: (Level(rules.levels[c]).rank, col.hits[c]))
                level = Level(rules.levels[decisive])
                context = ""
                if decisive == PERSON_NAME:
                    context = (
                        " (the column header names a person)"
                        if name_header
                        else " (the dataset also holds ID or mobile numbers)"
                    )
                reason = _reason(decisive, detections[decisive], col.non_empty, context)
                if decisive in col.in_name:
                    held = f"the column name held {_NOUNS[decisive][0]} (withheld)"
                    reason = held if not col.hits[decisive] else f"{held}; {reason}"
            fields.append(FieldScan(col.name, col.non_empty, detections, level, reason))
        most = _most_sensitive(fields, rules)
        return ScanResult(
            rows=self._rows,
            fields=fields,
            min_level=Level.GENERAL_1 if most is None else most.suggested_level,
            most_sensitive_field=None if most is None else most.name,
        )


def _counts(rules: ScanRules, category: str, hits: int, non_empty: int) -> bool:
    if hits == 0 or non_empty == 0:
        return False
    if category in rules.single_hit:
        return True
    threshold = rules.person_name_min_ratio if category == PERSON_NAME else rules.min_ratio
    return hits / non_empty >= threshold


def _most_sensitive(fields: Sequence[FieldScan], rules: ScanRules) -> FieldScan | None:
    """Highest level; among equals the one where that level's category is most frequent."""
    best: FieldScan | None = None
    best_key = (0, 0.0)
    for f in fields:
        if f.suggested_level == Level.GENERAL_1:
            continue
        strongest = max(
            (
                h.ratio
                for c, h in f.detections.items()
                if h.counted and Level(rules.levels[c]) == f.suggested_level
            ),
            default=0.0,
        )
        key = (f.suggested_level.rank, strongest)
        if best is None or key > best_key:
            best, best_key = f, key
    return best

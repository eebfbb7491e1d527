"""Synthetic preview rows: value shapes learned while streaming, values invented from them.

A `ShapeProfile` keeps, per column, only masks of a few hundred values (digit → 9,
ASCII letter → A/a, Han character → H, anything else kept), how often values are
empty and their length range: never a value. `synthesize` draws new values of those
shapes; columns the scanner found to hold personal information get values that are
valid in form but cannot belong to anyone (ID numbers with the impossible region
"99", reserved-looking mobiles, `example.invalid` addresses, names ending in 某).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from exchange.scan import (
    BANK_CARD,
    EMAIL,
    ID_NUMBER,
    MOBILE,
    PERSON_NAME,
    PLATE,
    ScanResult,
    id_check_char,
    string_columns,
)

__all__ = [
    "ColumnShape",
    "ShapeProfile",
    "ShapeProfiler",
    "shape_of",
    "synthesize",
]

SAMPLE_VALUES = 500
MAX_MASKS = 8
MAX_MASK_CHARS = 200
# A column is generated as a category when at least this share of its non-empty values
# are that category as whole values (not embedded in text).
_CATEGORY_SHARE = 0.5

_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LOWER = "abcdefghijklmnopqrstuvwxyz"
_DIGITS = "0123456789"
# Common characters for masked Han positions; a random pick of them reads as noise.
_HAN_POOL = (
    "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过"
    "家学对可里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本"
    "见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工"
    "己话儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西"
)
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
_COMPOUND_SURNAMES = ("欧阳", "司马", "上官", "诸葛")
_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
_PLATE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # GA 36-2018: no I, no O
# Mobile numbers from a block that looks reserved; bank cards on a test-looking BIN.
_MOBILE_PREFIX = "1990000"
_CARD_PREFIX = "622848000000"


def _is_han(ch: str) -> bool:
    code = ord(ch)
    return (
        0x4E00 <= code <= 0x9FFF
        or 0x3400 <= code <= 0x4DBF
        or 0xF900 <= code <= 0xFAFF
        or 0x20000 <= code <= 0x3134F
    )


def _mask_char(ch: str) -> str:
    if ch.isdigit():
        return "9"
    if ch.isascii():
        if ch.isupper():
            return "A"
        if ch.islower():
            return "a"
        return ch
    if _is_han(ch):
        return "H"
    if ch.isalpha():  # other scripts' letters: shape only, never the letter
        return "a"
    return ch


def shape_of(value: str) -> str:
    """Mask of a value: digit → 9, ASCII letter → A/a, Han → H, other letters → a, rest kept.

    Masks longer than MAX_MASK_CHARS are cut there.
    """
    return "".join(_mask_char(ch) for ch in value[:MAX_MASK_CHARS])


@dataclass(frozen=True)
class ColumnShape:
    """Shapes of one column: masks with weights (summing to 1), empties, length range."""

    name: str
    masks: list[tuple[str, float]]
    empty_ratio: float
    min_length: int
    max_length: int
    sampled: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "masks": [{"mask": m, "weight": w} for m, w in self.masks],
            "empty_ratio": self.empty_ratio,
            "min_length": self.min_length,
            "max_length": self.max_length,
            "sampled": self.sampled,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnShape:
        return cls(
            name=str(data["name"]),
            masks=[(str(m["mask"]), float(m["weight"])) for m in data["masks"]],
            empty_ratio=float(data["empty_ratio"]),
            min_length=int(data["min_length"]),
            max_length=int(data["max_length"]),
            sampled=int(data["sampled"]),
        )


@dataclass(frozen=True)
class ShapeProfile:
    rows: int
    columns: list[ColumnShape]

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "columns": [c.to_dict() for c in self.columns]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ShapeProfile:
        return cls(
            rows=int(data["rows"]),
            columns=[ColumnShape.from_dict(c) for c in data["columns"]],
        )


class ShapeProfiler:
    """Collects masks of the first `sample` non-empty values per column while streaming.

    Apart from that sample, each batch costs one vectorised count of empty values.
    """

    def __init__(self, columns: Sequence[str], *, sample: int = SAMPLE_VALUES) -> None:
        if sample < 1:
            raise ValueError("sample must be positive")
        self._names = list(columns)
        self._sample = sample
        self._masks: list[Counter[str]] = [Counter() for _ in self._names]
        self._lengths: list[list[int]] = [[] for _ in self._names]
        self._empty = [0] * len(self._names)
        self._rows = 0

    def feed(self, batch: pa.RecordBatch) -> None:
        columns = string_columns(batch, len(self._names), "profiler")
        self._rows += batch.num_rows
        for i, values in enumerate(columns):
            offsets = np.frombuffer(values.buffers()[1], dtype=np.int32)
            filled = np.diff(offsets[values.offset : values.offset + len(values) + 1]) > 0
            self._empty[i] += len(values) - int(np.count_nonzero(filled))
            needed = self._sample - len(self._lengths[i])
            if needed <= 0 or not filled.any():
                continue
            picked = np.flatnonzero(filled)[:needed]
            for value in values.take(pa.array(picked)).to_pylist():
                self._masks[i][shape_of(value)] += 1
                self._lengths[i].append(len(value))

    def profile(self) -> ShapeProfile:
        columns = []
        for name, masks, lengths, empty in zip(
            self._names, self._masks, self._lengths, self._empty, strict=True
        ):
            top = masks.most_common(MAX_MASKS)
            total = sum(count for _, count in top)
            columns.append(
                ColumnShape(
                    name=name,
                    masks=[(mask, count / total) for mask, count in top],
                    empty_ratio=empty / self._rows if self._rows else 0.0,
                    min_length=min(lengths, default=0),
                    max_length=max(lengths, default=0),
                    sampled=len(lengths),
                )
            )
        return ShapeProfile(rows=self._rows, columns=columns)


# --- synthesis ------------------------------------------------------------------------


# Dates and times keep their shape *and* stay valid (a "2026-13-45" would not look like
# the column it previews). The range says nothing about the real data.
_DATE_TIME_MASK = re.compile(r"(?P<date>9999(?P<sep>[-/.])99(?P=sep)99)|(?P<time>99:99(?::99)?)")
_DATE_FROM = date(2000, 1, 1)
_DATE_SPAN_DAYS = 31 * 365


def _fill_chars(mask: str, rng: random.Random) -> str:
    out = []
    for ch in mask:
        if ch == "9":
            out.append(rng.choice(_DIGITS))
        elif ch == "A":
            out.append(rng.choice(_UPPER))
        elif ch == "a":
            out.append(rng.choice(_LOWER))
        elif ch == "H":
            out.append(rng.choice(_HAN_POOL))
        else:
            out.append(ch)
    return "".join(out)


def _fill(mask: str, rng: random.Random) -> str:
    out = []
    pos = 0
    for m in _DATE_TIME_MASK.finditer(mask):
        out.append(_fill_chars(mask[pos : m.start()], rng))
        if m.group("date"):
            day = _DATE_FROM + timedelta(days=rng.randrange(_DATE_SPAN_DAYS))
            sep = m.group("sep")
            out.append(f"{day.year:04d}{sep}{day.month:02d}{sep}{day.day:02d}")
        else:
            hms = [rng.randrange(24), rng.randrange(60), rng.randrange(60)]
            out.append(":".join(f"{v:02d}" for v in hms[: m.group("time").count(":") + 1]))
        pos = m.end()
    out.append(_fill_chars(mask[pos:], rng))
    return "".join(out)


def _digits(n: int, rng: random.Random) -> str:
    return "".join(rng.choice(_DIGITS) for _ in range(n))


def _fake_id(mask: str, rng: random.Random) -> str:
    # Region "99xxxx" is assigned to no province (GB/T 2260), so no person has this ID.
    born = date(1950, 1, 1) + timedelta(days=rng.randrange(60 * 365))
    first17 = "99" + _digits(4, rng) + born.strftime("%Y%m%d") + _digits(3, rng)
    return first17 + id_check_char(first17)


def _luhn_digit(body: str) -> str:
    total = 0
    # The check digit will sit at the right, so the body's last digit is doubled.
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str((10 - total % 10) % 10)


def _fake_card(mask: str, rng: random.Random) -> str:
    length = len(mask) if set(mask) == {"9"} and 16 <= len(mask) <= 19 else 19
    body = _CARD_PREFIX + _digits(length - 1 - len(_CARD_PREFIX), rng)
    return body + _luhn_digit(body)


def _fake_mobile(mask: str, rng: random.Random) -> str:
    return _MOBILE_PREFIX + _digits(4, rng)


def _fake_email(mask: str, rng: random.Random) -> str:
    return f"user{_digits(4, rng)}@example.invalid"


def _fake_plate(mask: str, rng: random.Random) -> str:
    tail = "".join(rng.choice(_PLATE_LETTERS + _DIGITS) for _ in range(5))
    return rng.choice(_PROVINCES) + rng.choice(_PLATE_LETTERS) + tail


def _fake_name(mask: str, rng: random.Random) -> str:
    # 某 ("a certain") is the conventional stand-in for a withheld given name.
    length = len(mask) if set(mask) == {"H"} else 2
    if length >= 4:
        return rng.choice(_COMPOUND_SURNAMES) + "某某"
    if length == 3:
        return rng.choice(_SURNAMES) + "某某"
    return rng.choice(_SURNAMES) + "某"


_GENERATORS: Mapping[str, Callable[[str, random.Random], str]] = {
    ID_NUMBER: _fake_id,
    MOBILE: _fake_mobile,
    BANK_CARD: _fake_card,
    EMAIL: _fake_email,
    PLATE: _fake_plate,
    PERSON_NAME: _fake_name,
}


def _column_category(scan: ScanResult, name: str) -> str | None:
    """The category a column holds as whole values, if most of its values are one."""
    for field in scan.fields:
        if field.name != name or field.non_empty == 0:
            continue
        best = None
        best_share = _CATEGORY_SHARE
        for category, hit in field.detections.items():
            share = (hit.hits - hit.embedded) / field.non_empty
            if share >= best_share and category in _GENERATORS:
                best, best_share = category, share
        return best
    return None


def synthesize(
    profile: ShapeProfile, scan: ScanResult, rows: int, seed: int
) -> list[dict[str, str]]:
    """`rows` invented rows with the profile's columns and value shapes; same seed, same rows."""
    if rows < 0:
        raise ValueError("rows must not be negative")
    rng = random.Random(seed)
    plans = []
    for column in profile.columns:
        category = _column_category(scan, column.name)
        masks = [m for m, _ in column.masks]
        weights = [w for _, w in column.masks]
        plans.append((column, category, masks, weights))
    out: list[dict[str, str]] = []
    for _ in range(rows):
        row: dict[str, str] = {}
        for column, category, masks, weights in plans:
            if not masks or rng.random() < column.empty_ratio:
                row[column.name] = ""
                continue
            mask = rng.choices(masks, weights)[0]
            if category is not None:
                row[column.name] = _GENERATORS[category](mask, rng)
            else:
                row[column.name] = _fill(mask, rng)
        out.append(row)
    return out

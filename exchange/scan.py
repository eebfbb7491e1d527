"""Sensitivity scan of CSV record batches: personal-information categories per field, minimum level.

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

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from exchange.levels import Level

__all__ = [
    "BANK_CARD",
    "CATEGORIES",
    "DEFAULT_LEVELS",
    "EMAIL",
    "ID_NUMBER",
    "MOBILE",
    "PERSON_NAME",
    "PLATE",
    "CategoryHit",
    "FieldScan",
    "ScanResult",
    "ScanRules",
    "SensitivityScanner",
    "id_check_char",
    "is_name_header",
    "luhn_valid",
    "valid_id_number",
]

ID_NUMBER = "id_number"
MOBILE = "mobile"
BANK_CARD = "bank_card"
EMAIL = "email"
PLATE = "plate"
PERSON_NAME = "person_name"

# Test order inside the matched subset: ID before bank card (an 18-digit ID number is
# also 16-19 digits; only values that fail the ID check may be bank cards).
CATEGORIES: tuple[str, ...] = (ID_NUMBER, MOBILE, BANK_CARD, EMAIL, PLATE, PERSON_NAME)

DEFAULT_LEVELS: Mapping[str, Level] = MappingProxyType(
    {
        # Sensitive PI (PIPL art. 28; GB/T 35273-2020 Annex B): identifies one person for life.
        ID_NUMBER: Level.GENERAL_4,
        # Sensitive PI (financial account, GB/T 35273-2020 Annex B): enables fraud directly.
        BANK_CARD: Level.GENERAL_4,
        # PI that reaches one person directly and is real-name registered in China.
        MOBILE: Level.GENERAL_3,
        # PI: a name next to other attributes identifies a person.
        PERSON_NAME: Level.GENERAL_3,
        # PI, but identifies a vehicle; the owner needs a second source.
        PLATE: Level.GENERAL_2,
        # PI, but often role or throwaway addresses; reaches a mailbox, not a person.
        EMAIL: Level.GENERAL_2,
    }
)

# --- patterns (RE2 syntax, run by pyarrow.compute) ---------------------------------

# GB/T 2260 province codes: 11-15, 21-23, 31-37, 41-46, 50-54, 61-65, 71, 81-83.
_ID_RE = (
    r"(?:1[1-5]|2[1-3]|3[1-7]|4[1-6]|5[0-4]|6[1-5]|71|8[1-3])[0-9]{4}"
    r"(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9Xx]"
)
_MOBILE_RE = r"(?:\+?86[- ]?)?1[3-9][0-9]{9}"
_BANK_RE = r"[1-9][0-9]{15,18}"
_EMAIL_RE = r"[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}"
_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
# GA 36-2018: province + issuing-authority letter (no I/O) + 5 characters; new-energy
# plates (2016 on) have 6: D/F then 5, or 5 then D/F.
_PLATE_RE = (
    f"[{_PROVINCES}][A-HJ-NP-Z][·• ]?"
    r"(?:[A-HJ-NP-Z0-9]{4}[A-HJ-NP-Z0-9挂学警港澳]|[DF][A-HJ-NP-Z0-9][0-9]{4}|[0-9]{5}[DF])"
)
# Single surnames: the ~100 most common by the 2020 census plus the next few dozen.
SINGLE_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高郑梁谢宋唐许韩邓冯曹彭曾肖田董潘袁蔡蒋余于杜"
    "叶程魏苏吕丁任卢姚沈钟姜崔谭陆范汪廖石金韦贾夏付傅方邹熊白孟秦邱侯江尹薛闫阎段雷龙黎"
    "史陶贺毛郝顾龚邵万覃武钱戴严莫孔向常汤康易乔赖施洪辛柯庄樊殷牛葛温章鲁季芦聂欧邢包祝"
    "颜倪齐凌岳单童骆申"
)
COMPOUND_SURNAMES = (
    "欧阳",
    "司马",
    "上官",
    "诸葛",
    "东方",
    "皇甫",
    "尉迟",
    "公孙",
    "慕容",
    "长孙",
    "宇文",
    "司徒",
    "令狐",
    "夏侯",
    "独孤",
    "端木",
    "南宫",
    "西门",
    "轩辕",
    "呼延",
    "澹台",
    "百里",
    "东郭",
    "闻人",
    "万俟",
    "赫连",
    "申屠",
    "钟离",
    "公羊",
    "濮阳",
)
# Surname-like place and organisation names ("江陵路", "龙翔桥", "金家渡", "钱塘区") end in
# a place word that given names practically never end in: the last character of a
# name is any Han character but these.
PLACE_SUFFIXES = (
    "路街道站桥区县市镇村乡场园馆院校厂店局所处楼寺塔坊巷弄渡堡埠口湾岛庄坝塘湖港门州线号"
)
# CJK Unified Ideographs with Extension A, compatibility ideographs and Extensions B on.
_HAN_RANGES = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x3134F))


def _han_class(excluded: str) -> str:
    """An RE2 character class of Han characters without `excluded` (RE2 has no lookahead)."""
    cut = sorted({ord(c) for c in excluded})
    parts: list[str] = []
    for low, high in _HAN_RANGES:
        start = low
        for code in (c for c in cut if low <= c <= high):
            if start < code:
                parts.append(f"\\x{{{start:X}}}-\\x{{{code - 1:X}}}")
            start = code + 1
        if start <= high:
            parts.append(f"\\x{{{start:X}}}-\\x{{{high:X}}}")
    return "[" + "".join(parts) + "]"


_HAN = _han_class("")
_NAME_RE = (
    f"(?:{'|'.join(COMPOUND_SURNAMES)}|[{SINGLE_SURNAMES}])(?:{_HAN})?{_han_class(PLACE_SUFFIXES)}"
)

_PATTERNS: Mapping[str, str] = MappingProxyType(
    {
        ID_NUMBER: _ID_RE,
        MOBILE: _MOBILE_RE,
        BANK_CARD: _BANK_RE,
        EMAIL: _EMAIL_RE,
        PLATE: _PLATE_RE,
        PERSON_NAME: _NAME_RE,
    }
)


def _anchored(pattern: str) -> str:
    return rf"^\s*(?:{pattern})\s*$"


_ANCHORED: Mapping[str, str] = MappingProxyType({c: _anchored(p) for c, p in _PATTERNS.items()})
_ANY = _anchored("|".join(_PATTERNS[c] for c in CATEGORIES))
# Embedded numbers: digit boundaries on both sides, so that a longer digit run
# (an order number, a timestamp) does not count.
_EMBEDDED_ID = rf"(?:^|[^0-9])(?P<v>{_ID_RE})(?:[^0-9Xx]|$)"
_EMBEDDED_MOBILE = r"(?:^|[^0-9])(?:\+?86[- ]?)?1[3-9][0-9]{9}(?:[^0-9]|$)"
# Free text worth searching for embedded numbers: at least 11 ASCII characters (a mobile
# number has 11 digits) and either non-ASCII text around them ("联系电话138…") or more
# characters than the longest anchored pattern (19, a bank card number). Short ASCII
# values such as timestamps and codes are skipped; that keeps the search off most columns.
_EMBEDDED_MIN_ASCII = 11
# Byte lengths any anchored category can have: two Han characters or "a@b.cn" at least,
# an e-mail address (RFC 5321 §4.5.3.1.3: 256 octets) plus some padding at most.
_MIN_MATCH_BYTES = 6
_MAX_MATCH_BYTES = 320
_LONGEST_ANCHORED_CHARS = 19
# Numbers written for people: "138-1234-5678", "+86 138 1234 5678", "6222 0212 3456 7890
# 128", full-width "１３８１２３４５６７８". Such whole values are normalised (NFKC, then
# separators dropped) before matching, so formatting cannot lower a field's grade. Dots
# are not separators: "1390000000.0" is an amount, not a mobile number.
# At least one separator or full-width character: plain digit runs (most numeric
# columns) fail this in one DFA pass and skip the normalisation entirely.
_FORMATTED_NUMBER = (
    r"^[\s\-()+0-9０-９（）－＋]*[\s\-()０-９（）－＋][\s\-()+0-9０-９（）－＋]*[0-9０-９XxＸ]$"
)
_FORMATTED_MIN_BYTES = 11
_FORMATTED_MAX_BYTES = 120
_NUMBER_SEPARATORS = r"[\s\-()]"

# GB 11643-1999 (ISO 7064 MOD 11-2): weight of position i is 2^(17-i) mod 11.
_ID_WEIGHTS = np.array([pow(2, 17 - i, 11) for i in range(17)], dtype=np.int64)
_ID_CHECK = "10X98765432"
_ID_CHECK_BYTES = np.frombuffer(_ID_CHECK.encode(), dtype=np.uint8)

_NAME_HEADER_CJK = (
    "姓名",
    "名字",
    "持卡人",
    "联系人",
    "申请人",
    "负责人",
    "法定代表人",
    "法人代表",
    "经办人",
    "收件人",
    "寄件人",
    "乘客",
    "患者",
    "病人",
    "户主",
    "监护人",
    "投保人",
    "被保险人",
)
_NAME_HEADER_EXACT = frozenset({"name", "fullname", "realname", "xm", "xingming", "cardholder"})
_PERSON_ROLES = frozenset(
    {
        "holder",
        "cardholder",
        "patient",
        "customer",
        "client",
        "user",
        "contact",
        "owner",
        "person",
        "passenger",
        "driver",
        "applicant",
        "student",
        "teacher",
        "employee",
        "staff",
        "member",
        "resident",
        "citizen",
        "account",
        "real",
        "full",
        "first",
        "last",
        "given",
        "family",
        "legal",
        "guardian",
        "insured",
        "recipient",
        "sender",
        "consignee",
        "buyer",
        "seller",
        "doctor",
        "nurse",
    }
)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_TOKEN_SPLIT = re.compile(r"[^a-z0-9]+")


def is_name_header(header: str) -> bool:
    """Whether a column header names a person's name (姓名, holder_name, patientName, xm …)."""
    text = header.strip()
    if any(word in text for word in _NAME_HEADER_CJK):
        return True
    tokens = [t for t in _TOKEN_SPLIT.split(_CAMEL.sub("_", text).lower()) if t]
    if not tokens:
        return False
    if "".join(tokens) in _NAME_HEADER_EXACT:
        return True
    return tokens[-1] == "name" and len(tokens) >= 2 and tokens[-2] in _PERSON_ROLES


# --- check digits ------------------------------------------------------------------


def id_check_char(first17: str) -> str:
    """GB 11643-1999 check character for the first 17 digits of a resident ID number."""
    if len(first17) != 17 or not first17.isascii() or not first17.isdigit():
        raise ValueError("expected 17 ASCII digits")
    total = sum(int(d) * int(w) for d, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


def valid_id_number(value: str) -> bool:
    """Shape, region, birth-date shape and check digit of an 18-character resident ID number."""
    text = value.strip()
    if re.fullmatch(_ID_RE, text) is None:
        return False
    return id_check_char(text[:17]) == text[17].upper()


def luhn_valid(digits: str) -> bool:
    """Luhn (ISO/IEC 7812-1 Annex B) check over a string of ASCII digits."""
    if not digits or not digits.isascii() or not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _fixed_width(values: pa.Array, width: int) -> npt.NDArray[np.uint8]:
    """(n, width) uint8 view of a string array whose values are all `width` bytes long."""
    n = len(values)
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32)[
        values.offset : values.offset + n + 1
    ]
    data = np.frombuffer(values.buffers()[2], dtype=np.uint8)
    return data[offsets[0] : offsets[-1]].reshape(n, width)


def _lengths(values: pa.Array) -> npt.NDArray[np.int32]:
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32)
    return np.diff(offsets[values.offset : values.offset + len(values) + 1])


def _trimmed(values: pa.Array, width: int | None) -> pa.Array:
    """The values without surrounding whitespace (only computed when some have it)."""
    lengths = _lengths(values)
    if width is not None and bool((lengths == width).all()):
        return values
    return pc.utf8_trim_whitespace(values)


def _id_check_mask(values: pa.Array) -> npt.NDArray[np.bool_]:
    """Check-digit validity of values already matching the ID pattern (18 ASCII chars)."""
    if len(values) == 0:
        return np.zeros(0, dtype=bool)
    chars = _fixed_width(_trimmed(values, 18), 18)
    digits = chars[:, :17].astype(np.int64) - 48
    expected = _ID_CHECK_BYTES[(digits @ _ID_WEIGHTS) % 11]
    actual = chars[:, 17]
    # Lower-case x is a common entry variant of the check character X.
    return np.asarray((actual == expected) | ((expected == ord("X")) & (actual == ord("x"))))


def _luhn_mask(values: pa.Array) -> npt.NDArray[np.bool_]:
    """Luhn validity of values already matching the 16-19 digit pattern."""
    out = np.zeros(len(values), dtype=bool)
    if len(values) == 0:
        return out
    values = pc.utf8_trim_whitespace(values)
    lengths = _lengths(values)
    for width in np.unique(lengths):
        positions = np.flatnonzero(lengths == width)
        subset = values.take(pa.array(positions))
        digits = _fixed_width(subset, int(width)).astype(np.int64) - 48
        plain = digits[:, ::-1][:, 0::2].sum(axis=1)
        doubled = digits[:, ::-1][:, 1::2] * 2
        doubled -= 9 * (doubled > 9)
        out[positions] = (plain + doubled.sum(axis=1)) % 10 == 0
    return out


def _bools(mask: pa.Array) -> npt.NDArray[np.bool_]:
    """A pyarrow boolean array as numpy bools, nulls as False.

    Unpacks the bitmap directly: `to_numpy` is ~30x slower for booleans.
    """
    if mask.null_count:
        mask = mask.fill_null(False)
    bits = np.frombuffer(mask.buffers()[1], dtype=np.uint8)
    unpacked = np.unpackbits(bits, count=mask.offset + len(mask), bitorder="little")
    return unpacked[mask.offset :].view(np.bool_)


# --- rules and results ---------------------------------------------------------------


# Categories whose values never make a plausible column name.
_VALUE_ONLY = (ID_NUMBER, MOBILE, BANK_CARD, EMAIL, PLATE)


def value_like_cells(cells: Sequence[str]) -> list[tuple[int, str]]:
    """(1-based position, category) of cells that are sensitive values, not names.

    Used on a CSV's first line: a file without a header row would otherwise have its
    first record stored and shown as column names.
    """
    values = _normalise_formatted_numbers(pa.array(list(cells), type=pa.string()))
    found: list[tuple[int, str]] = []
    for category in _VALUE_ONLY:
        hit = _bools(pc.match_substring_regex(values, _ANCHORED[category]))
        for i in np.flatnonzero(hit):
            text = str(values[int(i)].as_py()).strip()
            if category == ID_NUMBER and not valid_id_number(text):
                continue
            if category == BANK_CARD and not luhn_valid(text):
                continue
            found.append((int(i) + 1, category))
    return sorted(set(found))


def _normalise_formatted_numbers(values: pa.Array) -> pa.Array:
    """Values that are numbers with separators or full-width digits, as plain digits."""
    lengths = _lengths(values)
    fits = (lengths >= _FORMATTED_MIN_BYTES) & (lengths <= _FORMATTED_MAX_BYTES)
    if not fits.any():
        return values
    formatted = _bools(pc.match_substring_regex(values, _FORMATTED_NUMBER)) & fits
    if not formatted.any():
        return values
    formatted = pa.array(formatted)
    subset = values.filter(formatted)
    plain = pc.replace_substring_regex(pc.utf8_normalize(subset, "NFKC"), _NUMBER_SEPARATORS, "")
    changed = pc.not_equal(plain, subset)
    if not pc.any(changed).as_py():
        return values
    return pc.replace_with_mask(values, formatted, plain)


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
    category graded the field under the rules in force.
    """

    hits: int
    ratio: float
    embedded: int = 0
    counted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "hits": self.hits,
            "ratio": self.ratio,
            "embedded": self.embedded,
            "counted": self.counted,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CategoryHit:
        return cls(
            hits=int(data["hits"]),
            ratio=float(data["ratio"]),
            embedded=int(data.get("embedded", 0)),
            counted=bool(data.get("counted", False)),
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

    def order(self) -> list[str]:
        """Categories to try, most matched in the last batch first; ID always before bank card."""
        fixed = {c: i for i, c in enumerate(CATEGORIES)}
        order = sorted(CATEGORIES, key=lambda c: (-self.last_batch[c], fixed[c]))
        if order.index(BANK_CARD) < order.index(ID_NUMBER):
            order.remove(ID_NUMBER)
            order.insert(order.index(BANK_CARD), ID_NUMBER)
        return order


class SensitivityScanner:
    """Feed record batches (all-string columns, in header order), then read `result()`."""

    def __init__(self, columns: Sequence[str], rules: ScanRules | None = None) -> None:
        self._columns = [_Column(name) for name in columns]
        self._rules = rules if rules is not None else ScanRules()
        self._rows = 0

    def feed(self, batch: pa.RecordBatch) -> None:
        if batch.num_columns != len(self._columns):
            raise ValueError(
                f"batch has {batch.num_columns} columns; the scanner has {len(self._columns)}"
            )
        self._rows += batch.num_rows
        for state, values in zip(self._columns, batch.columns, strict=True):
            if values.type != pa.string():
                values = values.cast(pa.string())
            if values.null_count:
                values = values.fill_null("")
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
                )
                for c in CATEGORIES
                if col.hits[c]
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

"""Sensitivity detectors: category patterns (RE2), check digits, header semantics, header cells.

The building blocks `exchange.scan` runs over record batches: one anchored RE2
alternation of every category, per-category patterns, embedded-number patterns for
free text, GB 11643-1999 and Luhn check digits over raw UTF-8 bytes with numpy, and
the checks on column names (a first line of values; a name that holds a value).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from types import MappingProxyType

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from exchange.levels import Level

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


# --- values inside column names ------------------------------------------------------

# A detected value in a column name is replaced by its category in these brackets, so
# that the name can be stored, listed and quoted in errors without the value; the
# scanner grades a field whose name holds one (就高从严), whatever its values hold.
NAME_PLACEHOLDER = "〔{}〕"
_PLACEHOLDER_RE = re.compile("〔(" + "|".join(map(re.escape, CATEGORIES)) + ")〕")
# Embedded in other text (digit boundaries, as `_EMBEDDED_ID`), tested in this order,
# each category's matches masked before the next looks (an ID number holds no mobile).
_NAME_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (ID_NUMBER, re.compile(rf"(?<![0-9])(?:{_ID_RE})(?![0-9Xx])")),
    (BANK_CARD, re.compile(rf"(?<![0-9])(?:{_BANK_RE})(?![0-9])")),
    (MOBILE, re.compile(rf"(?<![0-9])(?:{_MOBILE_RE})(?![0-9])")),
    (EMAIL, re.compile(_EMAIL_RE)),
    (PLATE, re.compile(_PLATE_RE)),
)
_NAME_SEPARATORS = re.compile(r"[\s\-()]")


def _valid_in_name(category: str, text: str) -> bool:
    if category == ID_NUMBER:
        return valid_id_number(text)
    if category == BANK_CARD:
        return luhn_valid(text)
    return True


def _mask_values(text: str) -> tuple[str, list[str]]:
    found: list[str] = []
    for category, pattern in _NAME_PATTERNS:

        def mask(match: re.Match[str], category: str = category) -> str:
            if not _valid_in_name(category, match.group(0)):
                return match.group(0)
            found.append(category)
            return NAME_PLACEHOLDER.format(category)

        text = pattern.sub(mask, text)
    return text, found


def mask_column_name(name: str) -> str:
    """`name` with every ID, bank card, mobile, e-mail or plate number in it masked.

    Formatting does not hide a value: full-width digits are normalised (NFKC) and a
    value still found once separators are dropped ("138 1234 5678") withholds the
    whole name but its category.
    """
    text = unicodedata.normalize("NFKC", name)
    masked, found = _mask_values(text)
    _, hidden = _mask_values(_NAME_SEPARATORS.sub("", masked))
    if hidden:
        return "".join(NAME_PLACEHOLDER.format(c) for c in dict.fromkeys(found + hidden))
    return masked if found else name


def column_name_categories(name: str) -> list[str]:
    """Categories a (masked) column name holds: its placeholders and any value left in it."""
    found = _PLACEHOLDER_RE.findall(name)
    _, left = _mask_values(_NAME_SEPARATORS.sub("", unicodedata.normalize("NFKC", name)))
    return list(dict.fromkeys(found + left))

"""Canonical JSON (RFC 8785, JCS): the exact bytes the ledger hashes and signs."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any, Final

from ledger.errors import CanonicalJsonError

__all__ = ["MAX_SAFE_INTEGER", "canonical_json"]

# RFC 8785 3.2.2.3 / I-JSON (RFC 7493 2.2): numbers are IEEE 754 doubles, so an integer
# is only exact up to 2**53 - 1 ("Number.MAX_SAFE_INTEGER"). Larger ones are refused
# rather than silently rounded (JCS would print the nearest double, not the integer).
MAX_SAFE_INTEGER: Final = 2**53 - 1

# RFC 8785 3.2.2.2: escape only '"', '\' and U+0000..U+001F; the five with short forms
# use them, the rest become \u00xx with lowercase hex. Everything else is raw UTF-8.
_ESCAPE_RE: Final = re.compile(r'[\x00-\x1f"\\]')
_ESCAPES: Final[dict[str, str]] = {chr(c): f"\\u{c:04x}" for c in range(0x20)}
_ESCAPES.update({"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"})
_ESCAPES.update({'"': '\\"', "\\": "\\\\"})

# The fast path. CPython's C encoder with these settings escapes strings exactly as
# JCS does (same set, short forms, lowercase \u00xx, raw non-ASCII), prints ints in
# plain decimal and sorts keys by code point, which equals UTF-16 code-unit order for
# ASCII keys. It differs from JCS only for floats (repr, not ECMAScript), big ints and
# non-ASCII keys, which the fast path therefore refuses (tests check the equivalence).
_FAST_ENCODER: Final = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
)
_FAST_SCALARS: Final = frozenset({str, bool, type(None)})


def canonical_json(value: object) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of `value`.

    Accepts `None`, `bool`, `int` (|n| <= 2**53 - 1), finite `float`, `str`, mappings
    with `str` keys, and lists/tuples of those. Raises `CanonicalJsonError` for
    anything else: NaN or infinities, larger integers, lone surrogates, non-`str`
    keys, other types, or cyclic/too deeply nested structures.
    """
    if type(value) is dict and _fast_path_ok(value):
        try:
            return _FAST_ENCODER.encode(value).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise CanonicalJsonError("string contains a lone surrogate") from exc
    return _encode_general(value)


def _fast_path_ok(value: dict[Any, Any]) -> bool:
    for key, item in value.items():
        if type(key) is not str or not key.isascii():
            return False
        if type(item) in _FAST_SCALARS:
            continue
        if type(item) is int and -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
            continue
        return False
    return True


def _encode_general(value: object) -> bytes:
    """The reference encoder, used for everything the fast path does not take."""
    parts: list[str] = []
    try:
        _emit(value, parts)
        return "".join(parts).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CanonicalJsonError("string contains a lone surrogate") from exc
    except RecursionError as exc:
        raise CanonicalJsonError("value is nested too deeply or is cyclic") from exc


MAX_DEPTH = 512
"""Nesting refused beyond this, whatever the interpreter's recursion limit (py-evm raises it
to 12,288 when the embedded chain is loaded, and a cycle would then exhaust the C stack)."""


def _emit(value: object, out: list[str], depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise CanonicalJsonError("value is nested too deeply or is cyclic")
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, int):
        if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            raise CanonicalJsonError(
                "integer outside the I-JSON exact range (|n| <= 2**53 - 1)", value=str(value)
            )
        out.append(str(int(value)))
    elif isinstance(value, float):
        out.append(_number(value))
    elif isinstance(value, Mapping):
        _emit_object(value, out, depth)
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _emit(item, out, depth + 1)
        out.append("]")
    else:
        raise CanonicalJsonError(
            f"type {type(value).__name__} has no JSON form", type=type(value).__name__
        )


def _emit_object(value: Mapping[object, object], out: list[str], depth: int) -> None:
    keys: list[str] = []
    for key in value:
        if not isinstance(key, str):
            raise CanonicalJsonError(
                f"object key of type {type(key).__name__}; JSON keys are strings",
                type=type(key).__name__,
            )
        keys.append(key)
    # RFC 8785 3.2.3: sort by the keys' UTF-16 code units, compared as unsigned
    # integers; big-endian UTF-16 bytes compare the same way. Code-point order agrees
    # unless a key mixes U+E000..U+FFFF with astral characters, so ASCII skips it.
    if all(key.isascii() for key in keys):
        keys.sort()
    else:
        try:
            keys.sort(key=_utf16_key)
        except UnicodeEncodeError as exc:
            raise CanonicalJsonError("object key contains a lone surrogate") from exc
    out.append("{")
    for i, key in enumerate(keys):
        if i:
            out.append(",")
        out.append(_string(key))
        out.append(":")
        _emit(value[key], out, depth + 1)
    out.append("}")


def _utf16_key(key: str) -> bytes:
    return key.encode("utf-16-be")


def _string(value: str) -> str:
    return '"' + _ESCAPE_RE.sub(_escape_match, value) + '"'


def _escape_match(match: re.Match[str]) -> str:
    return _ESCAPES[match.group()]


def _number(value: float) -> str:
    """ECMA-262 Number::toString(value) for a finite double (RFC 8785 3.2.2.3)."""
    if math.isnan(value) or math.isinf(value):
        raise CanonicalJsonError("NaN and Infinity have no JSON form", value=repr(value))
    if value == 0:
        return "0"  # also -0 (ECMA-262 Number::toString step 2)
    if value < 0:
        return "-" + _number(-value)
    # repr() is the shortest decimal that round-trips, nearest to the value when there
    # is a choice: the digits s and exponent that ECMA-262 Number::toString step 5 asks
    # for (with Note 2's tie-breaking). Only the layout below is ECMAScript's own.
    text = repr(float(value))
    mantissa, _, exp_text = text.partition("e")
    int_part, _, frac_part = mantissa.partition(".")
    digits = (int_part + frac_part).lstrip("0")
    exponent = (int(exp_text) if exp_text else 0) - len(frac_part)
    stripped = digits.rstrip("0")
    exponent += len(digits) - len(stripped)
    digits = stripped
    # value = digits * 10**exponent = 0.digits * 10**n, k significant digits
    k = len(digits)
    n = exponent + k
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * (-n) + digits
    e = n - 1
    sign = "+" if e >= 0 else "-"
    head = digits if k == 1 else digits[0] + "." + digits[1:]
    return f"{head}e{sign}{abs(e)}"

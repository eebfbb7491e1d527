"""RFC 8785 canonical JSON and the `sha256:` digests the market signs (stdlib only)."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["canonical_json", "digest_of"]

_MAX_SAFE_INTEGER = 2**53 - 1
_ESCAPE_RE = re.compile(r'[\x00-\x1f"\\]')
_ESCAPES = {chr(c): f"\\u{c:04x}" for c in range(0x20)}
_ESCAPES.update({"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"})
_ESCAPES.update({'"': '\\"', "\\": "\\\\"})


def _string(value: str) -> str:
    return '"' + _ESCAPE_RE.sub(lambda m: _ESCAPES[m.group()], value) + '"'


def _number(value: float) -> str:
    """ECMA-262 Number::toString for a finite double (RFC 8785 section 3.2.2.3)."""
    if math.isnan(value) or math.isinf(value):
        raise ValueError("NaN and Infinity have no JSON form")
    if value == 0:
        return "0"
    if value < 0:
        return "-" + _number(-value)
    mantissa, _, exp_text = repr(float(value)).partition("e")
    int_part, _, frac_part = mantissa.partition(".")
    digits = (int_part + frac_part).lstrip("0")
    exponent = (int(exp_text) if exp_text else 0) - len(frac_part)
    stripped = digits.rstrip("0")
    exponent += len(digits) - len(stripped)
    digits = stripped
    k = len(digits)
    n = exponent + k
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * (-n) + digits
    e = n - 1
    head = digits if k == 1 else digits[0] + "." + digits[1:]
    return f"{head}e{'+' if e >= 0 else '-'}{abs(e)}"


def _emit(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True or value is False:
        out.append("true" if value else "false")
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, int):
        if not -_MAX_SAFE_INTEGER <= value <= _MAX_SAFE_INTEGER:
            raise ValueError("integer outside the I-JSON exact range")
        out.append(str(int(value)))
    elif isinstance(value, float):
        out.append(_number(value))
    elif isinstance(value, Mapping):
        keys = sorted(value, key=lambda k: str(k).encode("utf-16-be"))
        out.append("{")
        for i, key in enumerate(keys):
            if not isinstance(key, str):
                raise ValueError("JSON object keys are strings")
            out.append(("," if i else "") + _string(key) + ":")
            _emit(value[key], out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _emit(item, out)
        out.append("]")
    else:
        raise ValueError(f"type {type(value).__name__} has no JSON form")


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 (JCS) UTF-8 bytes of `value`, as the platform hashes and signs them."""
    out: list[str] = []
    _emit(value, out)
    return "".join(out).encode("utf-8")


def digest_of(document: Any) -> str:
    """`sha256:<hex>` of the document's canonical JSON (an agreement, a certificate)."""
    return "sha256:" + hashlib.sha256(canonical_json(document)).hexdigest()

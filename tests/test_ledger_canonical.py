"""Tests for ledger.canonical: RFC 8785 vectors, rejections, and the fast path's equivalence."""

from __future__ import annotations

import enum
import json
import math
import random
import struct
import sys
from collections import OrderedDict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ledger.canonical import MAX_SAFE_INTEGER, _encode_general, _fast_path_ok, canonical_json
from ledger.errors import CanonicalJsonError, LedgerError

VECTORS = Path(__file__).parent / "vectors"
NUMBERS = json.loads((VECTORS / "rfc8785_numbers.json").read_text())
EXAMPLES = json.loads((VECTORS / "rfc8785_examples.json").read_text())


def _double(bits: str) -> float:
    value: float = struct.unpack(">d", int(bits, 16).to_bytes(8, "big"))[0]
    return value


@pytest.mark.parametrize(
    "case",
    NUMBERS["numbers"] + NUMBERS["es6testfile_samples"]["numbers"],
    ids=lambda c: c["ieee754"],
)
def test_rfc8785_appendix_b_numbers(case: dict[str, str]) -> None:
    value = _double(case["ieee754"])
    assert canonical_json(value) == case["expected"].encode()
    # the same inside a container (general path) and a dict (fast path refuses floats)
    assert canonical_json([value]) == b"[" + case["expected"].encode() + b"]"
    assert canonical_json({"n": value}) == b'{"n":' + case["expected"].encode() + b"}"


@pytest.mark.parametrize("case", NUMBERS["invalid"], ids=lambda c: c["comment"])
def test_rfc8785_nan_and_infinity_are_refused(case: dict[str, str]) -> None:
    with pytest.raises(CanonicalJsonError):
        canonical_json(_double(case["ieee754"]))
    with pytest.raises(CanonicalJsonError):
        canonical_json({"n": -_double(case["ieee754"])})


@pytest.mark.parametrize("case", EXAMPLES["examples"], ids=lambda c: c["name"])
def test_rfc8785_examples(case: dict[str, str]) -> None:
    value = json.loads(case["input"])
    if "expected_hex" in case:
        expected = bytes.fromhex(case["expected_hex"].replace(" ", ""))
    else:
        expected = case["expected"].encode("utf-8")
    assert canonical_json(value) == expected
    assert _encode_general(value) == expected
    # canonical form is a fixed point
    assert canonical_json(json.loads(expected)) == expected


def test_sorting_uses_utf16_code_units_not_code_points() -> None:
    # U+FB33 sorts after U+1F600 in UTF-16 (0xFB33 > 0xD83D) but before it by code point.
    value = {"\ufb33": 1, "\U0001f600": 2}
    assert canonical_json(value) == '{"\U0001f600":2,"\ufb33":1}'.encode()


def test_escaping() -> None:
    value = "".join(chr(c) for c in range(0x20)) + '"\\/\x7f\u2028\u00e9'
    expected = (
        '"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r'
        "\\u000e\\u000f\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018"
        '\\u0019\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f\\"\\\\/\x7f\u2028\u00e9"'
    )
    assert canonical_json(value) == expected.encode()
    assert canonical_json({"k": value}) == b'{"k":' + expected.encode() + b"}"


def test_integers() -> None:
    assert canonical_json(MAX_SAFE_INTEGER) == b"9007199254740991"
    assert canonical_json(-MAX_SAFE_INTEGER) == b"-9007199254740991"
    assert canonical_json({"a": MAX_SAFE_INTEGER, "b": 0, "c": -1}) == (
        b'{"a":9007199254740991,"b":0,"c":-1}'
    )
    for bad in (MAX_SAFE_INTEGER + 1, -MAX_SAFE_INTEGER - 1, 10**30):
        with pytest.raises(CanonicalJsonError):
            canonical_json(bad)
        with pytest.raises(CanonicalJsonError):
            canonical_json({"n": bad})
        with pytest.raises(CanonicalJsonError):
            canonical_json([bad])


def test_literals_and_containers() -> None:
    assert canonical_json(None) == b"null"
    assert canonical_json(True) == b"true"
    assert canonical_json({"t": True, "f": False, "n": None}) == b'{"f":false,"n":null,"t":true}'
    assert canonical_json([]) == b"[]"
    assert canonical_json({}) == b"{}"
    assert canonical_json((1, "a")) == b'[1,"a"]'
    assert canonical_json(OrderedDict([("b", 1), ("a", 2)])) == b'{"a":2,"b":1}'
    assert canonical_json({"x": {"b": [1, {"d": 1, "c": 2}], "a": 1.5}}) == (
        b'{"x":{"a":1.5,"b":[1,{"c":2,"d":1}]}}'
    )


def test_int_and_str_subclasses_use_their_values() -> None:
    class Colour(enum.IntEnum):
        RED = 3

    class Name(str):
        pass

    assert canonical_json({"c": Colour.RED, "n": Name("x")}) == b'{"c":3,"n":"x"}'


@pytest.mark.parametrize(
    "value",
    [
        "\ud800",
        {"k": "a\udfffb"},
        {"\ud83d": 1},
        ["\ude00"],
        {"\u00e9\ud800": 1, "\u00e8": 2},
    ],
)
def test_lone_surrogates_are_refused(value: object) -> None:
    with pytest.raises(CanonicalJsonError):
        canonical_json(value)


@pytest.mark.parametrize(
    "value",
    [
        {1: "a"},
        {("a",): 1},
        {None: 1},
        b"bytes",
        {"b": b"x"},
        {1, 2},
        Decimal("1.5"),
        object(),
        {"f": float("nan")},
        {"nested": {"x": float("inf")}},
    ],
)
def test_unsupported_values_are_refused(value: object) -> None:
    with pytest.raises(CanonicalJsonError) as info:
        canonical_json(value)
    assert isinstance(info.value, LedgerError)
    assert info.value.code == "ledger-canonical-json"


def test_cycles_are_refused() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(CanonicalJsonError):
        canonical_json(loop)
    deep: dict[str, Any] = {"a": None}
    cur = deep
    for _ in range(5000):
        cur["a"] = {"a": None}
        cur = cur["a"]
    with pytest.raises(CanonicalJsonError):
        canonical_json(deep)


def _random_string(rng: random.Random) -> str:
    pools = [
        "abcxyzABC019 _-/.:",
        "".join(chr(c) for c in range(0x20)) + '"\\\x7f',
        "\u00e9\u00f6\u20ac\u2028\u2029\ufb33\ufeff\uffff",
        "\U0001f600\U0001f602\U00010000\U0010ffff",
    ]
    return "".join(rng.choice(rng.choice(pools)) for _ in range(rng.randrange(0, 12)))


def _random_scalar(rng: random.Random) -> object:
    kind = rng.randrange(6)
    if kind == 0:
        return _random_string(rng)
    if kind == 1:
        return rng.choice([0, 1, -1, MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER, 2**31, -(2**63)])
    if kind == 2:
        return rng.randrange(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER + 1)
    if kind == 3:
        return rng.choice([True, False])
    if kind == 4:
        return None
    return rng.randrange(-1000, 1000)


def test_fast_path_equals_general_path() -> None:
    """json.dumps(sort_keys, separators, ensure_ascii=False) is JCS for flat ASCII-keyed dicts."""
    rng = random.Random(8785)
    key_chars = "".join(chr(c) for c in range(0x80))  # every ASCII char, controls included
    taken = 0
    for _ in range(3000):
        value = {
            "".join(rng.choice(key_chars) for _ in range(rng.randrange(0, 6))): _random_scalar(rng)
            for _ in range(rng.randrange(0, 12))
        }
        if _fast_path_ok(value):
            taken += 1
            try:
                general = _encode_general(value)
            except CanonicalJsonError:
                continue  # -(2**63) and friends: both paths must refuse
            assert canonical_json(value) == general
    assert taken > 2000


def test_fast_path_refuses_what_it_cannot_encode() -> None:
    assert _fast_path_ok({"a": "x", "b": 1, "c": None, "d": True})
    assert not _fast_path_ok({"a": 1.0})
    assert not _fast_path_ok({"a": MAX_SAFE_INTEGER + 1})
    assert not _fast_path_ok({"\u00e9": 1})
    assert not _fast_path_ok({"a": [1]})
    assert not _fast_path_ok({"a": {}})
    assert not _fast_path_ok({1: 1})


def test_random_doubles_round_trip_and_follow_es6_layout() -> None:
    rng = random.Random(9)
    for _ in range(20000):
        bits = rng.getrandbits(64)
        value = _double(f"{bits:016x}")
        if not math.isfinite(value):
            continue
        text = canonical_json(value).decode()
        assert float(text) == value
        assert text == text.strip()
        mantissa = text.lstrip("-").split("e")[0]
        if "e" in text:
            # exponent form only outside [1e-7, 1e21)
            assert abs(value) >= 1e21 or abs(value) < 1e-6
            assert mantissa[0] != "0" and (len(mantissa) == 1 or mantissa[1] == ".")
            assert "e+" in text or "e-" in text
        else:
            assert 1e-6 <= abs(value) < 1e21 or value == 0
        assert not mantissa.endswith(".") and not (("." in mantissa) and mantissa.endswith("0"))


def test_depth_is_refused_whatever_the_recursion_limit() -> None:
    # py-evm (the embedded anchoring chain) raises the limit to 12,288 when it is imported.
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(12_288)
    try:
        deep: dict[str, Any] = {"a": None}
        cur = deep
        for _ in range(5000):
            cur["a"] = {"a": None}
            cur = cur["a"]
        with pytest.raises(CanonicalJsonError):
            canonical_json(deep)
    finally:
        sys.setrecursionlimit(previous)

"""Tests for crypto.digest: SM3 (GB/T 32905-2016) and SHA-256 vectors, incremental use."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from crypto import ContentDigest, sha256, sm3

VECTORS = Path(__file__).parent / "vectors"


def _load(name: str) -> list[dict[str, Any]]:
    tests: list[dict[str, Any]] = json.loads((VECTORS / name).read_text())["tests"]
    return tests


def _message(case: dict[str, Any]) -> bytes:
    return bytes(case["message_ascii"], "ascii") * int(case["repeat"])


SM3_CASES = _load("sm3_gbt32905.json")
SHA256_CASES = _load("sha256_nist.json")


@pytest.mark.parametrize("case", SM3_CASES, ids=[c["name"] for c in SM3_CASES])
def test_sm3_vectors(case: dict[str, Any]) -> None:
    assert sm3(_message(case)).hex() == case["digest"]


@pytest.mark.parametrize("case", SHA256_CASES, ids=[c["name"] for c in SHA256_CASES])
def test_sha256_vectors(case: dict[str, Any]) -> None:
    assert sha256(_message(case)).hex() == case["digest"]


def _expected(message: bytes) -> dict[str, str]:
    for case in SM3_CASES:
        if _message(case) == message:
            sm3_hex = case["digest"]
            break
    else:
        raise AssertionError("no SM3 vector for this message")
    for case in SHA256_CASES:
        if _message(case) == message:
            return {"sha256": case["digest"], "sm3": sm3_hex}
    raise AssertionError("no SHA-256 vector for this message")


@pytest.mark.parametrize("split", [0, 1, 2, 3])
def test_content_digest_matches_vectors_whatever_the_split(split: int) -> None:
    digest = ContentDigest()
    digest.update(b"abc"[:split])
    digest.update(memoryview(b"abc")[split:])
    assert digest.hexdigests() == _expected(b"abc")


def test_content_digest_of_nothing() -> None:
    assert ContentDigest().hexdigests() == {
        "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "sm3": "1ab21d8355cfa17f8e61194831e81a8f22bec8c728fefb747ed035eb5082aa2b",
    }


def test_content_digest_many_small_updates_equal_one_shot() -> None:
    data = bytes(range(256)) * 1000
    digest = ContentDigest()
    for start in range(0, len(data), 997):
        digest.update(memoryview(data)[start : start + 997])
    assert digest.hexdigests() == {"sha256": sha256(data).hex(), "sm3": sm3(data).hex()}


def test_hexdigests_does_not_end_the_stream() -> None:
    digest = ContentDigest()
    digest.update(b"ab")
    partial = digest.hexdigests()
    digest.update(b"c")
    assert partial == {"sha256": sha256(b"ab").hex(), "sm3": sm3(b"ab").hex()}
    assert digest.hexdigests() == _expected(b"abc")
    assert digest.hexdigests() == _expected(b"abc")


def test_accepts_bytearray_and_non_byte_memoryview() -> None:
    digest = ContentDigest()
    digest.update(bytearray(b"a"))
    digest.update(memoryview(b"bc\x00\x00").cast("I"))
    expected = b"abc\x00\x00"
    assert digest.hexdigests() == {"sha256": sha256(expected).hex(), "sm3": sm3(expected).hex()}

"""Identifier normalisation: formatting differences join, invalid identifiers do not (issue 18)."""

from __future__ import annotations

import pytest

from sandbox.identifiers import (
    IdKind,
    JobDomain,
    id_check_char,
    normalise_email,
    normalise_id_number,
    normalise_phone,
)

# GB 11643-1999 example number (the standard's own worked example ends in X)
ID = "11010519491231002X"


def test_id_check_character_follows_gb11643() -> None:
    assert id_check_char(ID[:17]) == "X"
    assert normalise_id_number(ID) == ID


@pytest.mark.parametrize(
    "raw",
    [
        "11010519491231002x",
        " 110105 19491231 002X ",
        "110105-19491231-002x",
        "１１０１０５１９４９１２３１００２ｘ",  # full-width digits and letter
        "110105491231002",  # 15-digit pre-1999 form
    ],
)
def test_id_number_variants_normalise_to_one_form(raw: str) -> None:
    assert normalise_id_number(raw) == ID


@pytest.mark.parametrize("raw", ["110105194912310021", "1101051949123100", "11010519491231002Y"])
def test_invalid_id_numbers_are_dropped(raw: str) -> None:
    assert normalise_id_number(raw) is None


@pytest.mark.parametrize(
    "raw",
    [
        "13812345678",
        "+86 138 1234 5678",
        "0086-138-1234-5678",
        "8613812345678",
        "138-1234-5678",
        "＋８６ １３８１２３４５６７８",
    ],
)
def test_mobile_variants(raw: str) -> None:
    assert normalise_phone(raw) == "13812345678"


def test_landlines_and_foreign_numbers() -> None:
    assert normalise_phone("010-1234 5678") == "01012345678"
    assert normalise_phone("+86 10 1234 5678") == "01012345678"
    assert normalise_phone("+44 20 7946 0958") == "+442079460958"
    assert normalise_phone("12345") is None
    assert normalise_phone("call me") is None


def test_email() -> None:
    assert normalise_email("  Zhang.San@Example.COM ") == "zhang.san@example.com"
    assert normalise_email("ｚｈａｎｇ＠ｅｘａｍｐｌｅ．ｃｎ") == "zhang@example.cn"
    assert normalise_email("no-at-sign") is None
    assert normalise_email("a@b@c") is None


def test_job_domain_is_keyed_and_per_job() -> None:
    d1 = JobDomain("job-1", b"\x01" * 32)
    d2 = JobDomain("job-2", b"\x01" * 32)
    d3 = JobDomain("job-1", b"\x02" * 32)
    m = d1.message(IdKind.PHONE, "13812345678")
    assert len(m) == 32
    assert m != d2.message(IdKind.PHONE, "13812345678")
    assert m != d3.message(IdKind.PHONE, "13812345678")
    assert m != d1.message(IdKind.EMAIL, "13812345678")  # kinds never collide
    assert d1.dst != d2.dst and len(d1.dst) <= 255
    assert list(d1.messages("phone", ["+86 138-1234-5678", "bad"])) == [m, None]
    with pytest.raises(ValueError):
        JobDomain("job", b"short")

"""Synthetic preview: profiles hold shapes only; synthesized rows keep shapes, never values."""

from __future__ import annotations

import csv
import io
import json
import math
import random
from pathlib import Path

import pyarrow as pa
import pytest

from exchange.csvstream import iter_batches
from exchange.scan import (
    ScanResult,
    SensitivityScanner,
    id_check_char,
    is_name_header,
    luhn_valid,
    valid_id_number,
)
from exchange.synth import ShapeProfile, ShapeProfiler, shape_of, synthesize

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "transit_trips.csv"
ROWS = 400


def profile_and_scan(data: bytes, sample: int = 500) -> tuple[ShapeProfile, ScanResult]:
    stream = iter_batches(io.BytesIO(data), block_size=128 << 10)
    scanner = SensitivityScanner(stream.columns)
    profiler = ShapeProfiler(stream.columns, sample=sample)
    for batch in stream:
        scanner.feed(batch)
        profiler.feed(batch)
    return profiler.profile(), scanner.result()


@pytest.fixture(scope="module")
def example() -> tuple[ShapeProfile, ScanResult, list[dict[str, str]]]:
    data = EXAMPLE.read_bytes()
    profile, scan = profile_and_scan(data)
    source = list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))
    return profile, scan, source


def mask_space(mask: str) -> float:
    """How many different values a mask can produce (Han positions: at least 100 choices)."""
    choices = {"9": 10, "A": 26, "a": 26, "H": 100}
    return math.prod(choices.get(ch, 1) for ch in mask)


@pytest.mark.parametrize(
    ("value", "mask"),
    [
        ("13812345678", "99999999999"),
        ("浙A·12345", "HA·99999"),
        ("Zhang.San@qq.com", "Aaaaa.Aaa@aa.aaa"),
        ("2026-04-03 23:05", "9999-99-99 99:99"),
        ("张伟，电话", "HH，HH"),
        ("Ærø ５", "aaa 9"),
        ("", ""),
    ],
)
def test_shape_of(value: str, mask: str) -> None:
    assert shape_of(value) == mask


def test_profile_holds_no_values(
    example: tuple[ShapeProfile, ScanResult, list[dict[str, str]]],
) -> None:
    profile, _, source = example
    text = json.dumps(profile.to_dict(), ensure_ascii=False)
    values = {v for row in source for v in row.values() if len(v) >= 2}
    leaked = [v for v in values if v in text]
    assert leaked == []
    assert profile.rows == 10000
    assert ShapeProfile.from_dict(json.loads(text)) == profile
    for column in profile.columns:
        assert len(column.masks) <= 8
        assert sum(w for _, w in column.masks) == pytest.approx(1.0)
        assert column.sampled == 500 or column.name == "remarks"


def test_profile_counts_empties_over_all_rows() -> None:
    data = b"a,b\n" + b"1,\n" * 900 + b"2,x\n" * 100
    profile, _ = profile_and_scan(data, sample=10)
    a, b = profile.columns
    assert a.empty_ratio == 0.0
    assert b.empty_ratio == pytest.approx(0.9)
    assert b.masks == [("a", 1.0)]
    assert b.sampled == 10
    assert a.masks == [("9", 1.0)]


def test_no_synthesized_value_is_a_source_value(
    example: tuple[ShapeProfile, ScanResult, list[dict[str, str]]],
) -> None:
    profile, scan, source = example
    rows = synthesize(profile, scan, ROWS, seed=11)
    assert len(rows) == ROWS
    by_column = {c: {row[c] for row in source} for c in source[0]}
    checked = 0
    for shape in profile.columns:
        # A one-digit fare can only be 0-9: such tiny shapes collide by chance, which
        # reveals nothing. Every other column must not repeat a single source value.
        if all(mask_space(m) < 1e4 for m, _ in shape.masks):
            continue
        synthetic = {row[shape.name] for row in rows} - {""}
        assert synthetic, shape.name
        assert not synthetic & by_column[shape.name], shape.name
        checked += 1
    assert checked >= 11


def test_shapes_match_the_profile(
    example: tuple[ShapeProfile, ScanResult, list[dict[str, str]]],
) -> None:
    profile, scan, _ = example
    rows = synthesize(profile, scan, ROWS, seed=3)
    assert all(list(row) == [c.name for c in profile.columns] for row in rows)
    generic = ["trip_id", "card_no", "board_station", "board_time", "line", "district"]
    for shape in profile.columns:
        if shape.name not in generic:
            continue
        masks = {m for m, _ in shape.masks}
        assert {shape_of(row[shape.name]) for row in rows} <= masks, shape.name
    mobiles = [row["mobile"] for row in rows]
    empty = mobiles.count("")
    assert 0.03 < empty / ROWS < 0.2  # the source has ~10 % missing mobiles


def test_sensitive_columns_are_valid_but_impossible(
    example: tuple[ShapeProfile, ScanResult, list[dict[str, str]]],
) -> None:
    profile, scan, _ = example
    rows = synthesize(profile, scan, ROWS, seed=5)
    for row in rows:
        ident = row["id_number"]
        assert len(ident) == 18 and ident.startswith("99")
        assert ident[17] in "0123456789X"
        # A right check digit, but region 99 is no province: valid_id_number refuses it.
        assert id_check_char(ident[:17]) == ident[17]
        assert not valid_id_number(ident)
        assert row["mobile"] in ("",) or row["mobile"].startswith("1990000")
        name = row["holder_name"]
        assert "某" in name and 2 <= len(name) <= 4
    assert is_name_header("holder_name")


def test_category_generators_round_trip_through_the_scanner() -> None:
    source = {
        "card": ["6228480402564890018", "4111111111111111"] * 20,
        "mail": ["zhang.san@example.com", "li@mail.gov.cn"] * 20,
        "plate": ["浙A12345", "京B88888"] * 20,
        "phone": ["13812345678", "13912345678"] * 20,
    }
    names = list(source)
    batch = pa.RecordBatch.from_arrays([pa.array(source[n]) for n in names], names=names)
    scanner = SensitivityScanner(names)
    profiler = ShapeProfiler(names)
    scanner.feed(batch)
    profiler.feed(batch)
    rows = synthesize(profiler.profile(), scanner.result(), 50, seed=9)
    for row in rows:
        assert luhn_valid(row["card"]) and row["card"].startswith("622848000000")
        assert row["mail"].endswith("@example.invalid")
        assert row["phone"].startswith("1990000") and len(row["phone"]) == 11
    # The preview still looks like what it replaces: the scanner finds the same categories.
    names_out = list(rows[0])
    out = pa.RecordBatch.from_arrays(
        [pa.array([r[n] for r in rows]) for n in names_out], names=names_out
    )
    again = SensitivityScanner(names_out)
    again.feed(out)
    found = {f.name: set(f.detections) for f in again.result().fields}
    assert found == {
        "card": {"bank_card"},
        "mail": {"email"},
        "plate": {"plate"},
        "phone": {"mobile"},
    }


def test_deterministic_per_seed(
    example: tuple[ShapeProfile, ScanResult, list[dict[str, str]]],
) -> None:
    profile, scan, _ = example
    first = synthesize(profile, scan, 50, seed=42)
    assert synthesize(profile, scan, 50, seed=42) == first
    assert synthesize(profile, scan, 50, seed=43) != first
    restored = ShapeProfile.from_dict(json.loads(json.dumps(profile.to_dict())))
    assert synthesize(restored, scan, 50, seed=42) == first


def test_empty_and_negative() -> None:
    profile, scan = profile_and_scan(b"a\n\n1\n")
    assert synthesize(profile, scan, 0, seed=1) == []
    with pytest.raises(ValueError):
        synthesize(profile, scan, -1, seed=1)


def test_dates_and_times_stay_valid() -> None:
    from datetime import datetime

    from exchange.synth import _fill

    rng = random.Random(3)
    for _ in range(500):
        ts = _fill("9999-99-99 99:99:99", rng)
        datetime.strptime(ts, "%Y-%m-%d %H:%M:%S")
        d = _fill("A99 9999/99/99 99:99", rng)
        datetime.strptime(d[4:], "%Y/%m/%d %H:%M")
        assert d[0].isupper() and d[1:3].isdigit()

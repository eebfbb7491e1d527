"""Synthetic transit data: valid IDs and mobiles, constant width, size targets, determinism."""

from __future__ import annotations

import csv
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.datagen import COLUMNS, REGION_CODES, STATIONS, main, write_transit_csv
from exchange.scan import valid_id_number

REPO = Path(__file__).resolve().parents[1]


def generate(**kwargs: int) -> tuple[bytes, int]:
    out = io.BytesIO()
    written = write_transit_csv(out, **kwargs)
    return out.getvalue(), written


def parse(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


def test_rows_columns_and_values() -> None:
    data, written = generate(rows=3000, seed=1)
    assert written == len(data)
    records = parse(data)
    assert records[0] == COLUMNS
    body = records[1:]
    assert len(body) == 3000
    assert {len(r) for r in body} == {len(COLUMNS)}
    col = {name: [r[i] for r in body] for i, name in enumerate(COLUMNS)}
    assert all(valid_id_number(v) for v in col["id_number"])
    assert {v[:6] for v in col["id_number"]} <= set(REGION_CODES)
    assert all(1945 <= int(v[6:10]) <= 2012 for v in col["id_number"])
    mobiles = [v for v in col["mobile"] if v]
    assert 0.05 < 1 - len(mobiles) / 3000 < 0.15
    assert all(re.fullmatch(r"1[3-9]\d{9}", v) for v in mobiles)
    stations = {s for s, _ in STATIONS}
    assert set(col["board_station"]) <= stations
    assert all(b != a for b, a in zip(col["board_station"], col["alight_station"], strict=True))
    assert all(v.startswith("2026-") for v in col["board_time"])
    assert all(a > b for b, a in zip(col["board_time"], col["alight_time"], strict=True))
    assert {int(v) for v in col["fare_yuan"]} <= set(range(2, 10))
    assert col["trip_id"][:2] == ["T0000000001", "T0000000002"]
    remarks = [v for v in col["remarks"] if v]
    assert 0.04 < len(remarks) / 3000 < 0.12
    assert any(re.search(r"1[3-9]\d{9}", v) for v in remarks)


def test_deterministic_per_seed() -> None:
    assert generate(rows=500, seed=3) == generate(rows=500, seed=3)
    assert generate(rows=500, seed=3) != generate(rows=500, seed=4)


@pytest.mark.parametrize("target", [1, 2_000, 300_000, 1_500_000])
def test_target_bytes(target: int) -> None:
    data, written = generate(target_bytes=target)
    assert written == len(data) <= target
    if target < 200:  # smaller than the header: nothing at all
        assert data == b""
        return
    assert target - written < 400  # short by less than one row
    assert data.endswith(b"\n")
    records = parse(data)
    assert {len(r) for r in records} == {len(COLUMNS)}


def test_arguments() -> None:
    with pytest.raises(ValueError):
        write_transit_csv(io.BytesIO(), rows=1, target_bytes=1)
    with pytest.raises(ValueError):
        write_transit_csv(io.BytesIO())
    with pytest.raises(ValueError):
        write_transit_csv(io.BytesIO(), rows=-1)


def test_cli_writes_a_file(tmp_path: Path) -> None:
    out = tmp_path / "t.csv"
    assert main(["--rows", "20", "--seed", "7", "--out", str(out)]) == 0
    assert len(parse(out.read_bytes())) == 21


def test_example_file_is_the_generator_output() -> None:
    example = (REPO / "examples" / "transit_trips.csv").read_bytes()
    data, _ = generate(rows=10000, seed=7)
    assert example == data


def test_module_entry_point(tmp_path: Path) -> None:
    out = tmp_path / "m.csv"
    subprocess.run(
        [sys.executable, "-m", "bench.datagen", "--size-mb", "0.05", "--out", str(out)],
        check=True,
        cwd=REPO,
        capture_output=True,
    )
    assert 0 <= (1 << 20) * 0.05 - out.stat().st_size < 400

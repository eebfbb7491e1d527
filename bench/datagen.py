"""Synthetic transit-card trips of one Chinese city (Hangzhou), as realistic CSV for benchmarks.

Every person in the output is invented: names, ID numbers (real Hangzhou region
prefixes, plausible birth dates, valid GB 11643-1999 check digits) and mobiles are
drawn at random. Rows are built a block at a time with numpy and pyarrow.compute
from precomputed pools, so a gigabyte takes seconds rather than minutes.

    python -m bench.datagen --rows 10000 --seed 7 --out examples/transit_trips.csv
    python -m bench.datagen --size-mb 1024 --out /tmp/trips.csv
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import BinaryIO

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

COLUMNS = [
    "trip_id",
    "card_no",
    "holder_name",
    "id_number",
    "mobile",
    "board_station",
    "alight_station",
    "board_time",
    "alight_time",
    "line",
    "fare_yuan",
    "district",
    "remarks",
]

# Hangzhou county-level codes (GB/T 2260), old and current, since ID numbers keep the
# code in force at registration: 下城/江干 were merged in 2021 but their codes live on.
REGION_CODES = [
    "330102",  # 上城区
    "330103",  # 下城区 (before 2021)
    "330104",  # 江干区 (before 2021)
    "330105",  # 拱墅区
    "330106",  # 西湖区
    "330108",  # 滨江区
    "330109",  # 萧山区
    "330110",  # 余杭区
    "330111",  # 富阳区
    "330112",  # 临安区
    "330113",  # 临平区
    "330114",  # 钱塘区
    "330122",  # 桐庐县
    "330127",  # 淳安县
    "330182",  # 建德市
]

# (station, district) — Hangzhou Metro stations and the district each lies in.
STATIONS = [
    ("湘湖", "萧山区"),
    ("滨康路", "滨江区"),
    ("西兴", "滨江区"),
    ("滨和路", "滨江区"),
    ("江陵路", "滨江区"),
    ("近江", "上城区"),
    ("婺江路", "上城区"),
    ("城站", "上城区"),
    ("定安路", "上城区"),
    ("龙翔桥", "上城区"),
    ("凤起路", "拱墅区"),
    ("武林广场", "拱墅区"),
    ("西湖文化广场", "拱墅区"),
    ("打铁关", "拱墅区"),
    ("闸弄口", "上城区"),
    ("火车东站", "上城区"),
    ("彭埠", "上城区"),
    ("七堡", "上城区"),
    ("九和路", "上城区"),
    ("九堡", "上城区"),
    ("客运中心", "上城区"),
    ("下沙西", "钱塘区"),
    ("金沙湖", "钱塘区"),
    ("高沙路", "钱塘区"),
    ("文泽路", "钱塘区"),
    ("钱江路", "上城区"),
    ("市民中心", "上城区"),
    ("江锦路", "上城区"),
    ("沈塘桥", "拱墅区"),
    ("下宁桥", "西湖区"),
    ("古翠路", "西湖区"),
    ("丰潭路", "西湖区"),
    ("文新", "西湖区"),
    ("三坝", "西湖区"),
    ("虾龙圩", "西湖区"),
    ("三墩", "西湖区"),
    ("良渚", "余杭区"),
    ("杜甫村", "余杭区"),
    ("金家渡", "拱墅区"),
    ("人民广场", "萧山区"),
    ("建设三路", "萧山区"),
    ("萧山国际机场", "萧山区"),
]

LINES = ["1号线", "2号线", "3号线", "4号线", "5号线", "6号线", "7号线", "9号线", "10号线", "19号线"]

# Most common surnames first (2020 census order), with rough relative weights.
_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高郑梁谢宋唐许韩邓冯曹彭曾肖田董潘袁蔡蒋余"
    "于杜叶程魏苏吕丁任卢姚沈钟姜崔谭陆范汪廖石金韦贾夏付方邹熊白孟秦邱侯江尹薛闫段雷"
    "龙黎史陶贺毛郝顾龚邵万覃武钱戴严莫孔向常汤"
)
_COMPOUND_SURNAMES = ["欧阳", "司马", "诸葛", "上官", "东方", "皇甫", "令狐", "慕容"]
_GIVEN = (
    "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂英华玉萍红娥玲芬燕彬鹏辉建文斌宇"
    "浩凯健俊帆帅旭宁龙林欣佳怡晨梦雨萱轩子涵琪博瑞婷雪慧颖倩琳"
)

# Mainland mobile number segments in use (three-digit prefixes).
_MOBILE_PREFIXES = [
    "130", "131", "132", "133", "134", "135", "136", "137", "138", "139",
    "150", "151", "152", "153", "155", "156", "157", "158", "159",
    "166", "173", "175", "176", "177", "178",
    "180", "181", "182", "183", "184", "185", "186", "187", "188", "189",
    "191", "198", "199",
]  # fmt: skip

_NOTES = [
    "学生卡",
    "老年卡免费乘车",
    "换乘优惠",
    "补登记录",
    "闸机故障，人工放行",
    "卡内余额不足，已补票",
    "末班车",
    "乘客投诉车厢空调温度过低",
    "携带大件行李",
    "票价争议, refunded 2 yuan",
    '乘客称"刷卡两次"，已退款',
    "第一次刷卡失败\n第二次成功",
    "爱心专座引导",
    "出站超时，补收超时费",
]
_PHONE_NOTES = [
    "乘客遗失雨伞，已登记，联系电话{}",
    "失物招领：钱包一个，失主电话{}",
    "投诉回访 {}",
]
_ID_NOTES = ["代办人身份证{}", "补卡登记 证件号{}"]

_ID_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
_ID_CHECK = np.array(list("10X98765432"))

_START_2026 = 1767225600  # 2026-01-01T00:00:00Z; the zone does not matter for synthetic times
_ROW_BYTES_GUESS = 150
_BLOCK_ROWS = 65536


def id_check_char(first17: str) -> str:
    """GB 11643-1999 check character (ISO 7064 MOD 11-2) for the first 17 digits."""
    total = sum(int(c) * int(w) for c, w in zip(first17, _ID_WEIGHTS, strict=True))
    return str(_ID_CHECK[total % 11])


def _csv_field(text: str) -> str:
    """RFC 4180 quoting for one field."""
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _random_ids(rng: np.random.Generator, n: int) -> list[str]:
    regions = np.array(REGION_CODES)[rng.integers(0, len(REGION_CODES), n)]
    # Birth dates 1945..2012: riders from retirees to schoolchildren.
    first = np.datetime64("1945-01-01")
    span = int((np.datetime64("2012-12-31") - first).astype(int))
    dates = first + rng.integers(0, span + 1, n).astype("timedelta64[D]")
    births = np.char.replace(np.datetime_as_string(dates, unit="D"), "-", "")
    seq = np.char.zfill(rng.integers(0, 1000, n).astype(str), 3)
    first17 = np.char.add(np.char.add(regions, births), seq)
    digits = first17.astype("S17").view(np.uint8).reshape(n, 17).astype(np.int64) - 48
    check = _ID_CHECK[(digits @ _ID_WEIGHTS) % 11]
    return [str(s) for s in np.char.add(first17, check)]


def _random_names(rng: np.random.Generator, n: int) -> list[str]:
    ranks = np.arange(1, len(_SURNAMES) + 1, dtype=np.float64)
    weights = 1.0 / ranks**0.8
    surnames = np.array(list(_SURNAMES), dtype="U2")[
        rng.choice(len(_SURNAMES), n, p=weights / weights.sum())
    ]
    compound = rng.random(n) < 0.01
    surnames[compound] = np.array(_COMPOUND_SURNAMES)[
        rng.integers(0, len(_COMPOUND_SURNAMES), int(compound.sum()))
    ]
    given = np.array(list(_GIVEN))
    one = given[rng.integers(0, len(given), n)]
    two = np.char.add(one, given[rng.integers(0, len(given), n)])
    single = rng.random(n) < 0.3
    return [str(s) for s in np.char.add(surnames, np.where(single, one, two))]


def _random_mobiles(rng: np.random.Generator, n: int) -> list[str]:
    prefixes = np.array(_MOBILE_PREFIXES)[rng.integers(0, len(_MOBILE_PREFIXES), n)]
    rest = np.char.zfill(rng.integers(0, 100_000_000, n).astype(str), 8)
    return [str(s) for s in np.char.add(prefixes, rest)]


class _Pools:
    """Everything drawn once per seed; blocks of rows are index arrays into these."""

    def __init__(self, rng: np.random.Generator, people: int) -> None:
        ids = _random_ids(rng, people)
        names = _random_names(rng, people)
        mobiles = _random_mobiles(rng, people)
        no_mobile = rng.random(people) < 0.10
        cards = np.char.add("3301", np.char.zfill(rng.integers(0, 10**8, people).astype(str), 8))
        self.people = pa.array(
            [
                f"{card},{name},{id_no},{'' if skip else mobile}"
                for card, name, id_no, mobile, skip in zip(
                    cards.tolist(), names, ids, mobiles, no_mobile.tolist(), strict=True
                )
            ],
            pa.string(),
        )
        self.stations = pa.array([s for s, _ in STATIONS], pa.string())
        self.districts = pa.array([d for _, d in STATIONS], pa.string())
        self.lines = pa.array(LINES, pa.string())
        self.fares = pa.array([str(f) for f in range(2, 10)], pa.string())
        notes = [_csv_field(n) for n in _NOTES]
        phone_notes = [
            _csv_field(_PHONE_NOTES[i % len(_PHONE_NOTES)].format(m))
            for i, m in enumerate(_random_mobiles(rng, 60))
        ]
        id_notes = [
            _csv_field(_ID_NOTES[i % len(_ID_NOTES)].format(x))
            for i, x in enumerate(_random_ids(rng, 10))
        ]
        # Index 0 is the empty remark; the row's newline rides on the remark.
        remarks = ["", *notes, *phone_notes, *id_notes]
        self.remarks = pa.array([r + "\n" for r in remarks], pa.string())
        self.n_notes = len(notes)
        self.n_phone = len(phone_notes)
        self.n_id = len(id_notes)


def _remark_indices(rng: np.random.Generator, pools: _Pools, n: int) -> npt.NDArray[np.int64]:
    kind = rng.random(n)
    idx = np.zeros(n, dtype=np.int64)
    # ~8% of trips carry a remark; of those ~10% name a phone and ~1.5% an ID number.
    note = (kind >= 0.92) & (kind < 0.991)
    phone = (kind >= 0.991) & (kind < 0.9988)
    ident = kind >= 0.9988
    idx[note] = 1 + rng.integers(0, pools.n_notes, int(note.sum()))
    idx[phone] = 1 + pools.n_notes + rng.integers(0, pools.n_phone, int(phone.sum()))
    idx[ident] = 1 + pools.n_notes + pools.n_phone + rng.integers(0, pools.n_id, int(ident.sum()))
    return idx


def _block(rng: np.random.Generator, pools: _Pools, first_trip: int, n: int) -> pa.Array:
    """n CSV lines (each ending in a newline) as one string array."""
    numbers = pc.cast(pa.array(np.arange(first_trip, first_trip + n)), pa.string())
    trip_ids = pc.binary_join_element_wise("T", pc.utf8_lpad(numbers, 10, "0"), "")
    people = pools.people.take(pa.array(rng.integers(0, len(pools.people), n)))
    n_st = len(pools.stations)
    board = rng.integers(0, n_st, n)
    alight = (board + rng.integers(1, n_st, n)) % n_st
    hops = np.abs(board - alight)
    # Hour of day: commuter peaks at 8 and 18, little after midnight.
    hours = np.clip(
        np.where(rng.random(n) < 0.5, rng.normal(8.3, 1.2, n), rng.normal(18.0, 2.5, n)), 5, 23
    ).astype(np.int64)
    starts = _START_2026 + rng.integers(0, 365, n) * 86400 + hours * 3600 + rng.integers(0, 3600, n)
    ends = starts + 180 + hops * rng.integers(100, 160, n)
    fmt = "%Y-%m-%d %H:%M:%S"
    board_time = pc.strftime(pa.array(starts).cast(pa.timestamp("s")), format=fmt)
    alight_time = pc.strftime(pa.array(ends).cast(pa.timestamp("s")), format=fmt)
    fares = np.minimum(2 + hops // 5, 9) - 2
    board_idx = pa.array(board)
    return pc.binary_join_element_wise(
        trip_ids,
        people,
        pools.stations.take(board_idx),
        pools.stations.take(pa.array(alight)),
        board_time,
        alight_time,
        pools.lines.take(pa.array(rng.integers(0, len(pools.lines), n))),
        pools.fares.take(pa.array(fares)),
        pools.districts.take(board_idx),
        pools.remarks.take(pa.array(_remark_indices(rng, pools, n))),
        ",",
    )


def _write_lines(out: BinaryIO, lines: pa.Array, limit: int | None) -> tuple[int, int]:
    """Write whole lines, at most `limit` bytes of them; returns (bytes, lines) written."""
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)[
        lines.offset : lines.offset + len(lines) + 1
    ]
    count = len(lines)
    if limit is not None and int(offsets[-1] - offsets[0]) > limit:
        count = int(np.searchsorted(offsets - offsets[0], limit, side="right")) - 1
    start, end = int(offsets[0]), int(offsets[count])
    out.write(memoryview(lines.buffers()[2])[start:end])
    return end - start, count


def write_transit_csv(
    out: BinaryIO,
    *,
    rows: int | None = None,
    target_bytes: int | None = None,
    seed: int = 7,
) -> int:
    """Write a header and `rows` trips (or about `target_bytes` of them); returns bytes written.

    With `target_bytes` the output stops at the last whole row that fits, so it is at
    most `target_bytes` long and short of it by less than one row.
    """
    if (rows is None) == (target_bytes is None):
        raise ValueError("give exactly one of rows and target_bytes")
    if rows is not None and rows < 0:
        raise ValueError("rows must not be negative")
    rng = np.random.default_rng(seed)
    expected_rows = rows if rows is not None else max(1, (target_bytes or 0) // _ROW_BYTES_GUESS)
    pools = _Pools(rng, people=min(max(expected_rows // 10, 500), 200_000))
    header = (",".join(COLUMNS) + "\n").encode()
    if target_bytes is not None and len(header) > target_bytes:
        return 0
    out.write(header)
    written = len(header)
    done = 0
    while True:
        if rows is not None:
            n = min(_BLOCK_ROWS, rows - done)
            if n == 0:
                break
            limit = None
        else:
            assert target_bytes is not None
            n = _BLOCK_ROWS
            limit = target_bytes - written
        size, count = _write_lines(out, _block(rng, pools, done + 1, n), limit)
        written += size
        done += count
        if count < n:
            break
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.datagen", description=__doc__)
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--rows", type=int, help="number of trips")
    size.add_argument("--size-mb", type=float, help="approximate output size in MiB")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default="-", help="output file, '-' for stdout")
    args = parser.parse_args(argv)
    target = None if args.size_mb is None else int(args.size_mb * (1 << 20))
    if args.out == "-":
        written = write_transit_csv(
            sys.stdout.buffer, rows=args.rows, target_bytes=target, seed=args.seed
        )
    else:
        with open(args.out, "wb") as fh:
            written = write_transit_csv(fh, rows=args.rows, target_bytes=target, seed=args.seed)
    print(f"wrote {written} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

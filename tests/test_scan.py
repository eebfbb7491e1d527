"""Sensitivity scanner: check digits, each category, embedded numbers, grading rules, JSON form."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pytest

from exchange.csvstream import iter_batches
from exchange.levels import Level, ShareAttribute, level_rank, max_level
from exchange.scan import (
    CATEGORIES,
    ScanResult,
    ScanRules,
    SensitivityScanner,
    id_check_char,
    is_name_header,
    luhn_valid,
    valid_id_number,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "transit_trips.csv"

# Published GB 11643-1999 examples (the standard's Annex and Wikipedia's article).
ID_A = "11010519491231002X"
ID_B = "440524188001010014"


def scan(
    columns: dict[str, list[str]], *, rules: ScanRules | None = None, batches: int = 1
) -> ScanResult:
    """Scan columns given as lists, split into `batches` record batches."""
    names = list(columns)
    n = len(next(iter(columns.values())))
    scanner = SensitivityScanner(names, rules)
    step = max(1, -(-n // batches))
    for start in range(0, n, step):
        arrays = [pa.array(columns[c][start : start + step], pa.string()) for c in names]
        scanner.feed(pa.RecordBatch.from_arrays(arrays, names=names))
    return scanner.result()


def make_id(region: str, birth: str, seq: int) -> str:
    first17 = f"{region}{birth}{seq:03d}"
    return first17 + id_check_char(first17)


def corrupt(id_number: str) -> str:
    """The same ID with a wrong check character."""
    wrong = "0" if id_number[17] != "0" else "1"
    return id_number[:17] + wrong


def luhn_complete(body: str) -> str:
    for d in "0123456789":
        if luhn_valid(body + d):
            return body + d
    raise AssertionError("unreachable: one digit always completes a Luhn number")


# --- levels ------------------------------------------------------------------------------


def test_levels_are_totally_ordered_by_severity() -> None:
    order = [Level(v) for v in ("general-1", "general-2", "general-3", "general-4")]
    order += [Level.IMPORTANT, Level.CORE]
    assert [lv.rank for lv in order] == list(range(6))
    assert sorted(reversed(order)) == order
    assert Level.GENERAL_4 < Level.IMPORTANT < Level.CORE
    assert not Level.CORE <= Level.GENERAL_1
    assert level_rank("important") == 4
    assert max_level("general-2", Level.CORE, Level.GENERAL_4) == Level.CORE
    assert max_level() == Level.GENERAL_1
    assert ShareAttribute("none") == ShareAttribute.NONE
    with pytest.raises(ValueError):
        level_rank("secret")


# --- check digits -------------------------------------------------------------------------


@pytest.mark.parametrize("value", [ID_A, ID_B, ID_A.lower()])
def test_published_id_numbers_validate(value: str) -> None:
    assert id_check_char(value[:17]) == value[17].upper()
    assert valid_id_number(value)


@pytest.mark.parametrize("value", ["110105194912310021", "440524188001010015", ID_A[:17]])
def test_wrong_check_digit_or_length(value: str) -> None:
    assert not valid_id_number(value)


@pytest.mark.parametrize(
    "first17",
    [
        "91010519491231002",  # region 91 is no province
        "11010519491331002",  # month 13
        "11010519490231302",  # day 30 passes the shape (a calendar check is not attempted)
    ],
)
def test_shape_rules_with_right_check_digit(first17: str) -> None:
    value = first17 + id_check_char(first17)
    assert valid_id_number(value) is (first17[10:12] != "13" and first17[:2] != "91")


@pytest.mark.parametrize("value", ["4111111111111111", "79927398713", "6228480402564890018"])
def test_luhn_valid(value: str) -> None:
    assert luhn_valid(value)


@pytest.mark.parametrize("value", ["4111111111111112", "6228480402564890019", "", "41111x"])
def test_luhn_invalid(value: str) -> None:
    assert not luhn_valid(value)


# --- categories ---------------------------------------------------------------------------


def test_id_numbers_counted_with_check_digit_for_every_value() -> None:
    good = [make_id("330106", f"19{80 + i % 20}0{1 + i % 9}1{i % 9}", i) for i in range(300)]
    bad = [corrupt(v) for v in good[:100]]
    result = scan({"ident": good + bad}, batches=3)
    field = result.field("ident")
    assert field.detections["id_number"].hits == 300
    assert field.detections["id_number"].ratio == pytest.approx(0.75)
    assert field.suggested_level == Level.GENERAL_4
    assert field.reason is not None and "GB 11643" in field.reason
    # Corrupted IDs are not ID numbers; the ones that pass Luhn count as bank cards.
    luhn_ok = sum(luhn_valid(v) for v in bad)
    assert luhn_ok > 0  # the fixture exercises the ID-then-bank-card path
    assert field.detections["bank_card"].hits == luhn_ok


def test_one_valid_id_number_is_enough() -> None:
    values = ["nothing here"] * 999 + [ID_B]
    field = scan({"notes": values}).field("notes")
    assert field.detections["id_number"].hits == 1
    assert field.detections["id_number"].counted
    assert field.suggested_level == Level.GENERAL_4


def test_only_wrong_check_digits_is_not_an_id_column() -> None:
    values = [corrupt(make_id("110105", "19491231", i)) for i in range(50)]
    values = [v for v in values if not luhn_valid(v)]
    field = scan({"ident": values}).field("ident")
    assert field.detections == {}
    assert field.suggested_level == Level.GENERAL_1
    assert field.reason is None


def test_mobile_numbers() -> None:
    positives = ["13812345678", "+86 13912345678", "8615912345678", " 19912345678 "]
    negatives = ["12812345678", "1381234567", "138123456789", "tel"]
    field = scan({"phone": positives + negatives}).field("phone")
    assert field.detections["mobile"].hits == 4
    assert field.detections["mobile"].ratio == pytest.approx(0.5)
    assert field.suggested_level == Level.GENERAL_3


def test_bank_cards_and_no_double_count_of_ids() -> None:
    # An ID number that also passes Luhn is an ID number only.
    both = next(v for v in (make_id("110105", "19491231", s) for s in range(1000)) if luhn_valid(v))
    cards = ["4111111111111111", "6228480402564890018", luhn_complete("622202123456789012")]
    negatives = ["4111111111111112", "0111111111111111"]
    field = scan({"acct": [*cards, both, *negatives]}).field("acct")
    assert field.detections["bank_card"].hits == 3
    assert field.detections["id_number"].hits == 1
    assert field.suggested_level == Level.GENERAL_4


def test_email() -> None:
    values = ["zhang.san@example.com", "li+tag@mail.gov.cn", "a@b", "not-an-email@", "x y@z.cn"]
    field = scan({"contact": values}).field("contact")
    assert field.detections["email"].hits == 2
    assert field.suggested_level == Level.GENERAL_2


def test_plates() -> None:
    positives = ["浙A12345", "京AD12345", "粤B12345D", "沪A·5B77C", "苏E1234学"]
    negatives = ["浙I12345", "AB12345", "浙A1234", "浙A1234567"]
    field = scan({"plate_no": positives + negatives}).field("plate_no")
    assert field.detections["plate"].hits == 5
    assert field.suggested_level == Level.GENERAL_2


def test_person_names_need_a_person_dataset_or_a_name_header() -> None:
    names = ["张伟", "欧阳娜娜", "王小明", "李静", "诸葛亮"]
    alone = scan({"label": names}).field("label")
    assert alone.detections["person_name"].hits == 5
    assert not alone.detections["person_name"].counted
    assert alone.suggested_level == Level.GENERAL_1

    with_header = scan({"holder_name": names}).field("holder_name")
    assert with_header.detections["person_name"].counted
    assert with_header.suggested_level == Level.GENERAL_3
    assert with_header.reason is not None and "header" in with_header.reason

    mobiles = ["13812345678"] * len(names)
    with_ids = scan({"label": names, "phone": mobiles}).field("label")
    assert with_ids.suggested_level == Level.GENERAL_3
    assert with_ids.reason is not None and "ID or mobile" in with_ids.reason


def test_place_names_that_start_with_a_surname_are_not_names() -> None:
    stations = ["江陵路", "龙翔桥", "金家渡", "钱塘区", "彭埠", "高沙路"]
    result = scan({"station": stations, "ident": [ID_A] * len(stations)})
    assert "person_name" not in result.field("station").detections
    negatives = ["张", "张伟伟伟", "张1", "Zhang Wei"]
    assert scan({"name": negatives}).field("name").detections == {}


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("姓名", True),
        ("持卡人姓名", True),
        ("name", True),
        ("holder_name", True),
        ("patientName", True),
        ("Patient Name", True),
        ("xm", True),
        ("station_name", False),
        ("file_name", False),
        ("username2", False),
        ("remarks", False),
    ],
)
def test_name_headers(header: str, expected: bool) -> None:
    assert is_name_header(header) is expected


# --- embedded numbers ----------------------------------------------------------------------


def test_embedded_mobile_and_id_in_free_text() -> None:
    remarks = [
        "联系电话13812345678，谢谢",
        "乘客遗失雨伞，已登记",
        f"代办人身份证{ID_A}已核验",
        f"代办人身份证{corrupt(ID_A)}未核验",
        "订单号2138123456789已退款",  # a mobile-like run inside a longer number
        "",
        "",
    ]
    field = scan({"remarks": remarks}).field("remarks")
    assert field.non_empty == 5
    assert field.detections["mobile"].hits == 1
    assert field.detections["mobile"].embedded == 1
    assert field.detections["id_number"].hits == 1
    assert field.detections["id_number"].ratio == pytest.approx(0.2)
    assert field.suggested_level == Level.GENERAL_4
    assert field.reason is not None and "inside longer text" in field.reason


def test_long_ascii_text_is_searched_short_ascii_is_not() -> None:
    long_text = ["please call 13812345678 after 6pm"] * 3
    assert scan({"note": long_text}).field("note").detections["mobile"].hits == 3
    stamps = ["2026-04-03 23:05:29", "T20260403230529"]
    assert scan({"when": stamps}).field("when").detections == {}


# --- grading and result shape --------------------------------------------------------------


def test_min_level_and_most_sensitive_field() -> None:
    result = scan(
        {
            "mail": ["a@example.com", "b@example.com"],
            "phone": ["13812345678", ""],
            "city": ["杭州", "宁波"],
        }
    )
    assert result.min_level == Level.GENERAL_3
    assert result.most_sensitive_field == "phone"
    assert result.rows == 2
    phone = result.field("phone")
    assert phone.non_empty == 1
    assert phone.detections["mobile"].ratio == 1.0


def test_nothing_found() -> None:
    result = scan({"a": ["1", "2", ""], "b": ["x", "y", "z"]})
    assert result.min_level == Level.GENERAL_1
    assert result.most_sensitive_field is None
    assert all(f.suggested_level == Level.GENERAL_1 and f.reason is None for f in result.fields)


def test_min_ratio_threshold() -> None:
    values = ["a@example.com"] + ["plain"] * 199  # 0.5 %
    default = scan({"v": values}).field("v")
    assert default.detections["email"].hits == 1
    assert not default.detections["email"].counted
    assert default.suggested_level == Level.GENERAL_1
    strict = scan({"v": values}, rules=ScanRules(min_ratio=0.001)).field("v")
    assert strict.suggested_level == Level.GENERAL_2


def test_rules_validate() -> None:
    with pytest.raises(ValueError):
        ScanRules(min_ratio=1.5)
    with pytest.raises(ValueError):
        ScanRules(levels={"id_number": Level.GENERAL_4})
    with pytest.raises(ValueError):
        ScanRules(single_hit=frozenset({"shoe_size"}))
    custom = dict.fromkeys(CATEGORIES, Level.GENERAL_2) | {"email": Level.IMPORTANT}
    result = scan({"m": ["a@example.com"]}, rules=ScanRules(levels=custom))
    assert result.min_level == Level.IMPORTANT


def test_category_changes_between_batches() -> None:
    # The scanner tests a column's last dominant category first; counts must stay exact.
    ids = [make_id("330106", "19900101", i) for i in range(40)]
    mixed = ids[:10] + ["13812345678"] * 10 + ["4111111111111111"] * 5 + ["x"] * 15
    values = ids + mixed + ["13912345678"] * 40
    field = scan({"v": values}, batches=3).field("v")
    assert field.detections["id_number"].hits == 50
    assert field.detections["mobile"].hits == 50
    assert field.detections["bank_card"].hits == 5


def test_feed_rejects_wrong_width() -> None:
    scanner = SensitivityScanner(["a", "b"])
    with pytest.raises(ValueError):
        scanner.feed(pa.RecordBatch.from_arrays([pa.array(["1"])], names=["a"]))


def test_round_trip_through_json() -> None:
    result = scan({"remarks": ["电话13812345678", ""], "holder_name": ["张伟", "李静"]})
    again = ScanResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again == result
    assert again.to_dict() == result.to_dict()


def test_transit_example() -> None:
    with EXAMPLE.open("rb") as fh:
        stream = iter_batches(fh, block_size=256 << 10)
        scanner = SensitivityScanner(stream.columns)
        for batch in stream:
            scanner.feed(batch)
    result = scanner.result()
    assert result.rows == stream.rows == 10000
    assert result.min_level == Level.GENERAL_4
    assert result.most_sensitive_field == "id_number"
    assert result.field("id_number").detections["id_number"].ratio == 1.0
    assert result.field("holder_name").detections["person_name"].ratio == 1.0
    mobile = result.field("mobile")
    assert mobile.detections["mobile"].ratio == 1.0
    assert 0.85 < mobile.non_empty / result.rows < 0.95
    remarks = result.field("remarks")
    assert remarks.detections["mobile"].embedded == remarks.detections["mobile"].hits > 0
    quiet = ["trip_id", "card_no", "board_station", "alight_station", "board_time"]
    quiet += ["alight_time", "line", "fare_yuan", "district"]
    for name in quiet:
        assert result.field(name).detections == {}, name


def test_scanner_accepts_a_csv_stream_directly() -> None:
    data = f"who,id\n张伟,{ID_A}\n".encode()
    stream = iter_batches(io.BytesIO(data))
    scanner = SensitivityScanner(stream.columns)
    for batch in stream:
        scanner.feed(batch)
    assert scanner.result().min_level == Level.GENERAL_4


@pytest.mark.parametrize(
    ("value", "category"),
    [
        ("138-1234-5678", "mobile"),
        ("+86 138 1234 5678", "mobile"),
        ("(+86) 138 1234 5678", "mobile"),
        ("１３８１２３４５６７８", "mobile"),
        ("6222 0212 3456 7890 128", "bank_card"),
        ("6222-0212-3456-7890-128", "bank_card"),
        ("1101 0519 4912 3100 2X", "id_number"),
        ("１１０１０５１９４９１２３１００２Ｘ", "id_number"),
    ],
)
def test_formatting_does_not_hide_a_value(value: str, category: str) -> None:
    result = scan({"c": [value, "", value]})
    field = result.fields[0]
    assert field.detections[category].hits == 2
    assert field.suggested_level > Level.GENERAL_1


def test_formatted_non_numbers_stay_unflagged() -> None:
    result = scan(
        {"t": ["2026-03-01 08:15:00", "2026-03-01", "12.50", "(0571) 8888-6666", "1390000000.0"]}
    )
    assert result.fields[0].detections == {}

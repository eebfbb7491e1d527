"""Streaming CSV reader: header checks, all-string batches, error classes without data values."""

from __future__ import annotations

import io
import threading

import pyarrow as pa
import pytest

from exchange.csvstream import iter_batches
from exchange.errors import (
    CsvColumnCount,
    CsvEmpty,
    CsvEncoding,
    CsvError,
    CsvHeaderInvalid,
    CsvMalformed,
)

SECRET = "S3cr3tV4lue"


def read_all(data: bytes, block_size: int = 1 << 20) -> tuple[list[str], list[dict[str, str]], int]:
    stream = iter_batches(io.BytesIO(data), block_size=block_size)
    rows: list[dict[str, str]] = []
    for batch in stream:
        assert all(field.type == pa.string() for field in batch.schema)
        rows.extend(batch.to_pylist())
    return stream.columns, rows, stream.rows


def fail(data: bytes, block_size: int = 1 << 20) -> CsvError:
    with pytest.raises(CsvError) as info:
        read_all(data, block_size)
    err = info.value
    # Messages and extensions may name columns and numbers, never data values.
    assert SECRET not in err.detail
    assert SECRET not in str(err.extensions)
    return err


def test_reads_header_and_string_rows() -> None:
    columns, rows, count = read_all(b"id,amount,when\n007,1.50,2026-01-02\n8,,x\n")
    assert columns == ["id", "amount", "when"]
    assert rows == [
        {"id": "007", "amount": "1.50", "when": "2026-01-02"},
        {"id": "8", "amount": "", "when": "x"},
    ]
    assert count == 2


def test_quoted_commas_newlines_and_quotes() -> None:
    data = b'a,b\n"x, y","line1\nline2"\n"say ""hi""",z\r\n'
    _, rows, count = read_all(data)
    assert rows == [{"a": "x, y", "b": "line1\nline2"}, {"a": 'say "hi"', "b": "z"}]
    assert count == 2


def test_trailing_blank_lines_are_not_rows() -> None:
    _, rows, count = read_all(b"a,b\n1,2\n3,4\n\n\r\n\n")
    assert count == 2
    assert len(rows) == 2


def test_bom_is_stripped_from_first_column_name() -> None:
    columns, rows, _ = read_all(b"\xef\xbb\xbfid, name \n1,x\n")
    assert columns == ["id", "name"]
    assert rows == [{"id": "1", "name": "x"}]


def test_crlf_and_quoted_header() -> None:
    columns, rows, _ = read_all(b'"a,1",b\r\n1,2\r\n')
    assert columns == ["a,1", "b"]
    assert rows == [{"a,1": "1", "b": "2"}]


def test_many_blocks_count_rows() -> None:
    line = b"12345678,abcdefgh,ijklmnop\n"  # 27 bytes
    data = b"a,b,c\n" + line * 3000  # ~81 KB: at least three 32 KiB blocks
    stream = iter_batches(io.BytesIO(data), block_size=32 << 10)
    batches = list(stream)
    assert len(batches) >= 3
    assert stream.rows == 3000
    assert sum(b.num_rows for b in batches) == 3000


def test_reads_from_a_thread_fed_pipe() -> None:
    import os

    read_fd, write_fd = os.pipe()

    def feed() -> None:
        with os.fdopen(write_fd, "wb") as out:
            out.write(b"a,b\n")
            for i in range(20000):
                out.write(b"%d,value\n" % i)

    writer = threading.Thread(target=feed)
    writer.start()
    with os.fdopen(read_fd, "rb") as source:
        stream = iter_batches(source, block_size=64 << 10)
        total = sum(batch.num_rows for batch in stream)
    writer.join()
    assert total == 20000 == stream.rows


@pytest.mark.parametrize("data", [b"", b"\n\n\r\n", b"\xef\xbb\xbf"])
def test_empty_file(data: bytes) -> None:
    assert isinstance(fail(data), CsvEmpty)


@pytest.mark.parametrize("data", [b"a,b", b"a,b\n", b"a,b\r\n\n\n"])
def test_header_only(data: bytes) -> None:
    assert isinstance(fail(data), CsvEmpty)


def test_duplicate_column_after_strip() -> None:
    err = fail(b"id, id\n1,2\n")
    assert isinstance(err, CsvHeaderInvalid)
    assert err.extensions["column"] == "id"
    assert err.extensions["position"] == 2


def test_empty_column_name() -> None:
    err = fail(b"id,  ,x\n1,2,3\n")
    assert isinstance(err, CsvHeaderInvalid)
    assert err.extensions["column"] == ""
    assert err.extensions["position"] == 2


def test_short_row_reports_row_and_counts() -> None:
    err = fail(b"a,b,c\n1,2,3\n" + SECRET.encode() + b",2\n")
    assert isinstance(err, CsvColumnCount)
    assert err.extensions == {"row": 2, "expected": 3, "found": 2}


def test_long_row_deep_in_file_across_blocks() -> None:
    good = b"1,2\n" * 50000
    data = b"a,b\n" + good + b'x,"y",' + SECRET.encode() + b"\n" + good
    err = fail(data, block_size=16 << 10)
    assert isinstance(err, CsvColumnCount)
    assert err.extensions["row"] == 50001
    assert err.extensions["expected"] == 2
    assert err.extensions["found"] == 3


def test_row_number_counts_records_not_lines() -> None:
    # A quoted newline and a blank line before the bad record do not shift its number.
    data = b'a,b\n1,"two\nlines"\n\n3,4\n' + SECRET.encode() + b"\n"
    err = fail(data)
    assert isinstance(err, CsvColumnCount)
    assert err.extensions["row"] == 3  # records: "1,two…", "3,4", then the bad one


def test_invalid_utf8_in_body() -> None:
    data = b"a,b\n1,2\n3,4\n5," + SECRET.encode() + b"\xff\xfe\n"
    err = fail(data)
    assert isinstance(err, CsvEncoding)
    assert err.extensions == {"row": 3, "column": "b"}


def test_invalid_utf8_deep_in_file() -> None:
    data = b"a,b\n" + b"x,y\n" * 40000 + b"\xc3\x28," + SECRET.encode() + b"\n"
    err = fail(data, block_size=16 << 10)
    assert isinstance(err, CsvEncoding)
    assert err.extensions["row"] == 40001
    assert err.extensions["column"] == "a"


def test_invalid_utf8_in_header() -> None:
    err = fail(b"a,\xffb\n1,2\n")
    assert isinstance(err, CsvEncoding)


def test_unterminated_quote_at_end() -> None:
    err = fail(b'a,b\n1,2\n3,"' + SECRET.encode() + b"\n")
    assert isinstance(err, CsvMalformed)


def test_unterminated_quote_longer_than_a_block() -> None:
    data = b'a,b\n1,"' + SECRET.encode() * 20000 + b"\n2,3\n"
    err = fail(data, block_size=16 << 10)
    assert isinstance(err, CsvMalformed)


def test_malformed_header_quote() -> None:
    assert isinstance(fail(b'"a"b,c\n1,2\n'), CsvMalformed)


class StalledSource:
    """Gives `data`, then blocks until released: an upload that stopped mid-way."""

    def __init__(self, data: bytes, release: threading.Event) -> None:
        self._data = data
        self._release = release

    def read(self, size: int = -1) -> bytes:
        if self._data:
            n = len(self._data) if size < 0 else size
            chunk, self._data = self._data[:n], self._data[n:]
            return chunk
        self._release.wait()
        return b""


@pytest.mark.parametrize("good_rows", [10, 3000])
def test_failed_streams_do_not_use_up_pyarrow_threads(good_rows: int) -> None:
    # pyarrow reads ahead on its 8 I/O threads; a read stuck in a stalled source must
    # not keep one of them, or a few failed uploads would hang every later read. The
    # bad row sits in the first block (raised by open_csv) or a later one.
    release = threading.Event()
    bad = b"a,b\n" + b"1,2\n" * good_rows + b"3\n" + b"4,5\n" * 5000
    outcomes: list[object] = []

    def run() -> None:
        for _ in range(12):
            stream = iter_batches(StalledSource(bad, release), block_size=4096)  # type: ignore[arg-type]
            try:
                list(stream)
            except CsvColumnCount as err:
                outcomes.append(err.extensions["row"])
        outcomes.append(read_all(b"a\n1\n2\n")[2])

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=60)
    release.set()
    assert not worker.is_alive()
    assert outcomes == [good_rows + 1] * 12 + [2]


def test_source_errors_pass_through() -> None:
    class Broken(Exception):
        pass

    class Source:
        def __init__(self) -> None:
            self.calls = 0

        def read(self, size: int = -1) -> bytes:
            self.calls += 1
            if self.calls > 3:
                raise Broken
            return b"a,b\n" if self.calls == 1 else b"1,2\n" * 20000

    with pytest.raises(Broken):
        list(iter_batches(Source(), block_size=4096))  # type: ignore[arg-type]


def test_close_stops_early() -> None:
    with iter_batches(io.BytesIO(b"a\n" + b"1\n" * 100000), block_size=4096) as stream:
        first = next(stream)
    assert first.num_rows > 0
    assert list(stream) == []


def test_bad_block_size() -> None:
    with pytest.raises(ValueError):
        iter_batches(io.BytesIO(b"a\n1\n"), block_size=0)


@pytest.mark.parametrize(
    "first_line",
    [
        b"11010519491231002X,13812345678,x",
        b"a,138-1234-5678",
        b"id,card\n",
    ],
)
def test_a_first_line_of_data_is_not_taken_for_a_header(first_line: bytes) -> None:
    content = first_line if first_line.endswith(b"\n") else first_line + b"\n1,2,3\n"
    if first_line == b"id,card\n":
        content = b"id,6222021234567890128\n1,2\n"
    with pytest.raises(CsvHeaderInvalid) as err:
        iter_batches(io.BytesIO(content))
    assert "11010519491231002X" not in err.value.detail
    assert "6222021234567890128" not in err.value.detail
    assert "13812345678" not in err.value.detail
    assert err.value.extensions["position"] >= 1


def test_header_name_limits() -> None:
    with pytest.raises(CsvHeaderInvalid):
        iter_batches(io.BytesIO(b"a," + b"x" * 201 + b"\n1,2\n"))
    with pytest.raises(CsvHeaderInvalid):
        iter_batches(io.BytesIO(b"a,b\x00c\n1,2\n"))
    wide = ",".join(f"c{i}" for i in range(1025)).encode()
    with pytest.raises(CsvHeaderInvalid):
        iter_batches(io.BytesIO(wide + b"\n" + b",".join([b"1"] * 1025) + b"\n"))

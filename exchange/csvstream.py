"""Streaming CSV reader: validated header, all-string record batches, errors without data values.

The header is read and checked here; the body is parsed block by block by
`pyarrow.csv.open_csv` with every column forced to `string`, so memory stays at a
few blocks whatever the file size and no type is ever inferred. Every failure is
raised as a `CsvError` subclass whose message names columns and 1-based data row
numbers only: pyarrow's own messages quote the offending row and are never passed on.
"""

from __future__ import annotations

import atexit
import csv
import io
import queue
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.csv as pa_csv

from exchange.errors import (
    CsvColumnCount,
    CsvEmpty,
    CsvEncoding,
    CsvError,
    CsvHeaderInvalid,
    CsvMalformed,
)
from exchange.scan import mask_column_name, value_like_cells

__all__ = ["CsvStream", "end_queue", "iter_batches", "put_until"]

DEFAULT_BLOCK_SIZE = 4 << 20
_HEADER_CHUNK = 64 << 10
_MAX_HEADER_BYTES = 1 << 20
_BOM = "\ufeff"
MAX_COLUMNS = 1024
MAX_COLUMN_NAME = 200  # dataset_fields.name
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LINE_END = re.compile(rb"[\r\n]")
_PUMP_CHUNK = 1 << 20
_PUMP_CHUNKS = 4
_PUMP_POLL_S = 0.1
_EXIT_WAIT_S = 1.0
# Blocks pyarrow may read beyond the batches handed out (it needs the next block to
# finish the last row of the current one).
_READ_AHEAD_BLOCKS = 2
_STARVED_S = 0.25
# Only numbers are taken from pyarrow's messages; the rest of them may quote data.
_ARROW_ROW = re.compile(r"Row #(\d+)")
_ARROW_COLUMN = re.compile(r"column #(\d+)")


def put_until(chunks: queue.Queue[bytes], data: bytes, stop: threading.Event) -> bool:
    """Put `data` on a bounded queue, waiting while it is full; False once `stop` is set."""
    while not stop.is_set():
        try:
            chunks.put(data, timeout=_PUMP_POLL_S)
            return True
        except queue.Full:
            continue
    return False


def end_queue(chunks: queue.Queue[bytes]) -> None:
    """Drop what is queued (unblocking a waiting producer) and queue the end of the stream."""
    while True:
        try:
            chunks.get_nowait()
        except queue.Empty:
            break
    try:
        chunks.put_nowait(b"")
    except queue.Full:
        pass


class _Pump:
    """What pyarrow reads: the bytes left over from the header, then the caller's stream.

    pyarrow calls `read` on a thread of its I/O pool. Were that call to block in the
    caller's stream (a queue fed by an upload that has stopped), the pool thread would
    be lost for good and, with the pool's 8 threads gone, every later read would hang.
    So the caller's stream is read on a thread of ours and handed over through a small
    queue; `close` always releases pyarrow's thread, whatever the caller's stream does.

    Counts quote characters on the way (bytes.count runs at memory speed): RFC 4180
    §2.5-2.7 allows quotes only in pairs, and pyarrow silently accepts a quoted field
    left open at the end of the file.
    """

    closed = False  # what pyarrow's PythonFile asks; closing is ours to do

    def __init__(self, prefix: bytes, source: BinaryIO, chunk_size: int) -> None:
        self._pending = prefix
        self._source = source
        self._chunk_size = chunk_size
        self._chunks: queue.Queue[bytes] = queue.Queue(maxsize=_PUMP_CHUNKS)
        self._stop = threading.Event()
        self._eof = False
        self.quotes = prefix.count(b'"')
        self.error: BaseException | None = None
        self.reading = 0  # pyarrow threads inside `read` (one at a time in practice)
        # Read-ahead control: pyarrow would buffer up to 32 blocks (256 MB at 8 MB).
        self._flow = threading.Condition()
        self._blocks_read = 0
        self._batches_taken = 0
        self._consumer_waiting = False
        self._thread = threading.Thread(target=self._run, name="pdx-csv-pump", daemon=True)
        self._thread.start()
        _OPEN_PUMPS.add(self)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                # `or b""`: a raw stream may return None when nothing is ready yet.
                data = bytes(self._source.read(self._chunk_size) or b"")
                if not data:
                    break
                self._put(data)
        except BaseException as exc:  # noqa: BLE001 - re-raised on the consumer's thread
            self.error = exc
        finally:
            self._put(b"")

    def _put(self, data: bytes) -> None:
        put_until(self._chunks, data, self._stop)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, size: int = -1) -> Any:
        """Up to `size` bytes (all when negative); fewer only at the end of the input."""
        self.reading += 1
        try:
            self._throttle()
            data = self._read(size)
            with self._flow:
                self._blocks_read += 1
            return data
        finally:
            self.reading -= 1

    def _throttle(self) -> None:
        """Hold pyarrow's read-ahead to a few blocks beyond the batches handed out.

        pyarrow needs at most the next block to finish a batch, so a few blocks ahead
        never starve it. Should it still wait on a held read (a block that yields no
        batch), the read goes on after _STARVED_S: memory stays bounded, never deadlocked.
        """
        with self._flow:
            starved_since: float | None = None
            while self._blocks_read - self._batches_taken >= _READ_AHEAD_BLOCKS:
                if self._stop.is_set():
                    return
                if self._consumer_waiting:
                    now = time.monotonic()
                    starved_since = starved_since or now
                    if now - starved_since >= _STARVED_S:
                        return
                else:
                    starved_since = None
                self._flow.wait(timeout=_STARVED_S / 5)

    def consumer_waiting(self, waiting: bool) -> None:
        """The consumer enters (True) or leaves (False) a call into pyarrow."""
        with self._flow:
            self._consumer_waiting = waiting
            if not waiting:
                self._batches_taken += 1
            self._flow.notify_all()

    def _read(self, size: int) -> Any:
        parts = [self._pending] if self._pending else []
        have = len(self._pending)
        while not self._eof and (size < 0 or have < size):
            try:
                chunk = self._chunks.get(timeout=_PUMP_POLL_S)
            except queue.Empty:
                # Closed while waiting (the wake-up below may have gone to another read).
                if self._stop.is_set():
                    self._eof = True
                continue
            if not chunk:
                self._eof = True
                break
            self.quotes += chunk.count(b'"')
            parts.append(chunk)
            have += len(chunk)
        take = have if size < 0 else min(size, have)
        # The block goes into an Arrow buffer (jemalloc) rather than a Python bytes
        # object: glibc keeps freed multi-megabyte blocks around, jemalloc returns them.
        block = pa.allocate_buffer(take)
        view = memoryview(block).cast("B")
        pos = 0
        self._pending = b""
        for i, part in enumerate(parts):
            n = min(len(part), take - pos)
            view[pos : pos + n] = memoryview(part)[:n]
            pos += n
            if n < len(part):
                self._pending = part[n:] + b"".join(parts[i + 1 :])
                break
        return block

    def close(self) -> None:
        """Stop the pump and wake a `read` waiting for data (it then sees the end)."""
        self._stop.set()
        with self._flow:
            self._flow.notify_all()
        end_queue(self._chunks)


_OPEN_PUMPS: weakref.WeakSet[_Pump] = weakref.WeakSet()


@atexit.register
def _close_open_pumps() -> None:
    """Release pyarrow's threads before the interpreter finalizes.

    A pyarrow I/O thread still inside `_Pump.read` when finalization starts makes
    CPython abort ("PyGILState_Release") or hang; atexit runs while threads still work.
    """
    pumps = list(_OPEN_PUMPS)
    for pump in pumps:
        pump.close()
    deadline = time.monotonic() + _EXIT_WAIT_S
    while any(p.reading for p in pumps) and time.monotonic() < deadline:
        time.sleep(0.005)
    if pumps:
        time.sleep(0.02)  # the returning thread still has to leave the Python wrapper


def _read_more(source: BinaryIO) -> bytes:
    return bytes(source.read(_HEADER_CHUNK) or b"")


def _header_end(buf: bytes, eof: bool) -> tuple[int, int] | None:
    """(end of the header record, start of the body) in `buf`, or None if not there yet."""
    quotes = 0
    scanned = 0
    for match in _LINE_END.finditer(buf):
        end = match.start()
        quotes += buf.count(b'"', scanned, end)
        scanned = end
        if quotes % 2:
            continue  # a line break inside a quoted column name
        if buf[end] == 0x0D and end + 1 == len(buf) and not eof:
            return None  # the "\n" of a "\r\n" may come with the next read
        body = end + 2 if buf[end : end + 2] == b"\r\n" else end + 1
        return end, body
    return None


def _split_header(source: BinaryIO) -> tuple[bytes, bytes]:
    """(header record bytes, bytes after it) — the header may hold quoted line breaks."""
    buf = b""
    eof = False
    while True:
        if not eof:
            chunk = _read_more(source)
            eof = not chunk
            buf += chunk
        # Leading blank lines are skipped, as pyarrow skips blank lines in the body.
        buf = buf.lstrip(b"\r\n")
        found = _header_end(buf, eof)
        if found is not None:
            return buf[: found[0]], buf[found[1] :]
        if eof:
            return buf, b""
        if len(buf) > _MAX_HEADER_BYTES:
            raise CsvHeaderInvalid(f"the header line is longer than {_MAX_HEADER_BYTES} bytes")


def _parse_header(raw: bytes) -> list[str]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CsvEncoding(
            f"the header is not valid UTF-8 (byte {err.start + 1} of line 1)", line=1
        ) from None
    if text.startswith(_BOM):
        text = text[len(_BOM) :]
    if not text.strip():
        raise CsvEmpty("the file is empty")
    try:
        records = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error:
        raise CsvMalformed("the header line is not valid CSV (misplaced quote)") from None
    if len(records) != 1:
        raise CsvMalformed("the header line is not valid CSV")
    names = [name.strip() for name in records[0]]
    if names and names[0].startswith(_BOM):  # a BOM inside quotes: `"\ufeffid",...`
        names[0] = names[0][len(_BOM) :].strip()
    if len(names) > MAX_COLUMNS:
        raise CsvHeaderInvalid(f"the header has more than {MAX_COLUMNS} columns")
    # Checked before any name is quoted back: a file without a header row would have
    # its first record taken for column names (and stored, shown, logged as such).
    for position, category in value_like_cells(names)[:1]:
        raise CsvHeaderInvalid(
            f"column {position} of the first line is a data value ({category}), not a column "
            "name; the file needs a header row",
            position=position,
        )
    for position, name in enumerate(names, start=1):
        if len(name) > MAX_COLUMN_NAME or _CONTROL.search(name):
            raise CsvHeaderInvalid(
                f"column {position}: names are at most {MAX_COLUMN_NAME} characters without "
                "control characters",
                position=position,
            )
    # A value inside a name ("联系人13812345678") is masked before the name is stored,
    # listed or quoted; the scanner grades the field by the placeholder left in its place.
    names = [mask_column_name(name) for name in names]
    seen: set[str] = set()
    for position, name in enumerate(names, start=1):
        if not name:
            raise CsvHeaderInvalid(
                f"column {position} of the header has an empty name", column="", position=position
            )
        if name in seen:
            raise CsvHeaderInvalid(
                f"column name '{name}' appears more than once in the header",
                column=name,
                position=position,
            )
        seen.add(name)
    return names


def _skip_blank(source: BinaryIO, rest: bytes) -> bytes:
    """Read until the body has a non-blank byte; returns b"" when there is no body at all."""
    while not rest.strip(b"\r\n"):
        chunk = _read_more(source)
        if not chunk:
            return b""
        rest = rest.lstrip(b"\r\n") + chunk
    return rest


class _RowTrap:
    """pyarrow's invalid-row handler: keeps the numbers of the first bad row, stops parsing.

    It also stops the pump at once: when the bad row is in the first block, pyarrow
    raises from `open_csv` only after its read-ahead returns, and that read would
    otherwise wait for the next block of a slow upload. A separate object rather than
    a bound method of the stream, so that the reader does not reference the stream
    that references the reader (a cycle only the garbage collector would free).
    """

    def __init__(self, stop: Callable[[], None]) -> None:
        self.bad: tuple[int | None, int, int] | None = None
        self._stop = stop

    def __call__(self, row: Any) -> str:
        # Keep the numbers only: row.text is data.
        self.bad = (row.number, int(row.expected_columns), int(row.actual_columns))
        self._stop()
        return "error"


class CsvStream:
    """Record batches of a CSV body, every column `pa.string()`; iterate once.

    `columns` is the validated header; `rows` counts the data rows yielded so far
    (blank lines are not rows).
    """

    def __init__(self, columns: list[str], source: _Pump, block_size: int) -> None:
        self.columns = columns
        self.rows = 0
        self._source = source
        self._block_size = block_size
        self._reader: Any = None
        self._done = False
        self._trap = _RowTrap(source.close)

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        return self

    def __enter__(self) -> CsvStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop reading and release pyarrow's reader; done by itself at the end or on an error.

        Close a stream that is not read to the end: pyarrow reads ahead on a thread of its
        own, and CPython aborts if the interpreter exits while that thread is in `read`.
        """
        self._done = True
        self._source.close()
        self._reader = None

    def __del__(self) -> None:
        # Wake pyarrow's read-ahead before its reader is destroyed: the reader waits for
        # that read, which would otherwise wait for a pump that may never run again.
        try:
            self.close()
        except Exception:  # noqa: BLE001 - at interpreter exit module globals may be gone
            pass

    def __next__(self) -> pa.RecordBatch:
        if self._done:
            raise StopIteration
        self._source.consumer_waiting(True)
        try:
            if self._reader is None:
                self._reader = self._open()
            batch = self._reader.read_next_batch()
        except StopIteration:
            self.close()
            self._raise_source_error()
            self._finish()
            raise
        except pa.ArrowException as err:
            self.close()
            # A failing source ends the input early; its error explains the parse error.
            self._raise_source_error()
            raise self._translate(err) from None
        except BaseException:
            self.close()
            raise
        finally:
            self._source.consumer_waiting(False)
        self.rows += batch.num_rows
        return batch

    def _open(self) -> Any:
        names = self.columns
        return pa_csv.open_csv(
            self._source,
            read_options=pa_csv.ReadOptions(
                column_names=names,
                block_size=self._block_size,
                # Serial parsing keeps pyarrow's row numbers (it runs at ~500 MB/s here);
                # the threaded reader reports none and was not faster on 2 cores.
                use_threads=False,
            ),
            parse_options=pa_csv.ParseOptions(
                newlines_in_values=True,
                ignore_empty_lines=True,
                invalid_row_handler=self._trap,
            ),
            convert_options=pa_csv.ConvertOptions(
                column_types={name: pa.string() for name in names},
                strings_can_be_null=False,
                check_utf8=True,
            ),
        )

    def _raise_source_error(self) -> None:
        error = self._source.error
        if error is not None:
            raise error

    def _finish(self) -> None:
        if self._source.quotes % 2:
            raise CsvMalformed(
                "the file ends inside a quoted field: a quote is not closed, or a quote "
                "appears inside an unquoted field (RFC 4180 §2.5-2.7)"
            )
        if self.rows == 0:
            raise CsvEmpty("the file has a header but no data rows")

    def _translate(self, err: pa.ArrowException) -> CsvError:
        message = str(err)
        if self._trap.bad is not None:
            number, expected, found = self._trap.bad
            where = f"data row {number}" if number is not None else "a data row"
            extensions: dict[str, int] = {"expected": expected, "found": found}
            if number is not None:
                extensions["row"] = number
            fields = "field" if found == 1 else "fields"
            return CsvColumnCount(
                f"{where} has {found} {fields}; the header has {expected}", **extensions
            )
        if "UTF8" in message or "UTF-8" in message:
            row = _ARROW_ROW.search(message)
            column = _ARROW_COLUMN.search(message)
            parts = []
            utf8_extensions: dict[str, Any] = {}
            if row is not None:
                parts.append(f"data row {row.group(1)}")
                utf8_extensions["row"] = int(row.group(1))
            if column is not None and int(column.group(1)) < len(self.columns):
                name = self.columns[int(column.group(1))]
                parts.append(f"column '{name}'")
                utf8_extensions["column"] = name
            where = ", ".join(parts) if parts else "the data"
            return CsvEncoding(f"{where} is not valid UTF-8", **utf8_extensions)
        if "straddl" in message:
            return CsvMalformed(
                f"a row is longer than the block size ({self._block_size} bytes); most likely "
                "a quoted field is not closed"
            )
        if "Empty CSV" in message:
            return CsvEmpty("the file has a header but no data rows")
        return CsvMalformed("the file is not valid CSV")


def iter_batches(source: BinaryIO, *, block_size: int = DEFAULT_BLOCK_SIZE) -> CsvStream:
    """Read and validate the header of `source`; the returned stream yields the body.

    Raises `CsvEmpty`, `CsvHeaderInvalid`, `CsvEncoding` or `CsvMalformed` at once for
    a bad header or a file without data rows; body errors surface while iterating.
    """
    if block_size < 1:
        raise ValueError("block_size must be positive")
    raw_header, rest = _split_header(source)
    columns = _parse_header(raw_header)
    rest = _skip_blank(source, rest)
    if not rest:
        raise CsvEmpty("the file has a header but no data rows")
    return CsvStream(columns, _Pump(rest, source, min(block_size, _PUMP_CHUNK)), block_size)

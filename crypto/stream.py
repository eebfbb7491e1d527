"""Chunked streaming AEAD (STREAM, Hoang-Reyhanitabar-Rogaway-Vizár 2015) for large objects."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from types import TracebackType
from typing import BinaryIO, Final

from crypto.errors import InvalidCiphertext
from crypto.suites.aead import TAG_SIZE, AeadSuite, new_aead

# Wire format, version 1 (all integers big-endian):
#
#   header  = b"PDXS" ‖ version (1 B) ‖ suite (1 B) ‖ chunk_size (u32) ‖ nonce prefix (7 B)
#   chunk i = AEAD(key, nonce_i, plaintext_i, aad ‖ header), ciphertext ‖ 16-byte tag
#   nonce_i = nonce prefix ‖ i (u32) ‖ last-chunk flag (0x00, or 0x01 on the final chunk)
#
# This is the nonce-based STREAM of HRRV15 (CRYPTO 2015) with the layout Tink's streaming AEAD
# uses (7-byte prefix, 4-byte segment counter, 1-byte last flag). The counter in the nonce
# makes reordered, duplicated or dropped chunks fail authentication; the flag makes a
# stream cut at a chunk boundary fail (the new last chunk was sealed with flag 0); the
# header in the associated data makes any header change fail. Every non-final chunk holds
# exactly chunk_size plaintext bytes, the final one 0..chunk_size, so chunk boundaries
# are implied and any inserted, removed or trailing byte shifts them into a failed tag.
#
# The key is used directly (no per-stream key derivation as in Tink), so the 56-bit
# random prefix alone keeps nonces apart across streams under one key. By the birthday
# bound q streams collide with probability about q**2 / 2**57: pdx seals one object per
# data key, and even 2**12 streams per key stay under NIST SP 800-38D's 2**-32.

MAGIC: Final = b"PDXS"
FORMAT_VERSION: Final = 1
DEFAULT_CHUNK_SIZE: Final = 1 << 20
MIN_CHUNK_SIZE: Final = 16
# Bounds what a (possibly hostile) header can make the reader allocate: two chunks.
MAX_CHUNK_SIZE: Final = 16 << 20

_PREFIX_SIZE = 7
_HEADER = struct.Struct(">4sBBI")
HEADER_SIZE: Final = _HEADER.size + _PREFIX_SIZE
_NONCE_TAIL = struct.Struct(">IB")
_MAX_COUNTER = 0xFFFFFFFF

_OPEN, _CLOSED, _ABORTED = "open", "closed", "aborted"


def _suite(value: int) -> AeadSuite:
    try:
        return AeadSuite(value)
    except ValueError:
        raise ValueError(f"unknown AEAD suite {value}") from None


class StreamEncryptor:
    """Encrypt a byte stream into `sink` chunk by chunk, holding at most one chunk.

    Call `write` any number of times, then `close` to seal the final chunk. Used as a
    context manager, leaving the block normally closes the stream; leaving it by an
    exception does not, so an aborted stream never decrypts as complete. Any exception
    from `write` or `close` (e.g. the sink failing) aborts the stream the same way.
    `sink` must write everything it is given per call (any buffered binary file does).
    """

    def __init__(
        self,
        key: bytes,
        sink: BinaryIO,
        *,
        aad: bytes,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        suite: int = AeadSuite.AES_256_GCM,
    ) -> None:
        if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk_size must be in [{MIN_CHUNK_SIZE}, {MAX_CHUNK_SIZE}]")
        chosen = _suite(suite)
        self._aead = new_aead(chosen, key)
        self._prefix = os.urandom(_PREFIX_SIZE)
        header = _HEADER.pack(MAGIC, FORMAT_VERSION, chosen, chunk_size) + self._prefix
        self._aad = bytes(aad) + header
        self._sink = sink
        self._chunk_size = chunk_size
        # One preallocated chunk, filled in place: no reallocation per write.
        self._buffer = memoryview(bytearray(chunk_size))
        self._filled = 0
        # A whole chunk passed as immutable bytes is held by reference, not copied,
        # until the next write proves it is not the last (the gateway feeds 1 MiB bytes).
        self._held: bytes | None = None
        self._counter = 0
        self._written = 0
        self._state = _OPEN
        self._emit(header)

    def __enter__(self) -> StreamEncryptor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self._abort()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Add plaintext; every chunk known not to be the last is sealed and written."""
        if self._state != _OPEN:
            raise ValueError(f"write to a {self._state} stream")
        if not data:
            return
        try:
            if self._held is not None:
                self._seal(self._held, last=False)
                self._held = None
            if type(data) is bytes and len(data) == self._chunk_size and not self._filled:
                self._held = data
                return
            self._write(memoryview(data).cast("B"))
        except BaseException:
            self._abort()
            raise

    def close(self) -> int:
        """Seal the final chunk (possibly empty); return the ciphertext bytes written in all.

        Idempotent once closed; refused (`ValueError`) on an aborted stream.
        """
        if self._state == _CLOSED:
            return self._written
        if self._state == _ABORTED:
            raise ValueError("the stream was aborted and cannot be completed")
        try:
            if self._held is not None:
                self._seal(self._held, last=True)
                self._held = None
            else:
                self._seal(self._buffer[: self._filled], last=True)
        except BaseException:
            self._abort()
            raise
        self._filled = 0
        self._state = _CLOSED
        return self._written

    def _write(self, view: memoryview) -> None:
        size, filled, buffer = self._chunk_size, self._filled, self._buffer
        if filled + len(view) <= size:
            # May turn out to be the final chunk: hold it until more data or close().
            buffer[filled : filled + len(view)] = view
            self._filled = filled + len(view)
            return
        if filled:
            take = size - filled
            buffer[filled:] = view[:take]
            view = view[take:]
            self._seal(buffer, last=False)
            self._filled = 0
        # Seal straight from the caller's buffer (no copy) while a later byte proves
        # the chunk is not the last.
        while len(view) > size:
            self._seal(view[:size], last=False)
            view = view[size:]
        buffer[: len(view)] = view
        self._filled = len(view)

    def _seal(self, chunk: bytes | bytearray | memoryview, *, last: bool) -> None:
        if self._counter > _MAX_COUNTER or (not last and self._counter == _MAX_COUNTER):
            raise ValueError("stream too long for a 32-bit chunk counter")
        nonce = self._prefix + _NONCE_TAIL.pack(self._counter, last)
        self._emit(self._aead.encrypt(nonce, chunk, self._aad))
        self._counter += 1

    def _emit(self, data: bytes) -> None:
        self._sink.write(data)
        self._written += len(data)

    def _abort(self) -> None:
        if self._state == _OPEN:
            self._state = _ABORTED
            self._filled = 0
            self._held = None


def _read_exact(source: BinaryIO, size: int) -> bytes:
    """Read `size` bytes, fewer only at end of stream (raw files may return short reads)."""
    data = source.read(size)
    if len(data) == size or not data:
        return data
    parts = [data]
    remaining = size - len(data)
    while remaining:
        more = source.read(remaining)
        if not more:
            break
        parts.append(more)
        remaining -= len(more)
    return b"".join(parts)


def decrypt_stream(key: bytes, source: BinaryIO, *, aad: bytes) -> Iterator[bytes]:
    """Yield the plaintext of a `StreamEncryptor` stream, one verified chunk at a time.

    Raises `InvalidCiphertext` for any problem: a wrong key or `aad`, a changed header,
    a modified, reordered, duplicated or missing chunk, a stream that ends before its
    final chunk, or bytes after it. Each yielded chunk is authentic, but the stream is
    only known to be complete when the iterator finishes without error: consumers must
    not commit a result before that (e.g. write to a temporary name, rename at the end).
    """
    header = _read_exact(source, HEADER_SIZE)
    if len(header) != HEADER_SIZE:
        raise InvalidCiphertext()
    magic, version, suite_number, chunk_size = _HEADER.unpack_from(header)
    if magic != MAGIC or version != FORMAT_VERSION:
        raise InvalidCiphertext()
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise InvalidCiphertext()
    try:
        # An unknown suite, or a key of the wrong length for the header's suite (which
        # is just a wrong key), fails like any other bad ciphertext.
        aead = new_aead(AeadSuite(suite_number), key)
    except ValueError:
        raise InvalidCiphertext() from None
    prefix = header[_HEADER.size :]
    full_aad = bytes(aad) + header
    sealed_size = chunk_size + TAG_SIZE

    counter = 0
    current = _read_exact(source, sealed_size)
    while True:
        # A full-size chunk is the last one only if nothing follows it; a short one is
        # always the last, since _read_exact only comes up short at end of stream.
        following = _read_exact(source, sealed_size) if len(current) == sealed_size else b""
        last = not following
        if len(current) < TAG_SIZE or counter > _MAX_COUNTER:
            raise InvalidCiphertext()
        nonce = prefix + _NONCE_TAIL.pack(counter, last)
        plaintext = aead.decrypt(nonce, current, full_aad)
        if plaintext:
            yield plaintext
        if last:
            return
        current = following
        counter += 1

"""Tests for crypto.stream: AEAD primitives on published vectors, the STREAM format, tampering."""

from __future__ import annotations

import io
import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crypto import AeadSuite, InvalidCiphertext, StreamEncryptor, decrypt_stream
from crypto.stream import HEADER_SIZE, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE
from crypto.suites.aead import new_aead

VECTORS = Path(__file__).parent / "vectors"
TAG = 16
AAD = b"dataset:42"
KEYS = {AeadSuite.AES_256_GCM: bytes(range(32)), AeadSuite.SM4_GCM: bytes(range(16))}
SUITES = [AeadSuite.AES_256_GCM, AeadSuite.SM4_GCM]
OPAQUE = InvalidCiphertext().detail


def _vectors(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((VECTORS / name).read_text())
    return document


AES_GCM = _vectors("aes_gcm_nist.json")["tests"]
SM4_GCM = _vectors("sm4_gcm_rfc8998.json")["tests"]
FORMAT = _vectors("pdx_stream_v1.json")


# -- the primitives on published vectors ---------------------------------------------------


@pytest.mark.parametrize(
    ("suite", "case"),
    [(AeadSuite.AES_256_GCM, c) for c in AES_GCM] + [(AeadSuite.SM4_GCM, c) for c in SM4_GCM],
    ids=[c["name"] for c in AES_GCM] + [c["name"] for c in SM4_GCM],
)
def test_aead_primitive_vectors(suite: AeadSuite, case: dict[str, str]) -> None:
    aead = new_aead(suite, bytes.fromhex(case["key"]))
    iv, aad = bytes.fromhex(case["iv"]), bytes.fromhex(case["aad"])
    plaintext = bytes.fromhex(case["plaintext"])
    sealed = bytes.fromhex(case["ciphertext"] + case["tag"])
    assert aead.encrypt(iv, plaintext, aad) == sealed
    assert aead.decrypt(iv, sealed, aad) == plaintext
    tampered = bytearray(sealed)
    tampered[-1] ^= 0x01
    with pytest.raises(InvalidCiphertext):
        aead.decrypt(iv, bytes(tampered), aad)
    with pytest.raises(InvalidCiphertext):
        aead.decrypt(iv, sealed, aad + b"x")


@pytest.mark.parametrize("suite", SUITES)
def test_aead_primitive_refuses_wrong_key_length(suite: AeadSuite) -> None:
    with pytest.raises(ValueError):
        new_aead(suite, bytes(24))


# -- the wire format ------------------------------------------------------------------------


@pytest.mark.parametrize("case", FORMAT["tests"], ids=[c["name"] for c in FORMAT["tests"]])
def test_format_vector_decrypts(case: dict[str, str]) -> None:
    stream = io.BytesIO(bytes.fromhex(case["stream"]))
    key, aad = bytes.fromhex(FORMAT["key"]), bytes.fromhex(FORMAT["aad"])
    assert b"".join(decrypt_stream(key, stream, aad=aad)) == bytes.fromhex(case["plaintext"])


@pytest.mark.parametrize("case", FORMAT["tests"], ids=[c["name"] for c in FORMAT["tests"]])
def test_format_vector_is_what_the_encryptor_writes(
    case: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = bytes.fromhex(FORMAT["nonce_prefix"])
    # The nonce prefix is the stream's only randomness (os.urandom, patched for the test).
    monkeypatch.setattr("crypto.stream.os.urandom", lambda n: prefix[:n])
    sink = io.BytesIO()
    encryptor = StreamEncryptor(
        bytes.fromhex(FORMAT["key"]),
        sink,
        aad=bytes.fromhex(FORMAT["aad"]),
        chunk_size=FORMAT["chunk_size"],
    )
    encryptor.write(bytes.fromhex(case["plaintext"]))
    assert encryptor.close() == len(sink.getvalue())
    assert sink.getvalue().hex() == case["stream"]


def _manual_stream(key: bytes, chunks: list[bytes], chunk_size: int, aad: bytes) -> bytes:
    """A stream built from the format description alone, by the primitive."""
    prefix = bytes(7)
    header = b"PDXS" + bytes((1, 1)) + struct.pack(">I", chunk_size) + prefix
    aead = new_aead(AeadSuite.AES_256_GCM, key)
    out = header
    for index, chunk in enumerate(chunks):
        nonce = prefix + struct.pack(">IB", index, index == len(chunks) - 1)
        out += aead.encrypt(nonce, chunk, aad + header)
    return out


def test_empty_final_chunk_after_full_chunk_is_accepted_and_required() -> None:
    key = KEYS[AeadSuite.AES_256_GCM]
    stream = _manual_stream(key, [b"a" * 32, b""], 32, AAD)
    assert b"".join(decrypt_stream(key, io.BytesIO(stream), aad=AAD)) == b"a" * 32
    with pytest.raises(InvalidCiphertext):
        list(decrypt_stream(key, io.BytesIO(stream[:-TAG]), aad=AAD))


# -- round trips ----------------------------------------------------------------------------


def _encrypt(
    plaintext: bytes,
    *,
    suite: AeadSuite = AeadSuite.AES_256_GCM,
    chunk_size: int = 64,
    piece: int | None = None,
    aad: bytes = AAD,
) -> bytes:
    sink = io.BytesIO()
    encryptor = StreamEncryptor(KEYS[suite], sink, aad=aad, chunk_size=chunk_size, suite=suite)
    if piece is None:
        encryptor.write(plaintext)
    else:
        view = memoryview(plaintext)
        for start in range(0, len(plaintext), piece):
            encryptor.write(view[start : start + piece])
    total = encryptor.close()
    assert total == len(sink.getvalue())
    return sink.getvalue()


def _decrypt(stream: bytes, *, suite: AeadSuite = AeadSuite.AES_256_GCM, aad: bytes = AAD) -> bytes:
    return b"".join(decrypt_stream(KEYS[suite], io.BytesIO(stream), aad=aad))


def _sizes(chunk: int) -> list[int]:
    return [0, 1, chunk - 1, chunk, chunk + 1, chunk * 7 // 2]


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("size", _sizes(64))
@pytest.mark.parametrize("piece", [None, 1, 13, 64, 100])
def test_round_trip_small_chunks(suite: AeadSuite, size: int, piece: int | None) -> None:
    plaintext = os.urandom(size)
    stream = _encrypt(plaintext, suite=suite, piece=piece)
    chunks = max(1, -(-size // 64))
    assert len(stream) == HEADER_SIZE + size + TAG * chunks
    assert _decrypt(stream, suite=suite) == plaintext


@pytest.mark.parametrize("size", _sizes(1 << 20))
def test_round_trip_default_chunk_size(size: int) -> None:
    plaintext = os.urandom(size)
    sink = io.BytesIO()
    encryptor = StreamEncryptor(KEYS[AeadSuite.AES_256_GCM], sink, aad=AAD)
    encryptor.write(plaintext)
    encryptor.close()
    pieces = list(decrypt_stream(KEYS[AeadSuite.AES_256_GCM], io.BytesIO(sink.getvalue()), aad=AAD))
    assert all(len(piece) <= 1 << 20 for piece in pieces)
    assert b"".join(pieces) == plaintext


def test_write_accepts_bytearray_and_typed_memoryview() -> None:
    sink = io.BytesIO()
    encryptor = StreamEncryptor(KEYS[AeadSuite.AES_256_GCM], sink, aad=AAD, chunk_size=64)
    encryptor.write(bytearray(b"ab"))
    encryptor.write(memoryview(struct.pack("<3I", 1, 2, 3)).cast("I"))
    encryptor.close()
    assert _decrypt(sink.getvalue()) == b"ab" + struct.pack("<3I", 1, 2, 3)


def test_two_streams_of_the_same_plaintext_differ() -> None:
    assert _encrypt(b"same") != _encrypt(b"same")


class _TrickleReader(io.RawIOBase):
    """A raw source returning at most 7 bytes per read, as pipes and sockets may."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self._data.read(min(7, len(buffer)))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def test_short_reads_from_the_source_are_fine() -> None:
    plaintext = os.urandom(64 * 3 + 5)
    stream = _encrypt(plaintext)
    source = _TrickleReader(stream)
    out = decrypt_stream(KEYS[AeadSuite.AES_256_GCM], source, aad=AAD)  # type: ignore[arg-type]
    assert b"".join(out) == plaintext


# -- tampering: every case is the same opaque InvalidCiphertext -----------------------------


def _fails(stream: bytes, *, key: bytes | None = None, aad: bytes = AAD) -> None:
    key = KEYS[AeadSuite.AES_256_GCM] if key is None else key
    with pytest.raises(InvalidCiphertext) as raised:
        list(decrypt_stream(key, io.BytesIO(stream), aad=aad))
    assert raised.value.detail == OPAQUE


@pytest.fixture(scope="module")
def stream() -> bytes:
    """3.5 chunks of 64 bytes: chunks 0-2 full, chunk 3 final with 32 bytes."""
    return _encrypt(bytes(range(224)))


def _chunks(stream: bytes) -> tuple[bytes, list[bytes]]:
    header, body = stream[:HEADER_SIZE], stream[HEADER_SIZE:]
    sealed = 64 + TAG
    return header, [body[i : i + sealed] for i in range(0, len(body), sealed)]


def test_untouched_fixture_decrypts(stream: bytes) -> None:
    assert _decrypt(stream) == bytes(range(224))


@pytest.mark.parametrize("cut", [0, 1, HEADER_SIZE - 1, HEADER_SIZE, HEADER_SIZE + 1])
def test_truncated_inside_header_or_before_any_chunk(stream: bytes, cut: int) -> None:
    _fails(stream[:cut])


def test_truncated_at_each_chunk_boundary(stream: bytes) -> None:
    header, chunks = _chunks(stream)
    for keep in range(len(chunks)):
        _fails(header + b"".join(chunks[:keep]))


def test_truncated_inside_the_final_chunk(stream: bytes) -> None:
    for drop in (1, TAG, TAG + 1):
        _fails(stream[:-drop])


def test_reordered_chunks(stream: bytes) -> None:
    header, chunks = _chunks(stream)
    _fails(header + chunks[1] + chunks[0] + b"".join(chunks[2:]))
    _fails(header + chunks[0] + chunks[2] + chunks[1] + chunks[3])


def test_duplicated_chunk(stream: bytes) -> None:
    header, chunks = _chunks(stream)
    _fails(header + chunks[0] + chunks[0] + b"".join(chunks[1:]))
    _fails(header + b"".join(chunks) + chunks[-1])


@pytest.mark.parametrize("extra", [b"\x00", b"x" * TAG, b"y" * (64 + TAG)])
def test_trailing_data_after_final_chunk(stream: bytes, extra: bytes) -> None:
    _fails(stream + extra)


def test_final_chunk_of_an_exact_multiple_cannot_be_extended() -> None:
    stream = _encrypt(bytes(128))
    _, chunks = _chunks(stream)
    _fails(stream + chunks[0])


@pytest.mark.parametrize("position", range(HEADER_SIZE))
def test_every_header_byte_is_authenticated(stream: bytes, position: int) -> None:
    tampered = bytearray(stream)
    tampered[position] ^= 0x01
    _fails(bytes(tampered))


def test_every_ciphertext_and_tag_byte_is_authenticated(stream: bytes) -> None:
    for position in range(HEADER_SIZE, len(stream)):
        tampered = bytearray(stream)
        tampered[position] ^= 0x80
        _fails(bytes(tampered))


def test_header_with_huge_chunk_size_is_refused_before_reading(stream: bytes) -> None:
    tampered = bytearray(stream)
    struct.pack_into(">I", tampered, 6, MAX_CHUNK_SIZE + 1)
    _fails(bytes(tampered))


def test_chunk_from_another_stream_under_the_same_key(stream: bytes) -> None:
    other = _encrypt(bytes(range(224)))
    header, chunks = _chunks(stream)
    _, other_chunks = _chunks(other)
    _fails(header + other_chunks[0] + b"".join(chunks[1:]))


def test_wrong_aad(stream: bytes) -> None:
    _fails(stream, aad=AAD + b"0")
    _fails(stream, aad=b"")


def test_aad_is_not_ambiguous_with_the_header() -> None:
    # aad ‖ header: moving bytes between the caller's aad and the stream must fail.
    stream = _encrypt(b"data", aad=b"ab")
    _fails(stream, aad=b"a")


def test_wrong_key(stream: bytes) -> None:
    _fails(stream, key=bytes(32))
    _fails(stream, key=KEYS[AeadSuite.SM4_GCM])


def test_suite_swap_with_a_key_of_the_other_length() -> None:
    stream = _encrypt(b"sm4 data", suite=AeadSuite.SM4_GCM)
    _fails(stream, key=KEYS[AeadSuite.AES_256_GCM])
    tampered = bytearray(stream)
    tampered[5] = AeadSuite.AES_256_GCM
    _fails(bytes(tampered), key=bytes(range(32)))


# -- lifecycle of an encryptor --------------------------------------------------------------


def test_context_manager_closes_on_success() -> None:
    sink = io.BytesIO()
    with StreamEncryptor(KEYS[AeadSuite.AES_256_GCM], sink, aad=AAD, chunk_size=64) as enc:
        enc.write(b"complete")
    assert _decrypt(sink.getvalue()) == b"complete"


def test_exception_inside_context_manager_leaves_no_final_chunk() -> None:
    sink = io.BytesIO()
    with pytest.raises(RuntimeError):
        with StreamEncryptor(KEYS[AeadSuite.AES_256_GCM], sink, aad=AAD, chunk_size=64) as enc:
            enc.write(bytes(200))
            raise RuntimeError("upload interrupted")
    assert len(sink.getvalue()) == HEADER_SIZE + 3 * (64 + TAG)
    _fails(sink.getvalue())
    with pytest.raises(ValueError):
        enc.close()
    with pytest.raises(ValueError):
        enc.write(b"more")


def test_close_is_idempotent_and_write_after_close_is_refused() -> None:
    sink = io.BytesIO()
    enc = StreamEncryptor(KEYS[AeadSuite.AES_256_GCM], sink, aad=AAD, chunk_size=64)
    enc.write(b"x")
    total = enc.close()
    assert enc.close() == total == len(sink.getvalue())
    with pytest.raises(ValueError):
        enc.write(b"y")


class _FailingSink(io.BytesIO):
    def __init__(self, fail_after: int) -> None:
        super().__init__()
        self._writes_left = fail_after

    def write(self, data: Any) -> int:
        if self._writes_left == 0:
            raise OSError("disk full")
        self._writes_left -= 1
        return super().write(data)


def test_sink_failure_aborts_the_stream() -> None:
    sink = _FailingSink(fail_after=2)  # header and chunk 0 go through
    enc = StreamEncryptor(KEYS[AeadSuite.AES_256_GCM], sink, aad=AAD, chunk_size=64)
    with pytest.raises(OSError):
        enc.write(bytes(300))
    with pytest.raises(ValueError):
        enc.close()
    _fails(sink.getvalue())


@pytest.mark.parametrize("chunk_size", [0, MIN_CHUNK_SIZE - 1, MAX_CHUNK_SIZE + 1])
def test_chunk_size_bounds(chunk_size: int) -> None:
    with pytest.raises(ValueError):
        StreamEncryptor(KEYS[AeadSuite.AES_256_GCM], io.BytesIO(), aad=AAD, chunk_size=chunk_size)


def test_unknown_suite_and_wrong_key_length_are_refused() -> None:
    with pytest.raises(ValueError):
        StreamEncryptor(KEYS[AeadSuite.AES_256_GCM], io.BytesIO(), aad=AAD, suite=3)
    with pytest.raises(ValueError):
        StreamEncryptor(bytes(16), io.BytesIO(), aad=AAD)
    with pytest.raises(ValueError):
        StreamEncryptor(bytes(32), io.BytesIO(), aad=AAD, suite=AeadSuite.SM4_GCM)


def test_decryption_is_lazy_and_chunked() -> None:
    plaintext = os.urandom(64 * 3)
    source = io.BytesIO(_encrypt(plaintext))
    chunks: Iterator[bytes] = decrypt_stream(KEYS[AeadSuite.AES_256_GCM], source, aad=AAD)
    assert source.tell() == 0
    assert next(chunks) == plaintext[:64]
    # Chunk 0 is released after reading at most chunk 1 (to learn it is not last).
    assert source.tell() <= HEADER_SIZE + 2 * (64 + TAG)
    assert b"".join(chunks) == plaintext[64:]


@pytest.mark.parametrize(
    "pattern",
    [
        ["chunk", "close"],  # a held chunk turns out to be the last
        ["chunk", "chunk", "close"],
        ["chunk", "empty", "chunk", "small", "close"],
        ["small", "chunk", "chunk", "close"],
        ["chunk", "array", "chunk", "close"],
    ],
)
def test_whole_bytes_chunks_held_by_reference_round_trip(pattern: list[str]) -> None:
    """Whole chunks passed as bytes are not copied, and still seal with the right flags."""
    size = MIN_CHUNK_SIZE
    key = os.urandom(32)
    pieces = {
        "chunk": lambda: os.urandom(size),
        "empty": lambda: b"",
        "small": lambda: os.urandom(size // 3),
        "array": lambda: bytearray(os.urandom(size)),
    }
    sink = io.BytesIO()
    plain = b""
    enc = StreamEncryptor(key, sink, aad=b"ctx", chunk_size=size)
    for step in pattern:
        if step == "close":
            enc.close()
            continue
        data = pieces[step]()
        plain += bytes(data)
        enc.write(data)
    sink.seek(0)
    assert b"".join(decrypt_stream(key, sink, aad=b"ctx")) == plain
    truncated = io.BytesIO(sink.getvalue()[: HEADER_SIZE + (size + 16)])
    if len(plain) > size:
        with pytest.raises(InvalidCiphertext):
            b"".join(decrypt_stream(key, truncated, aad=b"ctx"))

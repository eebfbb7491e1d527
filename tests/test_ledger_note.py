"""Tests for ledger.note and ledger.checkpoint: Go sumdb/note and C2SP vectors, edge cases."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from crypto import SignatureAlgorithm, generate_key_pair, load_key_pair
from ledger import note as note_module
from ledger.checkpoint import Checkpoint, parse
from ledger.errors import CheckpointError, LedgerError, NoteError
from ledger.note import (
    ALG_ED25519,
    Ed25519NoteSigner,
    Ed25519NoteVerifier,
    NoteVerifier,
    key_hash,
    open_note,
    parse_verifier_key,
    register_verifier_algorithm,
    sign_note,
    verifier_key,
)

VECTORS = Path(__file__).parent / "vectors"
GO = json.loads((VECTORS / "signed_note_go.json").read_text())
CHECKPOINTS = json.loads((VECTORS / "signed_note_checkpoints.json").read_text())

TEXT: str = GO["text"]
PETER_SIG: str = GO["peter"]["signature_line"]
ENOCH_SIG: str = GO["enoch"]["signature_line"]


def _go_signer(skey: str) -> Ed25519NoteSigner:
    """A signer from Go's "PRIVATE+KEY+<name>+<hash>+<base64(0x01 || seed)>" form."""
    private, key, name, hash_hex, key_b64 = skey.split("+", 4)
    assert (private, key) == ("PRIVATE", "KEY")
    raw = base64.b64decode(key_b64)
    assert raw[0] == ALG_ED25519 and len(raw) == 33
    signer = Ed25519NoteSigner(name, load_key_pair(SignatureAlgorithm.ED25519, raw[1:]))
    assert signer.key_hash == int(hash_hex, 16)
    return signer


PETER = parse_verifier_key(GO["peter"]["verifier_key"])
ENOCH = parse_verifier_key(GO["enoch"]["verifier_key"])


# --- keys ---------------------------------------------------------------------------


def test_go_signer_reproduces_the_published_signature() -> None:
    """note_test.go TestSign: Ed25519 is deterministic, so the bytes must match exactly."""
    signer = _go_signer(GO["peter"]["signer_key"])
    assert signer.name == "PeterNeumann"
    assert f"{signer.key_hash:08x}" == GO["peter"]["key_hash"]
    assert sign_note(TEXT, signer) == GO["signed"].encode("utf-8")
    assert verifier_key(signer.name, signer.verifier().public_key) == GO["peter"]["verifier_key"]


def test_parse_verifier_key() -> None:
    assert PETER.name == "PeterNeumann"
    assert f"{PETER.key_hash:08x}" == GO["peter"]["key_hash"]
    assert isinstance(PETER, Ed25519NoteVerifier)
    assert f"{ENOCH.key_hash:08x}" == GO["enoch"]["key_hash"]
    upper = GO["peter"]["verifier_key"].replace("c74f20a3", "C74F20A3")
    assert parse_verifier_key(upper).key_hash == PETER.key_hash


def test_mangled_verifier_keys_are_refused() -> None:
    """note_test.go TestNewVerifier: every proper substring and every +1 byte change fails."""
    vkey = GO["peter"]["verifier_key"]
    for i in range(len(vkey) + 1):
        for j in range(i + 1, len(vkey) + 1):
            if (i, j) != (0, len(vkey)):
                with pytest.raises(NoteError):
                    parse_verifier_key(vkey[i:j])
    for i in range(len(vkey)):
        with pytest.raises(NoteError):
            parse_verifier_key(vkey[:i] + chr(ord(vkey[i]) + 1) + vkey[i + 1 :])
    for case in GO["bad_verifier_keys"]:
        with pytest.raises(NoteError):
            parse_verifier_key(case["key"])
    with pytest.raises(NoteError, match="unknown verifier algorithm"):
        parse_verifier_key(GO["bad_verifier_keys"][1]["key"])


@pytest.mark.parametrize(
    "pair", CHECKPOINTS["key_pairs"], ids=lambda p: p["verifier_key"].split("+")[0]
)
def test_go_key_pairs(pair: dict[str, str]) -> None:
    signer = _go_signer(pair["signer_key"])
    public = signer.verifier().public_key
    assert verifier_key(signer.name, public) == pair["verifier_key"]
    assert verifier_key(signer.name, public.public_bytes()) == pair["verifier_key"]
    verifier = parse_verifier_key(pair["verifier_key"])
    text, names = open_note(sign_note("hello\n", signer), [verifier])
    assert (text, names) == ("hello\n", [signer.name])


def test_key_hash_is_the_c2sp_key_id() -> None:
    public = PETER.public_key.public_bytes()  # type: ignore[attr-defined]
    assert key_hash("PeterNeumann", bytes([ALG_ED25519]) + public) == 0xC74F20A3


def test_verifier_key_rejects_bad_input() -> None:
    public = generate_key_pair(SignatureAlgorithm.ED25519).public_key()
    for name in ("", "a b", "a+b", "a\u2003b", "a\nb", "a\x01b"):
        with pytest.raises(NoteError):
            verifier_key(name, public)
    with pytest.raises(NoteError):
        verifier_key("ok", b"\x00" * 31)


# --- signing and opening -------------------------------------------------------------


def test_open_go_note() -> None:
    assert open_note(GO["signed"].encode(), [PETER]) == (TEXT, ["PeterNeumann"])


def test_open_follows_go_test_open() -> None:
    msg = (TEXT + "\n" + PETER_SIG + ENOCH_SIG).encode()
    # one verified, one unknown (ignored)
    assert open_note(msg, [PETER]) == (TEXT, ["PeterNeumann"])
    assert open_note(msg, [ENOCH]) == (TEXT, ["EnochRoot"])
    # both verified, in note order
    assert open_note(msg, [ENOCH, PETER]) == (TEXT, ["PeterNeumann", "EnochRoot"])
    # none known
    with pytest.raises(NoteError, match="no verifiable signatures"):
        open_note(msg, [])
    # duplicated verifier: ambiguous when used, harmless otherwise
    with pytest.raises(NoteError, match="ambiguous key EnochRoot\\+af0cfe78"):
        open_note((TEXT + "\n" + ENOCH_SIG).encode(), [ENOCH, PETER, ENOCH])
    assert open_note((TEXT + "\n" + PETER_SIG).encode(), [ENOCH, PETER, ENOCH])[1] == [
        "PeterNeumann"
    ]
    # more than 100 signature lines
    with pytest.raises(NoteError, match="malformed"):
        open_note((TEXT + "\n" + PETER_SIG * 101).encode(), [PETER])
    with pytest.raises(NoteError, match="malformed"):
        open_note((TEXT + "\n" + PETER_SIG * 101).encode(), [])
    assert open_note((TEXT + "\n" + PETER_SIG * 100).encode(), [PETER])[1] == ["PeterNeumann"]


def test_invalid_signature_from_a_known_key_rejects_the_note() -> None:
    peter = PETER_SIG.encode()
    tampered = peter[:60] + b"ABCD" + peter[60:]
    with pytest.raises(NoteError, match="invalid signature for key PeterNeumann\\+c74f20a3"):
        open_note(TEXT.encode() + b"\n" + tampered, [PETER])
    # a bad signature from an unknown key is ignored (Go: duplicated verified/unverified)
    enoch = ENOCH_SIG.encode()
    msg = TEXT.encode() + b"\n" + peter + peter + enoch + enoch + enoch[:60] + b"ABCD" + enoch[60:]
    assert open_note(msg, [PETER]) == (TEXT, ["PeterNeumann"])


@pytest.mark.parametrize(
    "msg",
    [
        TEXT.encode(),
        (TEXT + "\n").encode(),
        (TEXT + "\n" + PETER_SIG[:-1]).encode(),
        b"\x01" + (TEXT + "\n" + PETER_SIG).encode(),
        b"\xff" + (TEXT + "\n" + PETER_SIG).encode(),
        (
            TEXT
            + "\n"
            + "\u2014 Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqf"
            + "qdngotpRZb6KE6RyyBwJnAM="
        ).encode(),
        (TEXT + "\n" + PETER_SIG + "Unexpected line.\n").encode(),
        # beyond Go's list
        (TEXT + "\n" + PETER_SIG.replace("\u2014", "-")).encode(),
        (TEXT + "\n" + PETER_SIG.replace("=\n", "\n")).encode(),
        (TEXT + "\n" + "\u2014 PeterNeumann \n").encode(),
        (TEXT + "\n" + "\u2014 PeterNeumann AAAAAA==\n").encode(),
        (TEXT + "\n" + PETER_SIG + "\n").encode(),
        (TEXT.replace("\n", "\r\n", 1) + "\n" + PETER_SIG).encode(),
        b"\xed\xa0\x80" + (TEXT + "\n" + PETER_SIG).encode(),
    ],
)
def test_malformed_notes(msg: bytes) -> None:
    with pytest.raises(NoteError):
        open_note(msg, [PETER])


def test_misnamed_or_rehashed_signatures_are_unknown() -> None:
    misnamed = PETER_SIG.replace("PeterNeumann", "CarmenSandiego")
    with pytest.raises(NoteError, match="no verifiable signatures"):
        open_note((TEXT + "\n" + misnamed).encode(), [PETER])
    wrong_hash = PETER_SIG.replace("x08g", "xxxx")
    with pytest.raises(NoteError, match="no verifiable signatures"):
        open_note((TEXT + "\n" + wrong_hash).encode(), [PETER])


def test_sign_and_open_round_trip() -> None:
    a = Ed25519NoteSigner("example.com/log", generate_key_pair(SignatureAlgorithm.ED25519))
    b = Ed25519NoteSigner("witness.example/w1", generate_key_pair(SignatureAlgorithm.ED25519))
    text = "first line\n\nafter an empty line \u00e9\n"
    msg = sign_note(text, a, b)
    assert msg.count("\u2014".encode()) == 2
    assert open_note(msg, [a.verifier(), b.verifier()]) == (text, [a.name, b.name])
    assert open_note(msg, [b.verifier()]) == (text, [b.name])
    # a tampered text fails under a known key
    tampered = msg.replace(b"first", b"First")
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(tampered, [a.verifier()])
    # same name, another key: unknown, ignored (C2SP: share a name but not the ID)
    other = Ed25519NoteSigner("example.com/log", generate_key_pair(SignatureAlgorithm.ED25519))
    with pytest.raises(NoteError, match="no verifiable signatures"):
        open_note(msg, [other.verifier()])


def test_sign_note_rejects_bad_input() -> None:
    signer = Ed25519NoteSigner("ok", generate_key_pair(SignatureAlgorithm.ED25519))
    for text in ("no newline", "ctrl \x01\n", "tab\tchar\n", "lone \ud800\n", ""):
        with pytest.raises(NoteError):
            sign_note(text, signer)
    with pytest.raises(NoteError):
        sign_note("text\n")
    for name in ("", "has space", "a+b", "nbsp\u00a0", "line\u2028sep"):
        with pytest.raises(NoteError):
            Ed25519NoteSigner(name, generate_key_pair(SignatureAlgorithm.ED25519))

    class BadSigner:
        name = "bad name"
        key_hash = 1

        def sign(self, msg: bytes) -> bytes:
            return b"x"

    class BigHash:
        name = "big"
        key_hash = 2**32

        def sign(self, msg: bytes) -> bytes:
            return b"x"

    with pytest.raises(NoteError):
        sign_note("text\n", BadSigner())
    with pytest.raises(NoteError) as info:
        sign_note("text\n", BigHash())
    assert isinstance(info.value, LedgerError)
    assert info.value.code == "ledger-note-invalid"


def test_other_algorithms_can_register(monkeypatch: pytest.MonkeyPatch) -> None:
    """An algorithm byte maps to a verifier factory (how SM2 will plug in)."""
    monkeypatch.setattr(note_module, "_VERIFIER_FACTORIES", dict(note_module._VERIFIER_FACTORIES))

    class XorVerifier:
        """A toy algorithm: the signature is the message XOR the key byte."""

        def __init__(self, name: str, key: bytes) -> None:
            self.name = name
            self.key = key
            self.key_hash = key_hash(name, b"\xfa" + key)

        def verify(self, msg: bytes, sig: bytes) -> bool:
            return sig == bytes(b ^ self.key[0] for b in msg)

    class XorSigner:
        def __init__(self, name: str, key: bytes) -> None:
            self.name = name
            self.key = key
            self.key_hash = key_hash(name, b"\xfa" + key)

        def sign(self, msg: bytes) -> bytes:
            return bytes(b ^ self.key[0] for b in msg)

    def factory(name: str, key: bytes) -> NoteVerifier:
        if len(key) != 1:
            raise ValueError("one byte")
        return XorVerifier(name, key)

    encoded = b"\xfa\x5a"
    vkey = f"toy+{key_hash('toy', encoded):08x}+{base64.b64encode(encoded).decode()}"
    with pytest.raises(NoteError, match="unknown verifier algorithm 0xfa"):
        parse_verifier_key(vkey)
    register_verifier_algorithm(0xFA, factory)
    register_verifier_algorithm(0xFA, factory)  # idempotent for the same factory
    verifier = parse_verifier_key(vkey)
    msg = sign_note("toy\n", XorSigner("toy", b"\x5a"))
    assert open_note(msg, [verifier]) == ("toy\n", ["toy"])
    bad = b"\xfa\x5a\x00"
    with pytest.raises(NoteError):
        parse_verifier_key(f"toy+{key_hash('toy', bad):08x}+{base64.b64encode(bad).decode()}")
    with pytest.raises(ValueError):
        register_verifier_algorithm(ALG_ED25519, factory)
    with pytest.raises(ValueError):
        register_verifier_algorithm(256, factory)


# --- checkpoints --------------------------------------------------------------------


def test_sumdb_checkpoint_note() -> None:
    """A real sum.golang.org checkpoint, checked with its published verifier key."""
    case = CHECKPOINTS["sumdb"]
    verifier = parse_verifier_key(case["verifier_key"])
    text, names = open_note(case["note"].encode(), [verifier])
    assert names == ["sum.golang.org"]
    checkpoint = Checkpoint.parse(text)
    assert checkpoint.origin == case["origin"]
    assert checkpoint.size == case["size"]
    assert checkpoint.root_hash == base64.b64decode(case["root_hash_base64"])
    assert checkpoint.extensions == ()
    assert checkpoint.body() == text
    # tampering with the size breaks the signature
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(case["note"].replace("6476701", "6476702").encode(), [verifier])


def test_sumdb_checkpoint_with_cosignatures() -> None:
    case = CHECKPOINTS["sumdb"]
    msg = (
        case["note"]
        + "".join(c["signature_line"] for c in case["cosigners"])
        + "".join(case["unknown_signature_lines"])
    ).encode()
    verifiers = [parse_verifier_key(case["verifier_key"])] + [
        parse_verifier_key(c["verifier_key"]) for c in case["cosigners"]
    ]
    text, names = open_note(msg, verifiers)
    assert names == ["sum.golang.org", "monkeys", "bananas", "witness"]
    assert Checkpoint.parse(text).size == case["size"]
    assert open_note(msg, verifiers[2:3])[1] == ["bananas"]


@pytest.mark.parametrize(
    "case", CHECKPOINTS["bodies"], ids=lambda c: c["text"].split("\n")[0] + c["text"][-6:-1]
)
def test_checkpoint_bodies(case: dict[str, Any]) -> None:
    checkpoint = parse(case["text"])
    assert checkpoint.origin == case["origin"]
    assert checkpoint.size == case["size"]
    if "root_hash_ascii" in case:
        assert checkpoint.root_hash == case["root_hash_ascii"].encode()
    else:
        assert checkpoint.root_hash == base64.b64decode(case["root_hash_base64"])
    assert checkpoint.extensions == tuple(case.get("extensions", ()))
    assert checkpoint.body() == case["text"]
    assert (
        Checkpoint(
            case["origin"], case["size"], checkpoint.root_hash, tuple(case.get("extensions", ()))
        )
        == checkpoint
    )


@pytest.mark.parametrize(
    "case", CHECKPOINTS["invalid_bodies"], ids=lambda c: c["why"].split(" (")[0]
)
def test_invalid_checkpoint_bodies(case: dict[str, str]) -> None:
    with pytest.raises(CheckpointError):
        Checkpoint.parse(case["text"])


@pytest.mark.parametrize(
    "text",
    [
        "Log\n0123\nYmFuYW5hcw==\n",
        "Log\n+5\nYmFuYW5hcw==\n",
        "Log\n 5\nYmFuYW5hcw==\n",
        "Log\n\u0661\u0662\nYmFuYW5hcw==\n",
        "Log\n18446744073709551616\nYmFuYW5hcw==\n",
        "Log\n5\n\n",
        "Log\n5\nYmFuYW5hcx==\n",
        "Log\n5\nYmFuYW5hcw\n",
        "Log\n5\nYmFu YW5hcw==\n",
        "Log\r\n5\nYmFuYW5hcw==\n",
        "Log\n5\nYmFuYW5hcw==\next\n\nmore\n",
        "",
        "\n",
    ],
)
def test_checkpoint_parse_is_strict(text: str) -> None:
    with pytest.raises(CheckpointError) as info:
        Checkpoint.parse(text)
    assert info.value.code == "ledger-checkpoint-invalid"


def test_checkpoint_zero_and_max_size() -> None:
    empty = Checkpoint("example.com/log", 0, b"\xe3" * 32)
    assert Checkpoint.parse(empty.body()) == empty
    assert empty.body().split("\n")[1] == "0"
    big = Checkpoint("example.com/log", 2**64 - 1, b"\x01")
    assert Checkpoint.parse(big.body()).size == 2**64 - 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"origin": ""},
        {"origin": "a\nb"},
        {"origin": "a\x00b"},
        {"size": -1},
        {"size": 2**64},
        {"size": True},
        {"root_hash": b""},
        {"extensions": ("",)},
        {"extensions": ("a\nb",)},
        {"extensions": ["list"]},
    ],
)
def test_checkpoint_validates_at_construction(kwargs: dict[str, Any]) -> None:
    fields: dict[str, Any] = {"origin": "o", "size": 1, "root_hash": b"\x00" * 32}
    fields.update(kwargs)
    with pytest.raises(CheckpointError):
        Checkpoint(**fields)


def test_checkpoint_signed_and_opened() -> None:
    signer = Ed25519NoteSigner("example.com/log", generate_key_pair(SignatureAlgorithm.ED25519))
    checkpoint = Checkpoint("example.com/log", 42, bytes(range(32)), ("ext one",))
    text, names = open_note(sign_note(checkpoint.body(), signer), [signer.verifier()])
    assert names == ["example.com/log"]
    assert Checkpoint.parse(text) == checkpoint

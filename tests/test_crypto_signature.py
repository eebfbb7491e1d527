"""Tests for crypto.suites.signature: RFC 8032, RFC 6979 and SM2 vectors, uniform behaviour."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from crypto.errors import CryptoError, InvalidKey, UnsupportedAlgorithm
from crypto.suites import signature
from crypto.suites.signature import SignatureAlgorithm

VECTORS = Path(__file__).parent / "vectors"
ALGORITHMS = list(SignatureAlgorithm)

# RFC 8032 section 7.1, Ed25519 tests 1, 2, 3 and SHA(abc): (secret, public, message, sig).
RFC8032 = [
    (
        "TEST 1",
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "TEST 2",
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "TEST 3",
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
        "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
    (
        "TEST SHA(abc)",
        "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
        "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
        hashlib.sha512(b"abc").hexdigest(),
        "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b589"
        "09351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704",
    ),
]

ECDSA: dict[str, Any] = json.loads((VECTORS / "ecdsa_p256_rfc6979.json").read_text())
SM2: dict[str, Any] = json.loads((VECTORS / "sm2_gbt32918.json").read_text())["tests"][0]


@pytest.fixture(scope="module", params=ALGORITHMS, ids=[a.value for a in ALGORITHMS])
def pair(request: pytest.FixtureRequest) -> signature.SigningKeyPair:
    return signature.generate(request.param)


# -- standard vectors ---------------------------------------------------------------------


@pytest.mark.parametrize("case", RFC8032, ids=[c[0] for c in RFC8032])
def test_ed25519_rfc8032(case: tuple[str, str, str, str, str]) -> None:
    _, secret, public, message, expected = (case[0], *map(bytes.fromhex, case[1:]))
    pair = signature.load_private("ed25519", secret)
    assert pair.public_bytes() == public
    assert pair.sign(message) == expected
    verifier = signature.load_public(SignatureAlgorithm.ED25519, public)
    assert verifier.verify(message, expected)
    assert not verifier.verify(message + b"\x00", expected)


@pytest.mark.parametrize("case", ECDSA["tests"], ids=[c["message_ascii"] for c in ECDSA["tests"]])
def test_ecdsa_p256_rfc6979(case: dict[str, str]) -> None:
    message = case["message_ascii"].encode("ascii")
    expected = bytes.fromhex(case["r"] + case["s"])
    pair = signature.load_private("ecdsa-p256-sha256", bytes.fromhex(ECDSA["private_key"]))
    assert pair.public_bytes() == bytes.fromhex(ECDSA["public_key"])
    # Deterministic signing (RFC 6979) reproduces the published r and s exactly.
    assert pair.sign(message) == expected
    verifier = signature.load_public("ecdsa-p256-sha256", bytes.fromhex(ECDSA["public_key"]))
    assert verifier.verify(message, expected)
    assert not verifier.verify(message + b"!", expected)


def test_sm2_sample_through_the_uniform_api() -> None:
    verifier = signature.load_public("sm2-sm3", bytes.fromhex(SM2["public_key"]))
    message = SM2["message_ascii"].encode("ascii")
    good = bytes.fromhex(SM2["r"] + SM2["s"])
    assert verifier.verify(message, good)
    pair = signature.load_private("sm2-sm3", bytes.fromhex(SM2["private_key"]))
    assert pair.public_key() == verifier
    assert verifier.verify(message, pair.sign(message))


# -- the same behaviour for every algorithm ---------------------------------------------


def test_round_trip(pair: signature.SigningKeyPair) -> None:
    sig = pair.sign(b"dataset:7 released to org-b")
    assert len(sig) == signature.SIGNATURE_SIZE
    assert pair.public_key().verify(b"dataset:7 released to org-b", sig)
    assert not pair.public_key().verify(b"dataset:7 released to org-c", sig)


def test_keys_reload_from_their_bytes(pair: signature.SigningKeyPair) -> None:
    again = signature.load_private(pair.algorithm, pair.private_bytes())
    assert again.public_bytes() == pair.public_bytes()
    verifier = signature.load_public(pair.algorithm.value, pair.public_bytes())
    assert verifier == pair.public_key()
    assert hash(verifier) == hash(pair.public_key())
    assert verifier.verify(b"m", again.sign(b"m"))


def test_encoding_sizes(pair: signature.SigningKeyPair) -> None:
    assert len(pair.private_bytes()) == 32
    expected_public = 32 if pair.algorithm is SignatureAlgorithm.ED25519 else 65
    assert len(pair.public_bytes()) == expected_public


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(b"", id="empty"),
        pytest.param(bytes(64), id="zeros"),
        pytest.param(b"\xff" * 64, id="ones"),
        pytest.param(os.urandom(64), id="random"),
        pytest.param(os.urandom(63), id="short"),
        pytest.param(os.urandom(72), id="DER-sized"),
    ],
)
def test_verify_never_raises_on_garbage(pair: signature.SigningKeyPair, bad: bytes) -> None:
    assert pair.public_key().verify(b"m", bad) is False


def test_tampered_signature_fails(pair: signature.SigningKeyPair) -> None:
    sig = bytearray(pair.sign(b"m"))
    for index in (0, 31, 32, 63):
        tampered = bytearray(sig)
        tampered[index] ^= 0x80
        assert pair.public_key().verify(b"m", bytes(tampered)) is False


def test_signature_of_another_algorithm_fails(pair: signature.SigningKeyPair) -> None:
    for other in ALGORITHMS:
        if other is not pair.algorithm:
            assert not pair.public_key().verify(b"m", signature.generate(other).sign(b"m"))


def test_repr_never_shows_private_material(pair: signature.SigningKeyPair) -> None:
    text = repr(pair) + str(pair) + repr(pair.public_key())
    assert pair.private_bytes().hex() not in text
    assert "hidden" in repr(pair)
    assert pair.algorithm.value in repr(pair)


# -- malformed keys and names ---------------------------------------------------------------

_P256_N = 0xFFFFFFFF_00000000_FFFFFFFF_FFFFFFFF_BCE6FAAD_A7179E84_F3B9CAC2_FC632551


@pytest.mark.parametrize(
    ("algorithm", "data"),
    [
        ("ed25519", bytes(31)),
        ("ed25519", bytes(33)),
        ("ecdsa-p256-sha256", bytes(32)),
        ("ecdsa-p256-sha256", _P256_N.to_bytes(32, "big")),
        ("ecdsa-p256-sha256", bytes(31) + b"\x01" + b"\x00"),
        ("sm2-sm3", bytes(32)),
        ("sm2-sm3", b"\xff" * 32),
        ("sm2-sm3", b"\x01" * 31),
    ],
)
def test_load_private_rejects_malformed_keys(algorithm: str, data: bytes) -> None:
    with pytest.raises(InvalidKey) as raised:
        signature.load_private(algorithm, data)
    assert isinstance(raised.value, CryptoError)


@pytest.mark.parametrize(
    ("algorithm", "data"),
    [
        ("ed25519", bytes(31)),
        ("ed25519", bytes.fromhex(ECDSA["public_key"])),
        ("ecdsa-p256-sha256", bytes.fromhex(ECDSA["public_key"])[:33]),
        ("ecdsa-p256-sha256", b"\x04" + bytes(64)),
        ("ecdsa-p256-sha256", bytes.fromhex(ECDSA["public_key"])[:-1] + b"\x00"),
        ("ecdsa-p256-sha256", b"\x02" + bytes.fromhex(ECDSA["public_key"])[1:]),
        ("sm2-sm3", b"\x04" + bytes(64)),
        ("sm2-sm3", bytes.fromhex(SM2["public_key"])[1:]),
    ],
)
def test_load_public_rejects_malformed_keys(algorithm: str, data: bytes) -> None:
    with pytest.raises(InvalidKey):
        signature.load_public(algorithm, data)


def test_keys_must_be_bytes() -> None:
    with pytest.raises(InvalidKey):
        signature.load_public("ed25519", "d75a98" * 10)  # type: ignore[arg-type]
    with pytest.raises(InvalidKey):
        signature.load_private("ed25519", bytearray(32))  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["rsa-pss", "ED25519", "", "sm2"])
def test_unknown_algorithm(name: str) -> None:
    with pytest.raises(UnsupportedAlgorithm) as raised:
        signature.generate(name)
    assert raised.value.code == "unsupported-algorithm"
    with pytest.raises(UnsupportedAlgorithm):
        signature.load_private(name, bytes(32))
    with pytest.raises(UnsupportedAlgorithm):
        signature.load_public(name, bytes(32))


def test_algorithm_names_are_stable() -> None:
    assert [a.value for a in SignatureAlgorithm] == [
        "ed25519",
        "ecdsa-p256-sha256",
        "sm2-sm3",
        "ecdsa-secp256k1-sha256",
    ]

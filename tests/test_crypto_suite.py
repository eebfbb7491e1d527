"""Tests for cipher suites and HMAC: GB/T 32907 SM4, RFC 4231 and GM/T 0042 HMAC vectors."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from crypto.errors import CryptoError, InvalidCiphertext, InvalidKey, UnsupportedAlgorithm
from crypto.stream import StreamEncryptor, decrypt_stream
from crypto.suites import mac, suite
from crypto.suites.aead import AeadSuite
from crypto.suites.signature import SignatureAlgorithm

VECTORS = Path(__file__).parent / "vectors"


def _load(name: str) -> list[dict[str, Any]]:
    tests: list[dict[str, Any]] = json.loads((VECTORS / name).read_text())["tests"]
    return tests


SM4_BLOCK = _load("sm4_gbt32907.json")
SM4_GCM = _load("sm4_gcm_rfc8998.json")
HMAC_SHA256 = _load("hmac_sha256_rfc4231.json")
HMAC_SM3 = _load("hmac_sm3_gmt0042.json")
SM3 = _load("sm3_gbt32905.json")
SHA256 = _load("sha256_nist.json")
SUITES = [suite.INTL, suite.SM]


# -- SM4 block cipher, GB/T 32907-2016 Appendix A ------------------------------------------


def _sm4_iterate(case: dict[str, Any]) -> bytes:
    encryptor = Cipher(algorithms.SM4(bytes.fromhex(case["key"])), modes.ECB()).encryptor()
    block = bytes.fromhex(case["plaintext"])
    for _ in range(case["iterations"]):
        block = encryptor.update(block)
    return block


def test_sm4_block_example_1() -> None:
    case = SM4_BLOCK[0]
    assert case["iterations"] == 1
    assert _sm4_iterate(case).hex() == case["ciphertext"]


@pytest.mark.slow
def test_sm4_block_example_2_million_iterations() -> None:
    case = SM4_BLOCK[1]
    assert case["iterations"] == 1_000_000
    assert _sm4_iterate(case).hex() == case["ciphertext"]


def test_sm_suite_aead_is_sm4_gcm() -> None:
    case = SM4_GCM[0]
    aead = suite.SM.aead(bytes.fromhex(case["key"]))
    sealed = aead.encrypt(
        bytes.fromhex(case["iv"]), bytes.fromhex(case["plaintext"]), bytes.fromhex(case["aad"])
    )
    assert sealed.hex() == case["ciphertext"] + case["tag"]


# -- suites -------------------------------------------------------------------------------


def test_intl_suite() -> None:
    intl = suite.suite("intl")
    assert intl is suite.INTL
    assert intl.aead_suite is AeadSuite.AES_256_GCM and intl.aead_key_size == 32
    assert intl.hash_name == "sha256"
    assert intl.mac_algorithm is mac.MacAlgorithm.HMAC_SHA256
    assert intl.signature_algorithm is SignatureAlgorithm.ED25519
    assert SignatureAlgorithm.ECDSA_P256_SHA256 in intl.signature_algorithms
    assert intl.stream_suite == 1


def test_sm_suite() -> None:
    sm = suite.suite(suite.SuiteName.SM)
    assert sm is suite.SM
    assert sm.aead_suite is AeadSuite.SM4_GCM and sm.aead_key_size == 16
    assert sm.hash_name == "sm3"
    assert sm.mac_algorithm is mac.MacAlgorithm.HMAC_SM3
    assert sm.signature_algorithms == (SignatureAlgorithm.SM2_SM3,)
    assert sm.stream_suite == 2


@pytest.mark.parametrize("name", ["INTL", "gm", "", "aes"])
def test_unknown_suite(name: str) -> None:
    with pytest.raises(UnsupportedAlgorithm) as raised:
        suite.suite(name)
    assert isinstance(raised.value, CryptoError)
    assert raised.value.code == "unsupported-algorithm"


def test_suites_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        suite.INTL.hash_name = "md5"  # type: ignore[misc]


def test_suite_construction_is_validated() -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(suite.INTL, hash_name="md5")
    with pytest.raises(ValueError):
        dataclasses.replace(suite.INTL, signature_algorithms=())


@pytest.mark.parametrize("chosen", SUITES, ids=lambda s: s.name.value)
def test_hash(chosen: suite.CipherSuite) -> None:
    cases = SHA256 if chosen.hash_name == "sha256" else SM3
    for case in cases:
        message = case["message_ascii"].encode("ascii") * case["repeat"]
        assert chosen.hash(message).hex() == case["digest"]


@pytest.mark.parametrize("chosen", SUITES, ids=lambda s: s.name.value)
def test_aead_round_trip_and_key_length(chosen: suite.CipherSuite) -> None:
    key = bytes(range(chosen.aead_key_size))
    aead = chosen.aead(key)
    sealed = aead.encrypt(bytes(12), b"record", b"aad")
    assert aead.decrypt(bytes(12), sealed, b"aad") == b"record"
    with pytest.raises(InvalidCiphertext):
        aead.decrypt(bytes(12), sealed, b"other aad")
    with pytest.raises(InvalidKey):
        chosen.aead(key + b"\x00")


@pytest.mark.parametrize("chosen", SUITES, ids=lambda s: s.name.value)
def test_stream_suite_drives_crypto_stream(chosen: suite.CipherSuite) -> None:
    key = bytes(range(chosen.aead_key_size))
    sink = io.BytesIO()
    with StreamEncryptor(key, sink, aad=b"obj", chunk_size=64, suite=chosen.stream_suite) as s:
        s.write(b"x" * 200)
    assert sink.getvalue()[5] == chosen.stream_suite  # header: magic, version, suite
    sink.seek(0)
    assert b"".join(decrypt_stream(key, sink, aad=b"obj")) == b"x" * 200


@pytest.mark.parametrize("chosen", SUITES, ids=lambda s: s.name.value)
def test_suite_signatures(chosen: suite.CipherSuite) -> None:
    pair = chosen.generate_signing_key()
    assert pair.algorithm is chosen.signature_algorithm
    verifier = chosen.load_public(pair.public_bytes())
    assert verifier.verify(b"m", pair.sign(b"m"))
    assert chosen.load_private(pair.private_bytes()).public_key() == verifier


def test_intl_accepts_ecdsa_sm_refuses_foreign_algorithms() -> None:
    pair = suite.INTL.generate_signing_key("ecdsa-p256-sha256")
    assert pair.algorithm is SignatureAlgorithm.ECDSA_P256_SHA256
    assert suite.INTL.load_public(pair.public_bytes(), "ecdsa-p256-sha256").verify(
        b"m", pair.sign(b"m")
    )
    with pytest.raises(UnsupportedAlgorithm):
        suite.SM.generate_signing_key(SignatureAlgorithm.ED25519)
    with pytest.raises(UnsupportedAlgorithm):
        suite.SM.load_public(pair.public_bytes(), "ecdsa-p256-sha256")
    with pytest.raises(UnsupportedAlgorithm):
        suite.INTL.generate_signing_key("sm2-sm3")


@pytest.mark.parametrize("chosen", SUITES, ids=lambda s: s.name.value)
def test_suite_mac(chosen: suite.CipherSuite) -> None:
    keyed = chosen.mac(b"k" * 32)
    assert keyed.algorithm is chosen.mac_algorithm
    assert keyed.verify(b"m", keyed.tag(b"m"))


# -- HMAC ---------------------------------------------------------------------------------


def _mac_cases() -> list[Any]:
    return [
        pytest.param(mac.MacAlgorithm.HMAC_SHA256, c, id=f"rfc4231 {c['name']}")
        for c in HMAC_SHA256
    ] + [pytest.param(mac.MacAlgorithm.HMAC_SM3, c, id=f"gmt0042 {c['name']}") for c in HMAC_SM3]


@pytest.mark.parametrize(("algorithm", "case"), _mac_cases())
def test_hmac_vectors(algorithm: mac.MacAlgorithm, case: dict[str, Any]) -> None:
    key, data = bytes.fromhex(case["key"]), bytes.fromhex(case["data"])
    tag = mac.mac(algorithm, key, data)
    assert len(tag) == mac.TAG_SIZE
    # RFC 4231 test case 5 publishes the first 128 bits only.
    assert tag[: case["mac_bytes"]].hex() == case["mac"]
    assert mac.verify_mac(algorithm, key, data, tag)


@pytest.mark.parametrize("algorithm", list(mac.MacAlgorithm))
def test_hmac_verify_rejects(algorithm: mac.MacAlgorithm) -> None:
    keyed = mac.Mac(algorithm, b"\x01" * 32)
    tag = keyed.tag(b"log line 1")
    assert keyed.verify(b"log line 1", tag)
    assert keyed.verify(memoryview(b"log line 1"), tag)
    assert not keyed.verify(b"log line 2", tag)
    assert not keyed.verify(b"log line 1", tag[:16])  # truncated tags are refused
    assert not keyed.verify(b"log line 1", tag + b"\x00")
    assert not keyed.verify(b"log line 1", b"")
    assert not keyed.verify(b"log line 1", bytes([tag[0] ^ 1]) + tag[1:])
    assert not mac.Mac(algorithm, b"\x02" * 32).verify(b"log line 1", tag)


def test_hmac_algorithms_differ() -> None:
    key = b"\x01" * 32
    assert mac.mac("hmac-sha256", key, b"m") != mac.mac("hmac-sm3", key, b"m")


def test_hmac_key_rules() -> None:
    with pytest.raises(InvalidKey):
        mac.Mac("hmac-sha256", b"")
    with pytest.raises(InvalidKey):
        mac.Mac("hmac-sha256", "key")  # type: ignore[arg-type]
    with pytest.raises(UnsupportedAlgorithm):
        mac.Mac("hmac-md5", b"key")


def test_hmac_repr_hides_the_key() -> None:
    keyed = mac.Mac("hmac-sm3", b"super-secret-key-material-0123456")
    assert "super-secret" not in repr(keyed)
    assert "hidden" in repr(keyed)

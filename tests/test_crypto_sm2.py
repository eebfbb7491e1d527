"""Tests for crypto.suites.sm2: the GB/T 32918 example, user digests, key and signature checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from crypto.errors import CryptoError, InvalidKey
from crypto.suites import sm2
from tests.helpers.net import flip as _flip

VECTORS = Path(__file__).parent / "vectors"
CASES: list[dict[str, Any]] = json.loads((VECTORS / "sm2_gbt32918.json").read_text())["tests"]
EXAMPLE = CASES[0]


def _h(name: str, case: dict[str, Any] = EXAMPLE) -> bytes:
    return bytes.fromhex(case[name])


def _uid(case: dict[str, Any]) -> bytes:
    return bytes(case["user_id_ascii"], "ascii")


def _msg(case: dict[str, Any]) -> bytes:
    return bytes(case["message_ascii"], "ascii")


def _sig(case: dict[str, Any]) -> bytes:
    return _h("r", case) + _h("s", case)


@pytest.fixture(scope="module")
def key() -> sm2.Sm2PrivateKey:
    return sm2.Sm2PrivateKey.generate()


# -- the standard's example -------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_public_key_derivation_matches_the_example(case: dict[str, Any]) -> None:
    private = sm2.Sm2PrivateKey(_h("private_key", case))
    assert private.public_key().public_bytes() == _h("public_key", case)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_user_digest_and_e_match_the_example(case: dict[str, Any]) -> None:
    public = _h("public_key", case)
    assert sm2.user_digest(public, _uid(case)) == _h("za", case)
    assert sm2.message_digest(public, _msg(case), _uid(case)) == _h("e", case)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_published_signature_verifies(case: dict[str, Any]) -> None:
    public = sm2.Sm2PublicKey(_h("public_key", case))
    assert public.verify(_msg(case), _sig(case), user_id=_uid(case))
    assert public.verify_digest(_h("e", case), _sig(case))


def test_the_example_uses_the_default_user_id() -> None:
    assert _uid(EXAMPLE) == sm2.DEFAULT_USER_ID
    public = sm2.Sm2PublicKey(_h("public_key"))
    assert public.verify(_msg(EXAMPLE), _sig(EXAMPLE))


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_example_signature_follows_from_its_k(case: dict[str, Any]) -> None:
    # GmSSL draws k itself, so the signature cannot be re-made through the library; the
    # standard's arithmetic (GB/T 32918.2-2016 6.1 A4-A6) with its k and our e gives r, s.
    d = int.from_bytes(_h("private_key", case), "big")
    k = int.from_bytes(_h("k", case), "big")
    e = int.from_bytes(sm2.message_digest(_h("public_key", case), _msg(case), _uid(case)), "big")
    x1 = int.from_bytes(sm2._public_point(k)[1:33], "big")
    r = (e + x1) % sm2.N
    s = pow(1 + d, -1, sm2.N) * (k - r * d) % sm2.N
    assert r.to_bytes(32, "big") + s.to_bytes(32, "big") == _sig(case)


# -- verification refuses everything else, without raising -------------------------------


def _rs(r: int, s: int) -> bytes:
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda m, s, u: (m + b"!", s, u), id="other message"),
        pytest.param(lambda m, s, u: (m, s, b"ALICE123@YAHOO.COM"), id="other user id"),
        pytest.param(lambda m, s, u: (m, _flip(s, 0), u), id="r changed"),
        pytest.param(lambda m, s, u: (m, _flip(s, 63), u), id="s changed"),
        pytest.param(lambda m, s, u: (m, s[:63], u), id="short"),
        pytest.param(lambda m, s, u: (m, s + b"\x00", u), id="long"),
        pytest.param(lambda m, s, u: (m, b"", u), id="empty"),
        pytest.param(lambda m, s, u: (m, sm2.signature_to_der(s), u), id="DER instead of raw"),
        pytest.param(lambda m, s, u: (m, _rs(0, 1), u), id="r zero"),
        pytest.param(lambda m, s, u: (m, _rs(1, 0), u), id="s zero"),
        pytest.param(lambda m, s, u: (m, _rs(sm2.N, 1), u), id="r equals n"),
        pytest.param(lambda m, s, u: (m, _rs(1, sm2.N), u), id="s equals n"),
        pytest.param(lambda m, s, u: (m, _rs(1, sm2.N - 1), u), id="r plus s is n"),
        pytest.param(lambda m, s, u: (m, b"\xff" * 64, u), id="all ones"),
    ],
)
def test_verify_rejects(mutate: Any) -> None:
    public = sm2.Sm2PublicKey(_h("public_key"))
    message, signature, user_id = mutate(_msg(EXAMPLE), _sig(EXAMPLE), _uid(EXAMPLE))
    assert public.verify(message, signature, user_id=user_id) is False


def test_verify_digest_rejects_a_wrong_length_digest() -> None:
    public = sm2.Sm2PublicKey(_h("public_key"))
    assert public.verify_digest(_h("e")[:31], _sig(EXAMPLE)) is False


def test_another_key_does_not_verify(key: sm2.Sm2PrivateKey) -> None:
    assert key.public_key().verify(_msg(EXAMPLE), _sig(EXAMPLE)) is False


# -- signing ------------------------------------------------------------------------------


def test_sign_verify_round_trip(key: sm2.Sm2PrivateKey) -> None:
    signature = key.sign(b"exchange transaction 42")
    assert len(signature) == sm2.SIGNATURE_SIZE
    assert key.public_key().verify(b"exchange transaction 42", signature)
    assert not key.public_key().verify(b"exchange transaction 43", signature)


def test_signatures_are_randomised(key: sm2.Sm2PrivateKey) -> None:
    assert key.sign(b"same") != key.sign(b"same")


def test_custom_user_id_binds_the_signature(key: sm2.Sm2PrivateKey) -> None:
    signature = key.sign(b"m", user_id=b"org:transport@pdx")
    public = key.public_key()
    assert public.verify(b"m", signature, user_id=b"org:transport@pdx")
    assert not public.verify(b"m", signature)


def test_sign_digest_matches_sign(key: sm2.Sm2PrivateKey) -> None:
    e = sm2.message_digest(key.public_key().public_bytes(), b"m")
    assert key.public_key().verify(b"m", key.sign_digest(e))
    with pytest.raises(ValueError):
        key.sign_digest(e[:31])


def test_signature_of_the_example_key_verifies_against_the_published_key() -> None:
    private = sm2.Sm2PrivateKey(_h("private_key"))
    signature = private.sign(_msg(EXAMPLE))
    assert sm2.Sm2PublicKey(_h("public_key")).verify(_msg(EXAMPLE), signature)


def test_generated_public_key_agrees_with_python_derivation() -> None:
    # GmSSL computes the public key at generation; the ladder here at load time.
    for _ in range(5):
        generated = sm2.Sm2PrivateKey.generate()
        reloaded = sm2.Sm2PrivateKey.from_bytes(generated.private_bytes())
        assert reloaded.public_key() == generated.public_key()


def test_user_id_length_limits() -> None:
    public = _h("public_key")
    assert len(sm2.user_digest(public, b"x" * sm2.MAX_USER_ID_SIZE)) == 32
    with pytest.raises(ValueError):
        sm2.user_digest(public, b"")
    with pytest.raises(ValueError):
        sm2.user_digest(public, b"x" * (sm2.MAX_USER_ID_SIZE + 1))


# -- keys ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(bytes(32), id="zero"),
        pytest.param((sm2.N - 1).to_bytes(32, "big"), id="n-1"),
        pytest.param(sm2.N.to_bytes(32, "big"), id="n"),
        pytest.param(b"\xff" * 32, id="all ones"),
        pytest.param(bytes.fromhex(EXAMPLE["private_key"])[:31], id="short"),
        pytest.param(bytes.fromhex(EXAMPLE["private_key"]) + b"\x00", id="long"),
    ],
)
def test_private_key_range(raw: bytes) -> None:
    with pytest.raises(InvalidKey) as raised:
        sm2.Sm2PrivateKey(raw)
    assert isinstance(raised.value, CryptoError)
    assert raised.value.code == "invalid-key"


def test_largest_private_key_is_n_minus_2() -> None:
    key = sm2.Sm2PrivateKey((sm2.N - 2).to_bytes(32, "big"))
    assert key.public_key().verify(b"m", key.sign(b"m"))


def _point(x: int, y: int, prefix: int = 4) -> bytes:
    return bytes([prefix]) + x.to_bytes(32, "big") + y.to_bytes(32, "big")


@pytest.mark.parametrize(
    "encoded",
    [
        pytest.param(_point(sm2.GX, sm2.GY + 1), id="off the curve"),
        pytest.param(_point(sm2.GX, sm2.GY, prefix=2), id="compressed prefix"),
        pytest.param(_point(sm2.P, sm2.GY), id="x equals p"),
        pytest.param(_point(0, 0), id="zero point"),
        pytest.param(_point(sm2.GX, sm2.GY)[:33], id="compressed length"),
        pytest.param(_point(sm2.GX, sm2.GY)[1:], id="no prefix"),
        pytest.param(b"", id="empty"),
    ],
)
def test_public_key_validation(encoded: bytes) -> None:
    with pytest.raises(InvalidKey):
        sm2.Sm2PublicKey(encoded)


def test_generator_is_a_valid_public_key() -> None:
    assert sm2.Sm2PublicKey(_point(sm2.GX, sm2.GY)).public_bytes()[0] == 4


def test_repr_hides_the_private_key() -> None:
    private = sm2.Sm2PrivateKey(_h("private_key"))
    text = repr(private) + str(private)
    assert EXAMPLE["private_key"] not in text.lower()
    assert "hidden" in text
    assert EXAMPLE["private_key"] not in repr(private.public_key()).lower()


def test_public_keys_compare_by_value() -> None:
    a = sm2.Sm2PublicKey(_h("public_key"))
    b = sm2.Sm2PublicKey.from_bytes(_h("public_key"))
    assert a == b and hash(a) == hash(b)
    assert a != sm2.Sm2PublicKey(_point(sm2.GX, sm2.GY))


# -- DER conversion -----------------------------------------------------------------------


def test_der_round_trip() -> None:
    der = sm2.signature_to_der(_sig(EXAMPLE))
    assert der[0] == 0x30
    assert sm2.signature_from_der(der) == _sig(EXAMPLE)


@pytest.mark.parametrize(
    "der",
    [
        pytest.param(sm2.signature_to_der(_rs(5, 7)) + b"\x00", id="trailing byte"),
        pytest.param(b"\x30\x00", id="empty sequence"),
        pytest.param(b"", id="nothing"),
    ],
)
def test_der_parsing_is_strict(der: bytes) -> None:
    with pytest.raises(ValueError):
        sm2.signature_from_der(der)


def test_der_components_must_be_in_range() -> None:
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    with pytest.raises(ValueError):
        sm2.signature_from_der(encode_dss_signature(sm2.N, 1))
    with pytest.raises(ValueError):
        sm2.signature_to_der(b"\x01" * 63)

"""Tests for crypto.secrets: client secret generation, scrypt hashing, verification, dummy work."""

from __future__ import annotations

import base64
from typing import Any

import pytest

import crypto.secrets
from crypto import dummy_verify, generate_secret, hash_secret, verify_secret


def test_generate_secret_is_43_urlsafe_chars_of_32_random_bytes() -> None:
    secrets = {generate_secret() for _ in range(50)}
    assert len(secrets) == 50
    for secret in secrets:
        assert len(secret) == 43
        assert len(base64.urlsafe_b64decode(secret + "=")) == 32


def test_hash_is_self_describing_with_fresh_salt() -> None:
    encoded = hash_secret("s3cret")
    scheme, n, r, p, salt, digest = encoded.split("$")
    assert (scheme, n, r, p) == ("scrypt", "16384", "8", "1")
    assert len(base64.b64decode(salt + "==")) == 16
    assert len(base64.b64decode(digest + "=")) == 32
    assert hash_secret("s3cret") != encoded


def test_verify_accepts_the_right_secret_only() -> None:
    secret = generate_secret()
    encoded = hash_secret(secret)
    assert verify_secret(secret, encoded) is True
    assert verify_secret(secret + "x", encoded) is False
    assert verify_secret(secret[:-1], encoded) is False
    assert verify_secret("", encoded) is False


def test_verify_known_answer_rfc7914() -> None:
    # RFC 7914 section 12, second vector: P="password", S="NaCl", N=1024, r=8, p=16.
    expected = bytes.fromhex(
        "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162"
        "2eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640"
    )
    salt = base64.b64encode(b"NaCl").decode().rstrip("=")
    digest = base64.b64encode(expected).decode().rstrip("=")
    encoded = f"scrypt$1024$8$16${salt}${digest}"
    assert verify_secret("password", encoded) is True
    assert verify_secret("passwore", encoded) is False


def test_non_ascii_and_lone_surrogate_secrets() -> None:
    encoded = hash_secret("pässwörd密码")
    assert verify_secret("pässwörd密码", encoded) is True
    assert verify_secret("\ud800", encoded) is False


def _valid() -> str:
    return hash_secret("s")


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: "",
        lambda e: "garbage",
        lambda e: e.replace("scrypt$", "bcrypt$"),
        lambda e: e + "$extra",
        lambda e: e.rsplit("$", 1)[0],
        lambda e: e.replace("$16384$", "$16383$"),  # N not a power of two
        lambda e: e.replace("$16384$", "$1$"),
        lambda e: e.replace("$16384$", f"${1 << 21}$"),  # would cost 2 GiB
        lambda e: e.replace("$8$1$", "$0$1$"),
        lambda e: e.replace("$8$1$", "$8$99$"),
        lambda e: e.replace("$16384$", "$+16384$"),
        lambda e: e.replace("$16384$", "$１６３８４$"),  # non-ASCII digits
        lambda e: e[:-1] + "*",  # not base64
        lambda e: e.rsplit("$", 1)[0] + "$" + base64.b64encode(b"short").decode(),
        lambda e: "$".join(e.split("$")[:4] + ["", e.split("$")[5]]),  # empty salt
    ],
)
def test_malformed_encodings_are_false_not_errors(mutate: Any) -> None:
    assert verify_secret("s", mutate(_valid())) is False


def test_dummy_verify_spends_a_real_verifications_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    real = crypto.secrets._derive
    calls: list[tuple[int, int, int, int, int]] = []

    def counting(secret: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
        calls.append((len(salt), n, r, p, length))
        return real(secret, salt, n, r, p, length)

    encoded = hash_secret("s")
    monkeypatch.setattr(crypto.secrets, "_derive", counting)
    assert verify_secret("wrong", encoded) is False
    dummy_verify("wrong")
    dummy_verify(generate_secret())
    assert calls == [(16, 1 << 14, 8, 1, 32)] * 3

"""Tests for crypto.secrets: client secret generation, scrypt hashing, verification, dummy work."""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

import crypto.secrets
from crypto import dummy_verify, generate_secret, hash_secret, verify_secret
from crypto.secrets import PRODUCTION_COST, ScryptCost, current_cost, use_cost
from tests.conftest import REPO, TEST_SCRYPT_COST


@pytest.fixture
def production_cost() -> Iterator[ScryptCost]:
    """Hash at the production cost in this test (the session hashes at a lower one)."""
    previous = use_cost(PRODUCTION_COST)
    yield PRODUCTION_COST
    use_cost(previous)


def test_generate_secret_is_43_urlsafe_chars_of_32_random_bytes() -> None:
    secrets = {generate_secret() for _ in range(50)}
    assert len(secrets) == 50
    for secret in secrets:
        assert len(secret) == 43
        assert len(base64.urlsafe_b64decode(secret + "=")) == 32


def test_a_fresh_process_hashes_at_the_production_cost() -> None:
    """What `pdx run` and every command do: nothing but tests lowers the cost."""
    code = "from crypto import hash_secret; print(hash_secret('s3cret'))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert out.startswith("scrypt$16384$8$1$")
    assert PRODUCTION_COST == ScryptCost(1 << 14, 8, 1)


def test_this_session_hashes_at_the_test_cost_and_verifies_any_stored_cost() -> None:
    assert current_cost() == TEST_SCRYPT_COST != PRODUCTION_COST
    fast = hash_secret("s3cret")
    assert fast.startswith("scrypt$1024$8$1$")
    previous = use_cost(PRODUCTION_COST)
    try:
        slow = hash_secret("s3cret")
    finally:
        assert use_cost(previous) == PRODUCTION_COST
    assert slow.startswith("scrypt$16384$8$1$")
    # Stored hashes carry their parameters: each verifies whatever the current cost.
    assert verify_secret("s3cret", fast) and verify_secret("s3cret", slow)
    assert not verify_secret("s3cret!", slow)


@pytest.mark.parametrize(
    "bad",
    [
        (0, 8, 1),
        (1, 8, 1),
        (1000, 8, 1),
        (1 << 21, 8, 1),
        (1024, 0, 1),
        (1024, 33, 1),
        (1024, 8, 0),
        (1024, 8, 17),
    ],
)
def test_a_cost_outside_the_stored_bounds_is_refused(bad: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError, match="out of bounds"):
        ScryptCost(*bad)
    assert ScryptCost(2, 1, 1) and ScryptCost(1 << 20, 32, 16)  # the bounds themselves


def test_hash_is_self_describing_with_fresh_salt(production_cost: ScryptCost) -> None:
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
def test_malformed_encodings_are_false_not_errors(mutate: Any, production_cost: ScryptCost) -> None:
    assert verify_secret("s", mutate(_valid())) is False


@pytest.mark.parametrize("cost", [PRODUCTION_COST, TEST_SCRYPT_COST, ScryptCost(1 << 12, 4, 2)])
def test_dummy_verify_spends_a_real_verifications_scrypt(
    monkeypatch: pytest.MonkeyPatch, cost: ScryptCost
) -> None:
    """Timing-sensitive: an unknown client id costs what a wrong secret does, at any cost."""
    real = crypto.secrets._derive
    calls: list[tuple[int, int, int, int, int]] = []

    def counting(secret: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
        calls.append((len(salt), n, r, p, length))
        return real(secret, salt, n, r, p, length)

    previous = use_cost(cost)
    try:
        encoded = hash_secret("s")
        monkeypatch.setattr(crypto.secrets, "_derive", counting)
        assert verify_secret("wrong", encoded) is False
        dummy_verify("wrong")
        dummy_verify(generate_secret())
    finally:
        use_cost(previous)
    assert calls == [(16, cost.n, cost.r, cost.p, 32)] * 3

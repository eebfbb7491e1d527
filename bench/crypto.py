"""`pdx bench crypto`: AEAD, hash and signature speed, the key-store path, and unwraps per second.

Throughputs are MB/s (10**6 bytes) over one buffer of random bytes fed in 1 MiB pieces.
`kms_*_vs_raw` compares, in the same run and alternating order, the platform path (a
data key unwrapped through `KeyStore`, then `crypto.stream.StreamEncryptor` over the
buffer) with the bare AEAD sealing the same 1 MiB pieces one-shot; the figure is the
median of the per-run ratios of throughputs (1.0 = no overhead). Unwraps go through
`KeyStore.data_key` with a fresh SQLAlchemy session each (two row reads, KEK unwrap by
the root backend, data-key unwrap), on SQLite in a temporary directory; the PKCS#11 one
runs in a child process against a throw-away SoftHSM2 token.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, cast

from bench import report

CHUNK = 1 << 20
NOW = datetime(2026, 1, 1, tzinfo=UTC)
SOFTHSM_MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
KMS_TARGET = 0.67  # KMS path within 1.5x of raw
UNWRAP_KEYS = 50
MESSAGE = b"pdx bench crypto: one exchange-transaction record to sign " * 4  # 232 bytes


@dataclass(frozen=True)
class _Unmeasured(report.Metric):
    """A metric that could not be measured here: written as null with the reason."""

    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        doc = super().as_dict()
        doc["value"] = None
        doc["note"] = self.note
        return doc


class _Discard:
    """A sink that counts and drops what it is given (no disk or memory growth)."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> int:
        self.written += len(data)
        return len(data)


# -- throughput -------------------------------------------------------------------------


def _pieces(data: bytes) -> list[memoryview]:
    view = memoryview(data)
    return [view[i : i + CHUNK] for i in range(0, len(data), CHUNK)]


def _raw_aes_gcm(key: bytes, pieces: list[memoryview]) -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    aead = AESGCM(key)
    for i, piece in enumerate(pieces):
        aead.encrypt(i.to_bytes(12, "big"), piece, b"bench")


def _raw_sm4_gcm(key: bytes, pieces: list[memoryview]) -> None:
    # `cryptography` has no one-shot SM4-GCM class; one GCM context per piece is the
    # closest equivalent (what crypto.suites.aead does, minus the tag concatenation).
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    algorithm = algorithms.SM4(key)
    for i, piece in enumerate(pieces):
        encryptor = Cipher(algorithm, modes.GCM(i.to_bytes(12, "big"))).encryptor()
        encryptor.authenticate_additional_data(b"bench")
        encryptor.update(piece)
        encryptor.finalize()


def _seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _mb_per_s(size: int, seconds: float) -> float:
    return size / 1e6 / seconds


class _KeyStoreFixture:
    """A `KeyStore` on SQLite in `home` with `count` data keys per suite."""

    def __init__(self, home: Path, root: Any, count: int) -> None:
        from sqlalchemy import create_engine
        from sqlalchemy.orm import Session

        from crypto import CryptoBase, KeyStore

        self.engine = create_engine(f"sqlite:///{home / 'keys.db'}")
        CryptoBase.metadata.create_all(self.engine)
        self.stores = {name: KeyStore(root, suite=name) for name in ("intl", "sm")}
        self.keys: dict[str, list[tuple[str, str]]] = {}
        with Session(self.engine) as session:
            for name, store in self.stores.items():
                refs = [f"bench:{name}:{i}" for i in range(count)]
                made = [
                    store.new_data_key(session, owner_org=f"org-{name}", object_ref=r, now=NOW)
                    for r in refs
                ]
                self.keys[name] = [(k.id, k.object_ref) for k in made]
            session.commit()

    def unwrap(self, suite_name: str, index: int) -> bytes:
        from sqlalchemy.orm import Session

        key_id, ref = self.keys[suite_name][index % len(self.keys[suite_name])]
        with Session(self.engine) as session:
            key: bytes = self.stores[suite_name].data_key(session, key_id, object_ref=ref)
        return key

    def close(self) -> None:
        self.engine.dispose()


def _kms_path(
    fixture: _KeyStoreFixture,
    suite_name: str,
    data: bytes,
    *,
    feed: list[bytes] | None,
) -> None:
    """Unwrap the data key through `KeyStore`, then stream-encrypt `data` in `feed` writes.

    `feed` is the upload as the gateway hands it over: separate 1 MiB `bytes` chunks
    (split before timing, as the raw path's pieces are); None is one write of everything.
    """
    from crypto.stream import StreamEncryptor
    from crypto.suites.suite import suite

    key = fixture.unwrap(suite_name, 0)
    sink = cast(BinaryIO, _Discard())
    stream_suite = suite(suite_name).stream_suite
    with StreamEncryptor(key, sink, aad=b"bench", suite=stream_suite) as encryptor:
        if feed is None:
            encryptor.write(data)
        else:
            for chunk in feed:
                encryptor.write(chunk)


def _throughputs(data: bytes, runs: int, fixture: _KeyStoreFixture) -> dict[str, float]:
    from crypto.digest import sha256, sm3

    pieces = _pieces(data)
    size = len(data)
    aes_key, sm4_key = os.urandom(32), os.urandom(16)
    raw = {
        "intl": lambda: _raw_aes_gcm(aes_key, pieces),
        "sm": lambda: _raw_sm4_gcm(sm4_key, pieces),
    }
    chunks = [bytes(p) for p in pieces]
    kms = {name: (lambda n=name: _kms_path(fixture, n, data, feed=chunks)) for name in raw}
    kms_one = {name: (lambda n=name: _kms_path(fixture, n, data, feed=None)) for name in raw}
    for name in raw:  # warm-up: first-use allocations, page faults on the buffer
        raw[name]()
        kms[name]()
    speeds: dict[str, list[float]] = {k: [] for k in ("aes", "sm4", "sha256", "sm3")}
    ratios: dict[str, list[float]] = {"intl": [], "sm": [], "intl_one": [], "sm_one": []}
    for run in range(runs):
        for name, label in (("intl", "aes"), ("sm", "sm4")):
            # Alternate which side goes first so drift on a shared machine hits both.
            if run % 2 == 0:
                raw_s, kms_s = _seconds(raw[name]), _seconds(kms[name])
            else:
                kms_s, raw_s = _seconds(kms[name]), _seconds(raw[name])
            speeds[label].append(_mb_per_s(size, raw_s))
            ratios[name].append(raw_s / kms_s)
            ratios[f"{name}_one"].append(raw_s / _seconds(kms_one[name]))
        speeds["sha256"].append(_mb_per_s(size, _seconds(lambda: sha256(data))))
        speeds["sm3"].append(_mb_per_s(size, _seconds(lambda: sm3(data))))
    result = {k: report.median(v) for k, v in speeds.items()}
    result["kms_aes_vs_raw"] = report.median(ratios["intl"])
    result["kms_sm4_vs_raw"] = report.median(ratios["sm"])
    result["kms_aes_vs_raw_one_write"] = report.median(ratios["intl_one"])
    result["kms_sm4_vs_raw_one_write"] = report.median(ratios["sm_one"])
    return result


# -- operations per second --------------------------------------------------------------


def _rate(fn: Callable[[int], object], seconds: float, runs: int) -> float:
    """Median over `runs` windows of `seconds` of calls per second (after one warm-up)."""
    fn(0)
    rates = []
    for _ in range(runs):
        count = 0
        start = time.perf_counter()
        deadline = start + seconds
        while True:
            fn(count)
            count += 1
            now = time.perf_counter()
            if now >= deadline:
                break
        rates.append(count / (now - start))
    return report.median(rates)


def _signature_rates(seconds: float, runs: int) -> dict[str, float]:
    from crypto.suites import signature

    rates: dict[str, float] = {}
    for label, algorithm in (("ed25519", "ed25519"), ("sm2", "sm2-sm3")):
        pair = signature.generate(algorithm)
        verifier = signature.load_public(algorithm, pair.public_bytes())
        sig = pair.sign(MESSAGE)
        if not verifier.verify(MESSAGE, sig):
            raise SystemExit(f"{algorithm}: a fresh signature does not verify")
        sign, verify = _sign_and_verify(pair, verifier, sig)
        rates[f"{label}_sign_per_s"] = _rate(sign, seconds, runs)
        rates[f"{label}_verify_per_s"] = _rate(verify, seconds, runs)
    return rates


def _sign_and_verify(
    pair: Any, verifier: Any, sig: bytes
) -> tuple[Callable[[int], object], Callable[[int], object]]:
    return (lambda _: pair.sign(MESSAGE)), (lambda _: verifier.verify(MESSAGE, sig))


def _unwrap_rate(fixture: _KeyStoreFixture, seconds: float, runs: int) -> float:
    return _rate(lambda i: fixture.unwrap("intl", i), seconds, runs)


# -- PKCS#11 (SoftHSM2), in a child process ------------------------------------------------


def _pkcs11_unavailable() -> str | None:
    """Why the PKCS#11 figure cannot be measured here, or None if it can."""
    if importlib.util.find_spec("crypto.backends.pkcs11") is None:
        return "crypto.backends.pkcs11 does not exist yet"
    if not SOFTHSM_MODULE.exists():
        return f"SoftHSM2 module not installed ({SOFTHSM_MODULE})"
    if shutil.which("softhsm2-util") is None:
        return "softhsm2-util not installed"
    return None


def _pkcs11_child(seconds: float, runs: int) -> None:
    """Measure unwraps/s with a SoftHSM2 root key; prints one JSON line."""
    with tempfile.TemporaryDirectory(prefix="pdx-bench-hsm-") as home_name:
        home = Path(home_name)
        (home / "tokens").mkdir()
        conf = home / "softhsm2.conf"
        conf.write_text(
            f"directories.tokendir = {home / 'tokens'}\nobjectstore.backend = file\n"
            "log.level = ERROR\n",
            encoding="utf-8",
        )
        # Must be set before the module is first loaded in this (child) process.
        os.environ["SOFTHSM2_CONF"] = str(conf)
        pin = os.urandom(8).hex()
        subprocess.run(
            [
                "softhsm2-util", "--init-token", "--free", "--label", "pdx-bench",
                "--pin", pin, "--so-pin", os.urandom(8).hex(),
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
        from crypto.backends.pkcs11 import Pkcs11Config, Pkcs11RootKey

        config = Pkcs11Config(
            module_path=str(SOFTHSM_MODULE), token_label="pdx-bench", user_pin=pin
        )
        with Pkcs11RootKey(config) as root:
            fixture = _KeyStoreFixture(home, root, UNWRAP_KEYS)
            try:
                rate = _unwrap_rate(fixture, seconds, runs)
            finally:
                fixture.close()
    print(json.dumps({"unwrap_per_s": rate}))


def _pkcs11_rate(seconds: float, runs: int) -> tuple[float | None, str]:
    reason = _pkcs11_unavailable()
    if reason is not None:
        return None, reason
    try:
        out = subprocess.run(
            [sys.executable, "-m", "bench.crypto", "--pkcs11-child", str(seconds), str(runs)],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
            timeout=600,
        )
    except subprocess.TimeoutExpired:
        return None, "PKCS#11 measurement timed out"
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return None, f"PKCS#11 measurement failed: {last[:300]}"
    value: float = json.loads(out.stdout.strip().splitlines()[-1])["unwrap_per_s"]
    return value, "SoftHSM2 token in a temporary directory, root key AES-256-GCM in the token"


# -- entry point --------------------------------------------------------------------------


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def run(quick: bool = False) -> Path:
    size = (8 if quick else 64) << 20
    runs = 3 if quick else 5
    op_seconds = 0.3 if quick else 1.0
    data = os.urandom(size)

    from crypto import LocalRootKey

    with tempfile.TemporaryDirectory(prefix="pdx-bench-crypto-") as home_name:
        home = Path(home_name)
        fixture = _KeyStoreFixture(
            home, LocalRootKey.create_or_load(home / "root.key"), UNWRAP_KEYS
        )
        try:
            speeds = _throughputs(data, runs, fixture)
            unwrap_local = _unwrap_rate(fixture, op_seconds, runs)
        finally:
            fixture.close()
    signing = _signature_rates(op_seconds, runs)
    unwrap_pkcs11, pkcs11_note = _pkcs11_rate(op_seconds, runs)

    def ops(value: float) -> report.Metric:
        return report.Metric(round(value, 1), "ops/s")

    kms_aes, kms_sm4 = speeds["kms_aes_vs_raw"], speeds["kms_sm4_vs_raw"]
    metrics: dict[str, report.Metric] = {
        "aes_gcm_mb_per_s": report.Metric(round(speeds["aes"], 1), "MB/s"),
        "sm4_gcm_mb_per_s": report.Metric(round(speeds["sm4"], 1), "MB/s"),
        "sha256_mb_per_s": report.Metric(round(speeds["sha256"], 1), "MB/s"),
        "sm3_mb_per_s": report.Metric(round(speeds["sm3"], 1), "MB/s"),
        "kms_aes_vs_raw": report.Metric(
            round(kms_aes, 3), "x", f">= {KMS_TARGET}", kms_aes >= KMS_TARGET
        ),
        "kms_sm4_vs_raw": report.Metric(
            round(kms_sm4, 3), "x", f">= {KMS_TARGET}", kms_sm4 >= KMS_TARGET
        ),
        "ed25519_sign_per_s": ops(signing["ed25519_sign_per_s"]),
        "ed25519_verify_per_s": ops(signing["ed25519_verify_per_s"]),
        "sm2_sign_per_s": ops(signing["sm2_sign_per_s"]),
        "sm2_verify_per_s": ops(signing["sm2_verify_per_s"]),
        "unwrap_per_s_local": report.Metric(round(unwrap_local, 1), "unwraps/s"),
        "unwrap_per_s_pkcs11": (
            report.Metric(round(unwrap_pkcs11, 1), "unwraps/s")
            if unwrap_pkcs11 is not None
            else _Unmeasured(float("nan"), "unwraps/s", note=pkcs11_note)
        ),
    }
    params = {
        "bytes": size,
        "runs": runs,
        "chunk_bytes": CHUNK,
        "op_window_s": op_seconds,
        "message_bytes": len(MESSAGE),
        "unwrap_keys": UNWRAP_KEYS,
        "pkcs11": pkcs11_note,
        "kms_feed_bytes": CHUNK,
        # Not metrics: the same ratio when the whole buffer is one write() (no chunk
        # copies inside StreamEncryptor), to tell the copy cost from the rest.
        "diagnostics": {
            "kms_aes_vs_raw_one_write": round(speeds["kms_aes_vs_raw_one_write"], 3),
            "kms_sm4_vs_raw_one_write": round(speeds["kms_sm4_vs_raw_one_write"], 3),
        },
        "libraries": {
            "cryptography": _version("cryptography"),
            "gmssl-pyx": _version("gmssl-pyx"),
            "python-pkcs11": _version("python-pkcs11"),
        },
    }
    path = report.write("crypto", params, metrics)
    if unwrap_pkcs11 is None:
        print(f"crypto.unwrap_per_s_pkcs11: not measured ({pkcs11_note})")
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--pkcs11-child", nargs=2, metavar=("SECONDS", "RUNS"))
    args = parser.parse_args()
    if args.pkcs11_child:
        _pkcs11_child(float(args.pkcs11_child[0]), int(args.pkcs11_child[1]))
    else:
        print(run(quick=args.quick))


if __name__ == "__main__":
    main()

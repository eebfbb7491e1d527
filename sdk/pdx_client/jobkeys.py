"""Requester-held job keys: generated, kept and used on the requester's machine, never by pdx.

A `JobKey` is the homomorphic key pair of one computation (Paillier, via `phe`). Its
public half (`public()`, with its `fingerprint`) goes in the request's `job_key` field;
the providers' nodes encrypt their noisy, masked partials under it and the platform only
adds ciphertexts, so the result (GET /v1/computations/{id}/result) is an encrypted
aggregate that `decrypt` opens and post-processes here: noisy counts kept ≥ 0, sums
clamped to their declared bounds, groups below the minimum cohort suppressed (on noisy
counts only), means and variances from the noisy sums. A vertical logistic regression
(`fl.hetero_logreg`) comes back as each party's noisy weights, encrypted in fixed point:
`decrypt` returns the model. `export`/`load` keep the key on disk under a passphrase
(scrypt + AES-256-GCM).

This module needs only the standard library, `phe`, `gmpy2` (through phe) and
`cryptography`: none of the server's packages.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Any

import phe  # type: ignore[import-untyped]
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from pdx_client.errors import PdxError

__all__ = [
    "ENCRYPTED_FORMAT",
    "MIN_PAILLIER_BITS",
    "JobKey",
    "JobKeyError",
    "canonical_public",
    "fingerprint_of",
    "takes_job_key",
]

MIN_PAILLIER_BITS = 2048
"""Shortest modulus the platform accepts (NIST SP 800-57: 112-bit security for factoring)."""
ENCRYPTED_FORMAT = "pdx-encrypted-aggregate/1"
_EXPORT_MAGIC = b"PDXJOBKEY1\n"
# The operators whose results the platform computes under a requester-held key for now
# (Paillier statistics, with or without a join, the private joins, vertical logistic
# regression, and federated logistic regression, whose rounds the SDK closes:
# `pdx_client.fl`). As the server's `job_keys.check_request`.
JOB_KEY_OPERATOR_PREFIX = "stats."
JOB_KEY_JOIN_OPERATORS = ("psi.cardinality", "psi.sum", "psi.intersection")
JOB_KEY_MODEL_OPERATORS = ("fl.hetero_logreg",)
JOB_KEY_FL_OPERATORS = ("fl.logreg",)


def takes_job_key(operator: str, params: dict[str, Any] | None = None) -> bool:
    """Whether `operator` (with `params`) runs under a requester-held job key."""
    return (
        operator.startswith(JOB_KEY_OPERATOR_PREFIX)
        or operator in JOB_KEY_JOIN_OPERATORS
        or operator in JOB_KEY_MODEL_OPERATORS
        or operator in JOB_KEY_FL_OPERATORS
    )


_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**15, 8, 1


class JobKeyError(PdxError):
    """The key cannot be made, opened or used for this result (a problem-shaped error)."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            detail, type="https://pdx.dev/problems/job-key-invalid", title="Job key invalid"
        )


def canonical_public(scheme: str, n: int) -> bytes:
    """The canonical public key: sorted-key compact JSON of the scheme and n (lowercase hex)."""
    return json.dumps(
        {"n": format(n, "x"), "scheme": scheme}, sort_keys=True, separators=(",", ":")
    ).encode()


def fingerprint_of(scheme: str, n: int) -> str:
    """`sha256:<hex>` of `canonical_public`."""
    return "sha256:" + hashlib.sha256(canonical_public(scheme, n)).hexdigest()


@dataclass(frozen=True)
class _Field:
    name: str
    kind: str  # count | sum | sumsq
    column: str | None


class JobKey:
    """One computation's key pair; the secret half never leaves this object unencrypted."""

    def __init__(self, public_key: Any, private_key: Any, scheme: str = "paillier") -> None:
        if scheme != "paillier":
            raise JobKeyError("only the paillier scheme is supported")
        self.scheme = scheme
        self._pk = public_key
        self._sk = private_key

    # -- creation and storage ----------------------------------------------------------------

    @classmethod
    def generate(cls, scheme: str = "paillier", *, bits: int = MIN_PAILLIER_BITS) -> JobKey:
        """A fresh key pair, made here (phe draws p and q from the OS CSPRNG)."""
        if scheme != "paillier":
            raise JobKeyError("only the paillier scheme is supported")
        if bits < MIN_PAILLIER_BITS:
            raise JobKeyError(f"a Paillier job key needs at least {MIN_PAILLIER_BITS} bits")
        pk, sk = phe.generate_paillier_keypair(n_length=bits)
        return cls(pk, sk, scheme)

    @property
    def n(self) -> int:
        return int(self._pk.n)

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(self.scheme, self.n)

    def public(self) -> dict[str, Any]:
        """What the request's `job_key` field carries: scheme, n (hex) and fingerprint."""
        return {"scheme": self.scheme, "n": format(self.n, "x"), "fingerprint": self.fingerprint}

    def export(self, passphrase: str | bytes) -> bytes:
        """The key pair encrypted under a passphrase (scrypt, then AES-256-GCM)."""
        pw = passphrase.encode() if isinstance(passphrase, str) else bytes(passphrase)
        salt, nonce = os.urandom(16), os.urandom(12)
        key = Scrypt(salt=salt, length=32, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P).derive(pw)
        secret = json.dumps(
            {"scheme": self.scheme, "p": format(self._sk.p, "x"), "q": format(self._sk.q, "x")}
        ).encode()
        head = _EXPORT_MAGIC + salt + nonce
        return head + AESGCM(key).encrypt(nonce, secret, head)

    @classmethod
    def load(cls, data: bytes, passphrase: str | bytes) -> JobKey:
        """The key pair `export` wrote; `JobKeyError` for a wrong passphrase or altered data."""
        pw = passphrase.encode() if isinstance(passphrase, str) else bytes(passphrase)
        if not data.startswith(_EXPORT_MAGIC) or len(data) < len(_EXPORT_MAGIC) + 28 + 16:
            raise JobKeyError("not an exported pdx job key")
        at = len(_EXPORT_MAGIC)
        salt, nonce = data[at : at + 16], data[at + 16 : at + 28]
        key = Scrypt(salt=salt, length=32, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P).derive(pw)
        try:
            secret = json.loads(AESGCM(key).decrypt(nonce, data[at + 28 :], data[: at + 28]))
            p, q = int(secret["p"], 16), int(secret["q"], 16)
        except Exception:  # noqa: BLE001 - one answer whatever failed (Fernet's InvalidToken)
            raise JobKeyError("the job key could not be opened with this passphrase") from None
        pk = phe.PaillierPublicKey(p * q)
        return cls(pk, phe.PaillierPrivateKey(pk, p, q), str(secret.get("scheme", "paillier")))

    # -- decryption and post-processing ------------------------------------------------------

    def decrypt(self, result: dict[str, Any]) -> dict[str, Any]:
        """Decrypt a GET /v1/computations/{id}/result body and post-process it.

        Raises `JobKeyError` when the result is not encrypted under this key, and when the
        noisy total is below the minimum cohort (nothing is released then). It checks no
        node signature: `Enterprise.result` first checks a cohort join's result against
        its provider node's signed output (`pdx_client.resultsig`), then calls this.
        """
        doc = result.get("output", result)
        if isinstance(doc, dict) and doc.get("format") == "pdx-fl-result/1":
            from pdx_client.fl import open_model  # federated learning: the model is added here

            if doc.get("key_fingerprint") != self.fingerprint:
                raise JobKeyError("the result was encrypted under another job key")
            return open_model(self, doc)
        if not isinstance(doc, dict) or doc.get("format") != ENCRYPTED_FORMAT:
            raise JobKeyError("the result is not an encrypted pdx aggregate")
        if doc.get("key_fingerprint") != self.fingerprint:
            raise JobKeyError("the result was encrypted under another job key")
        values = self._open(doc)
        if doc.get("model") is not None:  # a model's weights, not an aggregate
            return _finish_model(doc, values)
        return _finish(doc, values)

    def open_vector(self, doc: dict[str, Any]) -> list[int]:
        """The signed integers of one packed encrypted vector under this key (a round's sum)."""
        if doc.get("key_fingerprint") != self.fingerprint:
            raise JobKeyError("the aggregate was encrypted under another job key")
        if not isinstance(doc.get("packing"), dict):
            raise JobKeyError("malformed encrypted aggregate")
        return self._open(doc)

    def _open(self, doc: dict[str, Any]) -> list[int]:
        if doc.get("packing", {}) is None:  # one signed value per ciphertext (a private join)
            return self._open_plain(doc)
        try:
            slot_bits = int(doc["packing"]["slot_bits"])
            headroom = int(doc["packing"]["headroom_bits"])
            length, addends = int(doc["length"]), int(doc["addends"])
            cts = [int(c, 16) for c in doc["ciphertexts"]]
        except (KeyError, TypeError, ValueError):
            raise JobKeyError("malformed encrypted aggregate") from None
        n, n2 = self.n, self.n * self.n
        if not cts or any(not 0 < c < n2 for c in cts):
            raise JobKeyError("malformed encrypted aggregate")
        bias = 1 << (slot_bits - headroom - 1)
        per, mask = (n.bit_length() - 1) // slot_bits, (1 << slot_bits) - 1
        out: list[int] = []
        for c in cts:
            m = self._sk.raw_decrypt(c)
            for j in range(per):
                if len(out) == length:
                    break
                out.append(((m >> (j * slot_bits)) & mask) - addends * bias)
        if len(out) != length:
            raise JobKeyError("encrypted aggregate is shorter than its layout")
        return out

    def _open_plain(self, doc: dict[str, Any]) -> list[int]:
        try:
            length = int(doc["length"])
            cts = [int(c, 16) for c in doc["ciphertexts"]]
        except (KeyError, TypeError, ValueError):
            raise JobKeyError("malformed encrypted aggregate") from None
        n, n2 = self.n, self.n * self.n
        if len(cts) != length or any(not 0 < c < n2 for c in cts):
            raise JobKeyError("malformed encrypted aggregate")
        out = []
        for c in cts:
            m = int(self._sk.raw_decrypt(c))
            out.append(m - n if m > n // 2 else m)
        return out


# -- post-processing (requester side; only noisy values are looked at under DP) ---------------


def _fields(names: list[str]) -> list[_Field]:
    out = []
    for name in names:
        kind, _, column = name.partition(":")
        if kind in ("rows", "n", "bin"):
            out.append(_Field(name, "count", column or None))
        elif kind in ("sum", "sumsq"):
            out.append(_Field(name, kind, column))
        else:
            raise JobKeyError(f"unknown field {name!r} in the layout")
    return out


def _units(doc: dict[str, Any], names: list[str]) -> list[Fraction]:
    """The value of one integer unit of each field (lattice unit under DP, else 10^-d^power)."""
    d = int(doc.get("decimals", 6))
    plan = doc.get("noise") or {}
    units = plan.get("units")
    if units is not None:
        return [Fraction(int(a), int(b)) for a, b in units]
    out = []
    for f in _fields(names):
        power = {"sum": 1, "sumsq": 2}.get(f.kind, 0)
        out.append(Fraction(1, 10 ** (d * power)))
    return out


def _bounds(clip: list[float] | None, kind: str) -> tuple[Fraction, Fraction] | None:
    if clip is None:
        return None
    lo, hi = Fraction(clip[0]), Fraction(clip[1])
    if kind == "sum":
        return lo, hi
    top = max(lo * lo, hi * hi)
    return (Fraction(0) if lo <= 0 <= hi else min(lo * lo, hi * hi)), top


def _text(x: Fraction) -> str:
    if x.denominator == 1:
        return str(x.numerator)
    d = x.denominator
    for prime in (2, 5):
        while d % prime == 0:
            d //= prime
    if d != 1:
        return f"{x.numerator}/{x.denominator}"
    with localcontext() as ctx:
        ctx.prec = 200
        return format(Decimal(x.numerator) / Decimal(x.denominator), "f")


def _finish(doc: dict[str, Any], values: list[int]) -> dict[str, Any]:
    names = [str(f) for f in doc["fields"]]
    groups = [str(g) for g in doc["groups"]]
    fields = _fields(names)
    units = _units(doc, names)
    width = len(names)
    if len(values) != width * len(groups):
        raise JobKeyError("aggregate does not match its layout")
    dp = doc.get("dp")
    min_cohort = int(doc.get("min_cohort", 1))
    clip = doc.get("clip")
    hist = doc["operator"] == "stats.histogram"
    rows: list[dict[str, Fraction]] = []
    for gi in range(len(groups)):
        vals: dict[str, Fraction] = {}
        for fi, f in enumerate(fields):
            v = units[fi] * values[gi * width + fi]
            vals[f.name] = max(v, Fraction(0)) if f.kind == "count" else v
        for f in fields:  # sums inside [lo·n̂, hi·n̂] of their noisy count (post-processing)
            b = _bounds(clip, f.kind) if f.kind != "count" else None
            if b is not None and f.column is not None:
                n = vals[f"n:{f.column}"]
                vals[f.name] = min(max(vals[f.name], b[0] * n), b[1] * n)
        rows.append(vals)
    total = sum((sum(r.values()) if hist else r["rows"]) for r in rows)
    if total < min_cohort:
        raise JobKeyError(
            f"the aggregate covers fewer records than the minimum cohort ({min_cohort})"
        )
    out_groups: list[dict[str, Any]] = []
    suppressed: list[str] = []
    exact = dp is None
    for g, vals in zip(groups, rows, strict=True):
        if hist:
            cells = [
                None if (v < min_cohort and (dp or v != 0)) else float(v) for v in vals.values()
            ]
            suppressed += [f"{g}|{k}" for k, c in zip(vals, cells, strict=True) if c is None]
            if all(c is None for c in cells):
                continue
            count = float(sum(c for c in cells if c is not None))
            out_groups.append({"group": g, "rows": count, "values": {}, "histogram": cells})
            continue
        if vals["rows"] < min_cohort:
            suppressed.append(g)
            continue
        out_groups.append(_group(doc, g, vals, exact))
    if not out_groups:
        raise JobKeyError("every group is below the minimum cohort")
    joined = doc.get("join_operator")
    extra: dict[str, Any] = {}
    if joined is not None:  # a private join: its released groups' (noisy) size, as the server's
        extra = {
            "operator": joined,
            "statistic": doc["operator"],
            "join": doc.get("join"),
            "intersection_size": float(sum(g["rows"] for g in out_groups)),
        }
    return {
        "operator": doc["operator"],
        "columns": list(doc.get("columns") or []),
        "group_by": doc.get("group_by"),
        "groups": out_groups,
        "bin_edges": doc.get("bin_edges"),
        "dp_epsilon": dp.get("epsilon") if dp else None,
        "suppressed": suppressed,
        "decrypted_by": "requester",
        **extra,
    }


def _finish_model(doc: dict[str, Any], values: list[int]) -> dict[str, Any]:
    """The weights per input's features (standardised units) and the intercept.

    The parties added the output perturbation before encrypting (under DP): this only
    undoes the fixed point, in the order the server's `vertical_ops.encrypted_model` gives.
    """
    try:
        model = doc["model"]
        scale = 1 << int(model["scale_bits"])
        inputs = [(str(i["dataset_id"]), [str(f) for f in i["features"]]) for i in model["inputs"]]
    except (KeyError, TypeError, ValueError):
        raise JobKeyError("malformed encrypted model") from None
    if len(values) != sum(len(f) for _, f in inputs) + 1:
        raise JobKeyError("encrypted model does not match its layout")
    weights: dict[str, dict[str, float]] = {}
    at = 0
    for dataset_id, features in inputs:
        weights[dataset_id] = {f: values[at + j] / scale for j, f in enumerate(features)}
        at += len(features)
    dp = doc.get("dp")
    return {
        "operator": doc["operator"],
        "weights": weights,
        "intercept": values[-1] / scale,
        "iterations": doc.get("iterations"),
        "dp_epsilon": dp.get("epsilon") if dp else None,
        "decrypted_by": "requester",
    }


def _group(doc: dict[str, Any], g: str, vals: dict[str, Fraction], exact: bool) -> dict[str, Any]:
    values: dict[str, float | None] = {}
    texts: dict[str, str] = {}
    op = doc["operator"]
    result: dict[str, Fraction | None] = {}
    if op == "stats.count":
        result["count"] = vals["rows"]
    columns = [] if op == "stats.count" else list(doc.get("columns") or [])
    for c in columns:
        n, s = vals[f"n:{c}"], vals[f"sum:{c}"]
        result[f"count({c})"] = n
        if op == "stats.sum":
            result[f"sum({c})"] = s
            continue
        result[f"mean({c})"] = s / n if n > 0 else None
        if op == "stats.variance":
            q = vals[f"sumsq:{c}"]
            var = (q - s * s / n) / (n - 1) if n > 1 else None
            clip = doc.get("clip")
            if var is not None and clip is not None:
                width = Fraction(clip[1]) - Fraction(clip[0])
                var = min(var, width * width / 4 * n / (n - 1))
            result[f"variance({c})"] = max(var, Fraction(0)) if var is not None else None
    for k, v in result.items():
        values[k] = float(v) if v is not None else None
        if exact and v is not None and math.isfinite(float(v)):
            texts[k] = _text(v)
    return {"group": g, "rows": float(vals["rows"]), "values": values, "exact": texts}

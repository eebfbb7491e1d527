"""Vertical (hetero) logistic regression: labels at the guest, features split across hosts.

FATE-style hetero-LR without an arbiter, gradients under the guest's Paillier key. Rows are
aligned first by ECDH-PSI (`align`): the guest learns which of its rows each host holds,
each host learns which of its rows are in the common set and in which (guest-shuffled)
order; the coordinator relays only blinded elements, and the index lists travel sealed
end to end (the integrator seals them to the recipient: they are alignment, not output).

One round (full batch, n aligned rows, D the degree of the sigmoid approximation):

1. Guest → host 1: [[U_g^j]] for j = 1..D and [[(c0 − y)·T]] per row, where
   U_g = round(S·X_g·w_g) (fixed point, scale S) and T = S^D·Sc.
2. Host h → host h+1: [[(U_g + U_1 + … + U_h)^k]], k = 1..D, computed from the previous
   powers with h's own plaintext U_h by the binomial theorem (linear in the ciphertexts).
3. Last host: [[d·T]] = Σ_k c_k·Sc·S^(D−k)·[[z^k·S^k]] + [[(c0 − y)·T]], the residual
   σ̃(z) − y with σ̃ the least-squares odd polynomial of degree D on [−R, R]; it sends [[d]]
   to the other hosts, and to the guest [[d + m]] (fresh per-row masks m, 64 bits wider than
   d) and [[X_g^T·m]] (from [[X_g]], which the guest encrypted once at set-up).
4. Guest: decrypts d + m and X_g^T·m, forms X_g^T·d = X_g^T·(d + m) − X_g^T·m, updates w_g.
5. Each host: [[X_h^T·d + r_h]] → guest, which decrypts and returns X_h^T·d + r_h; the
   host removes r_h and updates w_h. Every ciphertext the guest decrypts is re-randomised
   first, so its randomness tells the guest nothing about the hosts' coefficients.

Who learns what:

| party        | learns                                                                   |
|--------------|--------------------------------------------------------------------------|
| guest        | its own gradient X_g^T·d per round; per-row d + m (masked, statistically |
|              | hiding); hosts' gradients only masked by r_h; the aligned row set        |
| host h       | its own gradient X_h^T·d per round; its rows in the aligned set; only    |
|              | ciphertexts under the guest's key otherwise (no labels, no other party's |
|              | features, no per-row residual)                                           |
| coordinator  | blinded PSI elements and ciphertexts; sizes                              |
| model user   | the assembled weights, released through the release gate (DP there)      |

The per-round gradients are the standard leakage of hetero-LR (FATE reveals them too). The
per-round accuracy and loss in `HeteroResult.history` come from the driver assembling the
weights (a bench/test hook): in a job they are released only as DP values or not at all
(docs/privacy.md §5). Semi-honest parties throughout (docs/privacy.md §1).
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gmpy2  # type: ignore[import-untyped]
import numpy as np

from crypto.psi_ec import PsiGroup
from sandbox import paillier
from sandbox.errors import InvalidParameters
from sandbox.psi import DEFAULT_BATCH, EcEngine, PsiReceiver, PsiSender

_CT_BYTES = 512  # fixed width of a ciphertext on the wire (n² of a 2048-bit key)


@dataclass(frozen=True)
class HeteroConfig:
    """Training parameters (fixed by the job, not chosen per round)."""

    key_bits: int = paillier.KEY_BITS
    iterations: int = 60
    learning_rate: float = 1.0
    c: float = 1.0  # inverse L2 strength, as sklearn's LogisticRegression(C=...)
    degree: int = 5
    approx_range: float = 16.0
    scale_bits: int = 16
    coef_bits: int = 40
    mask_bits: int = 64

    def __post_init__(self) -> None:
        if self.degree < 1 or self.degree % 2 == 0:
            raise InvalidParameters("the sigmoid approximation must have odd degree")
        if not 1 <= self.iterations <= 10_000 or self.learning_rate <= 0 or self.c <= 0:
            raise InvalidParameters("iterations, learning rate and C must be positive")


def sigmoid_coefficients(degree: int, bound: float) -> list[float]:
    """Least-squares odd polynomial (plus 1/2) approximating the logistic function on ±bound."""
    z = np.linspace(-bound, bound, 4001)
    target = 1.0 / (1.0 + np.exp(-z))
    powers = [0, *range(1, degree + 1, 2)]
    sol, *_ = np.linalg.lstsq(
        np.vander(z, degree + 1, increasing=True)[:, powers], target, rcond=None
    )
    coef = [0.0] * (degree + 1)
    for p, c in zip(powers, sol, strict=True):
        coef[p] = float(c)
    return coef


@dataclass(frozen=True)
class LrMessage:
    """One message of the protocol: ciphertexts under the guest's key, or masked integers."""

    step: str
    ciphertexts: tuple[int, ...] = ()
    integers: tuple[int, ...] = ()

    def to_bytes(self) -> bytes:
        cts = b"".join(c.to_bytes(_CT_BYTES, "big") for c in self.ciphertexts)
        ints = b"".join(
            len(b := i.to_bytes((i.bit_length() + 8) // 8, "big", signed=True)).to_bytes(2, "big")
            + b
            for i in self.integers
        )
        return self.step.encode() + b"\n" + cts + ints


class _Fixed:
    """Shared fixed-point bookkeeping (all parties know the public config)."""

    def __init__(self, cfg: HeteroConfig) -> None:
        self.cfg = cfg
        self.s = 1 << cfg.scale_bits
        self.sc = 1 << cfg.coef_bits
        self.t = self.s**cfg.degree * self.sc
        coef = sigmoid_coefficients(cfg.degree, cfg.approx_range)
        self.c0 = round(coef[0] * self.sc) * self.s**cfg.degree
        self.ck = [
            round(coef[k] * self.sc) * self.s ** (cfg.degree - k) for k in range(cfg.degree + 1)
        ]
        self.d_bits = self.t.bit_length() + 8  # |d| < 256 (the residual of a bounded poly)

    def quantise(self, values: np.ndarray[Any, Any]) -> list[int]:
        return [int(v) for v in np.rint(np.asarray(values, dtype=float) * self.s).astype(np.int64)]


def _multiexp(bases: Sequence[Any], exps: Sequence[int], n2: Any) -> Any:
    """Π bases_i^exps_i mod n² for non-negative exponents (Pippenger's bucket method).

    With window w, about (bits/w)·(len + 2^w) multiplications instead of len·1.5·bits
    for one powmod each: 4× fewer for 455 rows of 192-bit masks.
    """
    if len(bases) < 16:
        acc = gmpy2.mpz(1)
        for b, k in zip(bases, exps, strict=True):
            if k == 1:
                acc = acc * b % n2
            elif k:
                acc = acc * gmpy2.powmod(b, k, n2) % n2
        return acc
    bits = max(k.bit_length() for k in exps)
    w = max(2, min(10, len(bases).bit_length() - 3))
    mask = (1 << w) - 1
    acc = gmpy2.mpz(1)
    for shift in range(((bits + w - 1) // w - 1) * w, -1, -w):
        for _ in range(w):
            acc = acc * acc % n2
        buckets: list[Any] = [None] * (mask + 1)
        for b, k in zip(bases, exps, strict=True):
            digit = (k >> shift) & mask
            if digit:
                cur = buckets[digit]
                buckets[digit] = b if cur is None else cur * b % n2
        running, total = gmpy2.mpz(1), gmpy2.mpz(1)
        for digit in range(mask, 0, -1):
            if buckets[digit] is not None:
                running = running * buckets[digit] % n2
            total = total * running % n2
        acc = acc * total % n2
    return acc


def _lincomb(cts: Sequence[Any], coeffs: Sequence[int], n2: Any) -> Any:
    """Π cts_i^coeffs_i mod n² with signed coefficients (one inversion for the negatives)."""
    pos = [(c, k) for c, k in zip(cts, coeffs, strict=True) if k > 0]
    neg = [(c, -k) for c, k in zip(cts, coeffs, strict=True) if k < 0]
    acc = _multiexp([c for c, _ in pos], [k for _, k in pos], n2)
    if neg:
        inv = _multiexp([c for c, _ in neg], [k for _, k in neg], n2)
        acc = acc * gmpy2.invert(inv, n2) % n2
    return acc


def _small_pow(b: Any, k: int, n2: Any) -> Any:
    """b^k mod n² by square-and-multiply, for the small exponents (binomial coefficients).

    For a handful of bits this beats gmpy2.powmod, whose set-up costs a few multiplications.
    """
    acc = b
    for bit in bin(k)[3:]:
        acc = acc * acc % n2
        if bit == "1":
            acc = acc * b % n2
    return acc


def _invert_all(values: Sequence[Any], n2: Any) -> list[Any]:
    """The inverses mod n² of `values` with one inversion (Montgomery's trick)."""
    prefix = [gmpy2.mpz(1)]
    for v in values:
        prefix.append(prefix[-1] * v % n2)
    inv = gmpy2.invert(prefix[-1], n2)
    out: list[Any] = [None] * len(values)
    for i in range(len(values) - 1, -1, -1):
        out[i] = inv * prefix[i] % n2
        inv = inv * values[i] % n2
    return out


def _shift_powers(cts: Sequence[Any], u: int, n2: Any) -> list[Any]:
    """Π_{j≤k} cts_j^(C(k,j)·u^(k−j)) mod n² for k = 1..len(cts), cts_j = [[z^j]].

    The ciphertext part of [[(z + u)^k]] (the binomial theorem; the caller adds u^k in the
    clear). The powers cts_j^(|u|^m) come from one chain of powmods by |u| per base, shared
    by every k: D(D−1)/2 exponentiations by |u| per row instead of one by C(k,j)·u^(k−j)
    per term (about half the squarings for D = 5). The binomial coefficients are small
    exponents, done by multiplication. For u < 0 the terms with k − j odd are divided out
    with one inversion for all k. Each result is the same element of Z*_{n²} as the
    product of the terms, so the same integer.
    """
    d, a = len(cts), abs(u)
    base = [c % n2 for c in cts]
    if a == 0:
        return base  # only the j = k term survives, with exponent 1
    chains = [[b] for b in base[:-1]]  # chains[j - 1][m] = cts_j^(a^m), m ≤ D − j
    for j, chain in enumerate(chains, 1):
        for _ in range(d - j):
            chain.append(gmpy2.powmod(chain[-1], a, n2))
    pos: list[Any] = []
    neg: list[Any] = []
    for k in range(1, d + 1):
        p, q = base[k - 1], gmpy2.mpz(1)
        for j in range(1, k):
            t = _small_pow(chains[j - 1][k - j], math.comb(k, j), n2)
            if u < 0 and (k - j) % 2:
                q = q * t % n2
            else:
                p = p * t % n2
        pos.append(p)
        neg.append(q)
    if u > 0 or d == 1:
        return pos
    inv = _invert_all(neg[1:], n2)  # k = 1 has no term to divide out
    return [pos[0], *(p * q % n2 for p, q in zip(pos[1:], inv, strict=True))]


class Guest:
    """The label holder: owns the Paillier key pair, its features and the intercept."""

    def __init__(
        self,
        x: np.ndarray[Any, Any],
        y: np.ndarray[Any, Any],
        cfg: HeteroConfig,
        keypair: tuple[Any, Any] | None = None,
    ) -> None:
        self.x = np.hstack([np.asarray(x, dtype=float), np.ones((len(x), 1))])  # intercept last
        self.y = np.asarray(y, dtype=int)
        if set(np.unique(self.y)) - {0, 1}:
            raise InvalidParameters("labels must be 0 or 1")
        self.fx = _Fixed(cfg)
        self.public, self._private = keypair or paillier.generate_keypair(cfg.key_bits)
        self._enc = paillier.FastEncryptor(self.public)
        self.n2 = gmpy2.mpz(self.public.n) ** 2
        self.w = np.zeros(self.x.shape[1])
        self._xq = [self.fx.quantise(row) for row in self.x]
        self._masked: list[int] | None = None

    def _dec(self, c: int) -> int:
        n = int(self.public.n)
        m = int(self._private.raw_decrypt(c))
        return m - n if m > n // 2 else m

    def setup(self) -> LrMessage:
        """[[X_g]] (fixed point, row-major) for the last host's cross term."""
        self._enc.precompute()
        return LrMessage(
            "lr.guest.features", tuple(self._enc.encrypt_raw(v) for row in self._xq for v in row)
        )

    def round_start(self) -> LrMessage:
        """[[U_g^j]] (j = 1..D) and [[(c0 − y)·T]] per row, row-major."""
        u = self.fx.quantise(self.x @ self.w)
        d = self.fx.cfg.degree
        cts: list[int] = []
        for ui, yi in zip(u, self.y, strict=True):
            cts.extend(self._enc.encrypt_raw(ui**j) for j in range(1, d + 1))
            cts.append(self._enc.encrypt_raw(self.fx.c0 - int(yi) * self.fx.t))
        return LrMessage("lr.guest.powers", tuple(cts))

    def receive_masked_residuals(self, msg: LrMessage) -> None:
        self._masked = [self._dec(c) for c in msg.ciphertexts]

    def receive_cross_term(self, msg: LrMessage, rows: int) -> None:
        """X_g^T·m; with d + m from the last message, the guest's own gradient step."""
        if self._masked is None or len(self._masked) != rows:
            raise InvalidParameters("cross term before the masked residuals")
        if rows == 0:  # nothing aligned (a noised minimum let it run): w stays 0, as a host's
            self._masked = None
            return
        xtm = [self._dec(c) for c in msg.ciphertexts]
        p = self.x.shape[1]
        grad = []
        for f in range(p):
            total = sum(self._xq[i][f] * self._masked[i] for i in range(rows)) - xtm[f]
            grad.append(total / (self.fx.s * self.fx.t * rows))
        self._masked = None
        reg = np.append(self.w[:-1], 0.0) / (self.fx.cfg.c * rows)  # no penalty on intercept
        self.w = self.w - self.fx.cfg.learning_rate * (np.asarray(grad) + reg)

    def unmask_for_host(self, msg: LrMessage) -> LrMessage:
        """Decrypt a host's masked gradient (the guest sees only X_h^T·d + r_h)."""
        return LrMessage(
            "lr.guest.masked-gradient", integers=tuple(self._dec(c) for c in msg.ciphertexts)
        )


class Host:
    """A feature provider: its own columns and weights, the guest's public key only."""

    def __init__(self, x: np.ndarray[Any, Any], cfg: HeteroConfig, public_key: Any) -> None:
        self.x = np.asarray(x, dtype=float)
        self.fx = _Fixed(cfg)
        self.public = public_key
        self.n2 = gmpy2.mpz(public_key.n) ** 2
        self._enc = paillier.FastEncryptor(public_key)
        self.w = np.zeros(self.x.shape[1])
        self._xq = [self.fx.quantise(row) for row in self.x]
        self._guest_x: list[int] = []
        self._mask_vec: list[int] = []

    def _fresh(self, c: Any) -> int:
        return int(c * self._enc.obfuscator() % self.n2)

    def _plain(self, m: int) -> Any:
        return (1 + (m % self.public.n) * self.public.n) % self.n2

    def receive_guest_features(self, msg: LrMessage) -> None:
        self._guest_x = list(msg.ciphertexts)

    def extend(self, msg: LrMessage) -> LrMessage:
        """Powers of z_partial + U_h from the previous party's powers (binomial expansion)."""
        d = self.fx.cfg.degree
        u = self.fx.quantise(self.x @ self.w)
        per = d + 1
        out: list[int] = []
        for i, ui in enumerate(u):
            row = msg.ciphertexts[i * per : (i + 1) * per]
            if len(row) < d:  # a short message fails as the per-k lincombs' strict zip did
                raise ValueError("fewer powers than rows")
            shifted = _shift_powers([gmpy2.mpz(c) for c in row[:d]], ui, self.n2)
            out.extend(int(ct * self._plain(ui**k) % self.n2) for k, ct in enumerate(shifted, 1))
            out.append(int(row[d]))  # the (c0 − y)·T term travels on unchanged
        return LrMessage("lr.host.powers", tuple(out))

    def residuals(self, msg: LrMessage) -> tuple[LrMessage, LrMessage, LrMessage]:
        """Last host: [[d]] for the hosts, [[d + m]] and [[X_g^T·m]] for the guest."""
        d = self.fx.cfg.degree
        per = d + 1
        rows = len(msg.ciphertexts) // per
        coeffs = self.fx.ck[1:] + [1]
        dct = [
            int(
                _lincomb(
                    [gmpy2.mpz(c) for c in msg.ciphertexts[i * per : (i + 1) * per]],
                    coeffs,
                    self.n2,
                )
            )
            for i in range(rows)
        ]
        bits = self.fx.d_bits + self.fx.cfg.mask_bits
        masks = [secrets.randbits(bits) for _ in range(rows)]
        masked = tuple(
            self._fresh(gmpy2.mpz(c) * self._plain(m)) for c, m in zip(dct, masks, strict=True)
        )
        p = len(self._guest_x) // rows if rows else 0
        cross = tuple(
            self._fresh(_lincomb([self._guest_x[i * p + f] for i in range(rows)], masks, self.n2))
            for f in range(p)
        )
        return (
            LrMessage("lr.host.residuals", tuple(dct)),
            LrMessage("lr.host.masked-residuals", masked),
            LrMessage("lr.host.cross-term", cross),
        )

    def gradient_request(self, residuals: LrMessage) -> LrMessage:
        """[[X_h^T·d + r_h]] for the guest to decrypt."""
        rows = len(residuals.ciphertexts)
        bits = (
            self.fx.d_bits + self.fx.cfg.scale_bits + 8 + rows.bit_length() + self.fx.cfg.mask_bits
        )
        self._mask_vec = [secrets.randbits(bits) for _ in range(self.x.shape[1])]
        cts = [gmpy2.mpz(c) for c in residuals.ciphertexts]
        out = []
        for f in range(self.x.shape[1]):
            col = [self._xq[i][f] for i in range(rows)]
            out.append(self._fresh(_lincomb(cts, col, self.n2) * self._plain(self._mask_vec[f])))
        return LrMessage("lr.host.masked-gradient", tuple(out))

    def apply(self, msg: LrMessage) -> None:
        rows = len(self._xq)
        if rows == 0:  # nothing aligned: the regulariser's minimiser, w = 0
            return
        grad = np.asarray(
            [
                (v - r) / (self.fx.s * self.fx.t * rows)
                for v, r in zip(msg.integers, self._mask_vec, strict=True)
            ]
        )
        self.w = self.w - self.fx.cfg.learning_rate * (grad + self.w / (self.fx.cfg.c * rows))


@dataclass
class HeteroResult:
    """The trained (guest, hosts) weights and the per-round history of the driver."""

    guest_weights: np.ndarray[Any, Any]
    host_weights: list[np.ndarray[Any, Any]]
    history: list[dict[str, float]] = field(default_factory=list)
    round_seconds: list[float] = field(default_factory=list)

    def decision(
        self, x_guest: np.ndarray[Any, Any], x_hosts: Sequence[np.ndarray[Any, Any]]
    ) -> Any:
        z = np.asarray(x_guest) @ self.guest_weights[:-1] + self.guest_weights[-1]
        for xh, wh in zip(x_hosts, self.host_weights, strict=True):
            z = z + np.asarray(xh) @ wh
        return z


Transcript = Callable[[str, LrMessage], None]


def _noop(_to: str, _msg: LrMessage) -> None:
    return None


def train(
    x_guest: np.ndarray[Any, Any],
    y: np.ndarray[Any, Any],
    x_hosts: Sequence[np.ndarray[Any, Any]],
    cfg: HeteroConfig = HeteroConfig(),
    *,
    transcript: Transcript = _noop,
    evaluate: Callable[[HeteroResult], dict[str, float]] | None = None,
    clock: Callable[[], float] | None = None,
    guest_keypair: tuple[Any, Any] | None = None,
) -> HeteroResult:
    """In-process driver over already aligned rows (recipients "guest", "host0", "host1"…).

    `guest_keypair` is the guest's own Paillier pair (the SDK's, in a job); by default a
    fresh one of `cfg.key_bits`.
    """
    now = clock or time.perf_counter
    if not x_hosts:
        raise InvalidParameters("hetero-LR needs at least one host")
    rows = len(y)
    if len(x_guest) != rows or any(len(x) != rows for x in x_hosts):
        raise InvalidParameters("all parties must hold the same aligned rows")
    guest = Guest(x_guest, y, cfg, guest_keypair)
    hosts = [Host(x, cfg, guest.public) for x in x_hosts]
    last = len(hosts) - 1
    setup = guest.setup()
    transcript(f"host{last}", setup)
    hosts[last].receive_guest_features(setup)
    result = HeteroResult(guest.w, [h.w for h in hosts])
    for _ in range(cfg.iterations):
        started = now()
        msg = guest.round_start()
        for i, host in enumerate(hosts):
            transcript(f"host{i}", msg)
            msg = host.extend(msg)
        resid, masked, cross = hosts[last].residuals(msg)
        for i in range(last):
            transcript(f"host{i}", resid)
        transcript("guest", masked)
        guest.receive_masked_residuals(masked)
        transcript("guest", cross)
        guest.receive_cross_term(cross, rows)
        for i, host in enumerate(hosts):
            req = host.gradient_request(resid)
            transcript("guest", req)
            reply = guest.unmask_for_host(req)
            transcript(f"host{i}", reply)
            host.apply(reply)
        result.round_seconds.append(now() - started)
        result.guest_weights, result.host_weights = guest.w.copy(), [h.w.copy() for h in hosts]
        if evaluate is not None:
            result.history.append(evaluate(result))
    return result


def align(
    guest_messages: Sequence[bytes],
    host_messages: Sequence[Sequence[bytes]],
    dst: bytes,
    *,
    batch: int = DEFAULT_BATCH,
) -> tuple[list[int], list[list[int]]]:
    """Row alignment by ECDH-PSI (guest as receiver with each host).

    Returns the guest's rows and each host's rows of the common set, in one order the guest
    draws at random (so the order says nothing about labels). The guest → host index lists
    are the only messages with row positions; the integrator seals them to each host.
    """
    group = PsiGroup(dst)
    per_host: list[dict[int, int]] = []
    senders: list[PsiSender] = []
    for messages in host_messages:
        r = PsiReceiver(guest_messages, EcEngine(group), reveal_members=True, batch=batch)
        s = PsiSender(messages, EcEngine(group), reveal_members=True, batch=batch)
        for req in r.requests():
            for reply in s.respond(req):
                r.receive_doubles(reply)
        for msg in s.own():
            r.receive_sender(msg)
        per_host.append(dict(r.aligned()))
        senders.append(s)
    common = sorted(set.intersection(*(set(m) for m in per_host))) if per_host else []
    order = [
        common[i]
        for i in np.argsort(np.frombuffer(secrets.token_bytes(8 * len(common)), np.uint64))
    ]
    host_rows = [s.rows_at([m[g] for g in order]) for s, m in zip(senders, per_host, strict=True)]
    return order, host_rows

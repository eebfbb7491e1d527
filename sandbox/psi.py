"""ECDH private set intersection: cardinality, intersection and Private Join and Compute sum.

Each operator is a pair (or trio) of parties exchanging explicit `PsiMessage`s in batches,
so a driver can put any transport between them (in-process, or relayed between nodes).
Inputs are 32-byte PSI messages made by `sandbox.identifiers.JobDomain` (normalised, keyed
per job); the group is `crypto.psi_ec` (P-256, RFC 9380 hashing). Singly blinded elements
(a·H(x), b·H(y), k1·H(x), k2·H(y)), which the peer blinds again, travel as 65-byte
uncompressed SEC1 points (the peer validates them without a square root); the doubly
blinded values that are compared travel and are kept x-only (32 bytes).

Notation: H = hash_to_curve under the job's DST, a / b / k1 / k2 secret scalars (fresh per
job), X the receiver's (or matching party's) set, Y the sender's (or value party's) set,
I = X ∩ Y (sets: each party removes its own duplicates first). Shuffles use permutations
drawn from `os.urandom` (`psi_sets.permutation`), never a predictable PRNG.

psi.cardinality (DH-PSI-CA, De Cristofaro–Gasti–Tsudik 2012)
    1. R → S: {a·H(x)}                      (R's order: sorted by keyed digest, meaningless)
    2. S → R: shuffled {b·a·H(x)}           (the shuffle unlinks them from R's elements)
    3. S → R: shuffled {b·H(y)}             (the shuffle hides S's row order)
    4. R: counts b·H(y) whose a·b·H(y) lies in step 2's set.

    | party              | learns                                   |
    |--------------------|------------------------------------------|
    | receiver R         | |X|, |Y| (public), |X ∩ Y|                |
    | sender S           | |X| (public)                             |
    | coordinator/relay  | |X|, |Y| (message sizes) only            |

psi.intersection (DH-PSI with the members revealed to the designated party only)
    As cardinality, but step 2 keeps R's order, so R learns which of its rows are in I.
    The caller designates R (policy: never for PI identifiers unless the agreement's legal
    basis allows it); S is never told anything.

    | party              | learns                                   |
    |--------------------|------------------------------------------|
    | receiver R         | X ∩ Y (as indices of its own rows), |Y|  |
    | sender S           | |X|                                      |
    | coordinator/relay  | |X|, |Y|                                 |

psi.sum (Private Join and Compute, Ion et al., "On Deploying Secure Computing: Private
Intersection-Sum-with-Cardinality", EuroS&P 2020)
    P1 = matching party (identifiers X), P2 = value party (pairs (y, t)), K = result holder
    (Paillier key pair; P2 itself in Google's deployment, or the job's result party).
    1. P1 → P2: {k1·H(x)}
    2. P2 → P1: shuffled {k2·k1·H(x)}
    3. P2 → P1: shuffled {(k2·H(y), Enc_K(t))}
    4. P1: Enc_K(Σ_{y ∈ I} t) = Π of the matching ciphertexts, re-randomised by Enc_K(0);
       P1 → K: that one ciphertext.  K decrypts the sum.

    | party              | learns                                                    |
    |--------------------|-----------------------------------------------------------|
    | matching party P1  | |X|, |Y|, |X ∩ Y| (exact: see below)                     |
    | value party P2     | |X|                                                       |
    | result holder K    | Σ_{y ∈ X∩Y} t (exact before noise), nothing per record   |
    | coordinator/relay  | |X|, |Y|, ciphertexts under K                             |

    P1 learns the intersection size exactly: the caller must either add DP noise to it
    before anything derived from it leaves P1, or charge it to the privacy budget as a
    released count (docs/privacy.md §4–5). P1 must never hold K's secret key (it could
    decrypt each matched value): the driver refuses P1 = K. K learns the exact sum; the
    release gate adds the noise before the requester sees it.

Everything is semi-honest (docs/privacy.md §1). Memory: every party keeps at most one
32-byte element per row of the other party's set (≈ 32 MB at 10^6) plus one batch.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, ClassVar

import gmpy2  # type: ignore[import-untyped]
import numpy as np

from crypto.psi_ec import POINT_BYTES, PsiGroup, PsiScalar, blind_chunk, hash_blind_chunk
from sandbox.errors import InvalidParameters
from sandbox.paillier import FastEncryptor, public_key_from_n
from sandbox.psi_sets import ELEMENT, ELEMENT_DTYPE, SortedSet, permutation, unique_messages

POINT = POINT_BYTES
"""A singly blinded element, 04‖x‖y, which the peer blinds again."""
DEFAULT_BATCH = 8192
Transcript = Callable[[str, "PsiMessage"], None]
POINT_STEPS = frozenset({"psi.r.blinded", "psi.s.blinded", "pjc.p1.blinded", "pjc.p2.pairs"})
"""Steps whose elements are singly blinded points (`POINT` bytes each); the rest carry
doubly blinded abscissae (`ELEMENT` bytes each)."""


@dataclass(frozen=True)
class PsiMessage:
    """One batch of one protocol step: group elements, optionally Paillier ciphertexts.

    Elements are 65-byte SEC1 points in `POINT_STEPS`, 32-byte abscissae otherwise.
    """

    step: str
    seq: int
    elements: bytes = b""
    ciphertexts: tuple[int, ...] = ()
    final: bool = False

    @property
    def width(self) -> int:
        return POINT if self.step in POINT_STEPS else ELEMENT

    @property
    def count(self) -> int:
        return len(self.elements) // self.width

    def to_bytes(self) -> bytes:
        """Wire form: a JSON header line, the elements, then each ciphertext length-prefixed."""
        head = {"step": self.step, "seq": self.seq, "count": self.count, "final": self.final}
        cts = b"".join(
            len(b := c.to_bytes((c.bit_length() + 7) // 8 or 1, "big")).to_bytes(4, "big") + b
            for c in self.ciphertexts
        )
        return json.dumps(head).encode() + b"\n" + self.elements + cts


def _items(buf: bytes) -> list[bytes]:
    return [buf[i : i + ELEMENT] for i in range(0, len(buf), ELEMENT)]


class EcEngine:
    """One party's blinding key and how it runs batches (in-process or on a process pool)."""

    def __init__(
        self, group: PsiGroup, *, executor: Executor | None = None, split: int = 1
    ) -> None:
        self.group = group
        self._key = group.new_scalar()
        self._executor = executor
        self._split = max(1, split)

    def _run(
        self,
        fn: Callable[[bytes, bytes, bytes], bytes],
        local: Callable[[bytes, PsiScalar], bytes],
        buf: bytes,
        width: int,
    ) -> bytes:
        """`buf` (concatenated `width`-byte items) in-process, or one slice per worker via `fn`.

        Slices travel as single bytes objects (one pickle each way, no per-element objects).
        """
        count = len(buf) // width
        if self._executor is None or self._split == 1 or count < 2 * self._split:
            return local(buf, self._key)
        key, dst = self._key.export(), self.group.dst
        step = width * -(-count // self._split)
        parts = [buf[i : i + step] for i in range(0, len(buf), step)]
        return b"".join(self._executor.map(fn, [dst] * len(parts), [key] * len(parts), parts))

    def hash_blind(self, messages: bytes) -> bytes:
        """key·H(m) as 65-byte points, for each 32-byte message in `messages` (concatenated)."""
        return self._run(hash_blind_chunk, self.group.hash_blind_packed, messages, ELEMENT)

    def blind(self, points: bytes) -> bytes:
        """x(key·P) (32 bytes) for each 65-byte point in `points` (concatenated)."""
        return self._run(blind_chunk, self.group.blind_packed, points, POINT)

    def encrypt_async(
        self, encryptor: FastEncryptor, values: Sequence[int]
    ) -> Callable[[], tuple[int, ...]]:
        """Start Paillier-encrypting `values` (a slice per worker); call the result to collect.

        Each worker has its own encryptor (fixed base hs, table: `_encrypt_chunk`), giving what
        `encrypt_raw` gives: (1 + m·n)·hs^α mod n², fresh α. Without a pool: in-process, at once.
        """
        if self._executor is None or self._split == 1 or len(values) < 2 * self._split:
            cts = tuple(encryptor.encrypt_raw(v) for v in values)
            return lambda: cts
        step = -(-len(values) // self._split)
        n = int(encryptor.n)
        futures = [
            self._executor.submit(_encrypt_chunk, n, list(values[i : i + step]))
            for i in range(0, len(values), step)
        ]
        return lambda: tuple(c for f in futures for c in f.result())


_ENCRYPTORS: dict[int, FastEncryptor] = {}  # a worker's per modulus (table ~16 MB at 2048)


def _encrypt_chunk(n: int, values: list[int]) -> list[int]:
    """Picklable worker entry: Enc(v) under the public key with modulus `n`, for each value."""
    enc = _ENCRYPTORS.get(n)
    if enc is None:
        enc = _ENCRYPTORS[n] = FastEncryptor(public_key_from_n(n))
        enc.precompute()
    return [enc.encrypt_raw(v) for v in values]


# -- psi.cardinality and psi.intersection ------------------------------------------------------


def _slices(n: int, batch: int) -> Iterator[tuple[int, slice, bool]]:
    """(seq, rows, final) for each batch of `n` rows; one empty batch when there are none."""
    total = max(1, -(-n // batch))
    for seq in range(total):
        yield seq, slice(seq * batch, (seq + 1) * batch), seq + 1 == total


def _first_rows(inverse: np.ndarray[Any, Any], size: int) -> np.ndarray[Any, Any]:
    """The first input row of each of `size` unique elements (`inverse` maps row → element)."""
    first = np.empty(size, dtype=np.int64)
    first[inverse[::-1]] = np.arange(len(inverse))[::-1]
    return first


class _Party:
    """One party's own set (unique elements), its blinding key and batch size."""

    def __init__(self, uniq: np.ndarray[Any, Any], engine: EcEngine, batch: int) -> None:
        self._uniq = uniq
        self._engine = engine
        self._batch = batch


class _Matcher(_Party):
    """Keeps its set's double blindings and matches the peer's elements: R, or P1 in psi.sum."""

    _BLINDED: ClassVar[str]
    """Step name of its singly blinded elements (step 1)."""

    def __init__(self, uniq: np.ndarray[Any, Any], engine: EcEngine, batch: int) -> None:
        super().__init__(uniq, engine, batch)
        self._doubles = np.empty(len(uniq), dtype=ELEMENT_DTYPE)
        self._filled = 0
        self._set: SortedSet | None = None

    def requests(self) -> Iterator[PsiMessage]:
        """Step 1: its own set blinded with its key, {a·H(x)} or {k1·H(x)}, in batches."""
        for seq, rows, final in _slices(len(self._uniq), self._batch):
            chunk = self._engine.hash_blind(self._uniq[rows].tobytes())
            yield PsiMessage(self._BLINDED, seq, chunk, final=final)

    def receive_doubles(self, msg: PsiMessage) -> None:
        """Step 2: its elements blinded again by the peer (b·a·H(x) or k2·k1·H(x))."""
        arr = np.frombuffer(msg.elements, dtype=ELEMENT_DTYPE)
        if self._filled + len(arr) > len(self._doubles):
            raise InvalidParameters("more double blindings than elements sent")
        self._doubles[self._filled : self._filled + len(arr)] = arr
        self._filled += len(arr)

    def _require_doubles(self, what: str) -> None:
        if self._filled != len(self._doubles):
            raise InvalidParameters(f"{what} before all double blindings")

    @property
    def _sorted(self) -> SortedSet:
        """The double blindings as a sorted set, built on first use (step 3)."""
        if self._set is None:
            self._set = SortedSet(self._doubles)
        return self._set

    def _match(self, msg: PsiMessage) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """Step 3: the peer's elements raised to its own key, and which of them it holds."""
        matched = self._sorted
        mine = np.frombuffer(self._engine.blind(msg.elements), dtype=ELEMENT_DTYPE)
        return mine, matched.hits(mine)


class _Doubler(_Party):
    """Blinds the matcher's elements again and sends its own set: S, or P2 in psi.sum."""

    _DOUBLED: ClassVar[str]
    """Step name of the double blindings it returns (step 2)."""

    def __init__(self, uniq: np.ndarray[Any, Any], engine: EcEngine, batch: int) -> None:
        super().__init__(uniq, engine, batch)
        self._held: list[bytes] = []

    def shuffled_doubles(self) -> Iterator[PsiMessage]:
        """Step 2: every held double blinding, in one uniform random order."""
        arr = np.frombuffer(b"".join(self._held), dtype=ELEMENT_DTYPE)
        self._held = []
        yield from _batches(self._DOUBLED, arr[permutation(len(arr))], self._batch)


class PsiReceiver(_Matcher):
    """R: sends its blinded set, receives the double blindings and S's set, learns the result."""

    _BLINDED = "psi.r.blinded"

    def __init__(
        self, messages: Sequence[bytes], engine: EcEngine, *, reveal_members: bool, batch: int
    ) -> None:
        uniq, self._inverse = unique_messages(messages)
        super().__init__(uniq, engine, batch)
        self._reveal = reveal_members
        self._hits: list[np.ndarray[Any, Any]] = []
        self._pairs: list[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]] = []
        self.sender_size = 0

    @property
    def size(self) -> int:
        return len(self._uniq)

    def receive_sender(self, msg: PsiMessage) -> None:
        """Step 3: S's b·H(y); R raises to a and keeps the hits.

        Step 2's b·a·H(x) (`receive_doubles`) come in R's order for intersection, shuffled
        for cardinality.
        """
        self._require_doubles("sender elements")
        mine, hit = self._match(msg)
        self._hits.append(mine[hit])
        if self._reveal:  # which of R's elements each hit is, and where it was in S's stream
            where = np.flatnonzero(hit)
            pos = np.searchsorted(self._sorted.sorted, mine[where])
            self._pairs.append((self._sorted.order[pos], where + self.sender_size))
        self.sender_size += len(mine)

    def cardinality(self) -> int:
        """|X ∩ Y|."""
        return int(sum(len(h) for h in self._hits))

    def members(self) -> list[int]:
        """Indices of R's input rows whose identifier is in Y (intersection mode only)."""
        if not self._reveal:
            raise InvalidParameters("this receiver runs psi.cardinality: members are not revealed")
        hits = np.concatenate(self._hits) if self._hits else np.empty(0, dtype=ELEMENT_DTYPE)
        in_set = np.isin(self._doubles, hits)
        return [int(i) for i in np.flatnonzero(in_set[self._inverse])]

    def aligned(self) -> list[tuple[int, int]]:
        """(R's first input row, position in S's shuffled stream) per intersection member.

        For alignment (hetero-LR): R tells S the stream positions in an order of its choosing
        and S maps them to its rows with `PsiSender.rows_at`; nobody else sees them.
        """
        if not self._reveal:
            raise InvalidParameters("this receiver runs psi.cardinality: members are not revealed")
        first = _first_rows(self._inverse, len(self._uniq))
        return [
            (int(first[u]), int(p))
            for uniq_idx, pos in self._pairs
            for u, p in zip(uniq_idx, pos, strict=True)
        ]


class PsiSender(_Doubler):
    """S: double-blinds R's elements (shuffled unless members are revealed) and sends its own."""

    _DOUBLED = "psi.s.doubled"

    def __init__(
        self, messages: Sequence[bytes], engine: EcEngine, *, reveal_members: bool, batch: int
    ) -> None:
        uniq, inverse = unique_messages(messages)
        super().__init__(uniq, engine, batch)
        self._first = _first_rows(inverse, len(uniq))
        self._reveal = reveal_members
        self._perm: np.ndarray[Any, Any] | None = None
        self.receiver_size = 0

    @property
    def size(self) -> int:
        return len(self._uniq)

    def respond(self, msg: PsiMessage) -> list[PsiMessage]:
        """Step 2 for one batch: returned at once in R's order, or held until shuffled."""
        doubled = self._engine.blind(msg.elements)
        self.receiver_size += len(doubled) // ELEMENT
        if self._reveal:
            return [PsiMessage("psi.s.doubled", msg.seq, doubled, final=msg.final)]
        self._held.append(doubled)
        return []

    def own(self) -> Iterator[PsiMessage]:
        """Step 3: {b·H(y)} in a uniform random order, hashed batch by batch."""
        perm = self._perm = permutation(len(self._uniq))
        for seq, rows, final in _slices(len(perm), self._batch):
            blinded = self._engine.hash_blind(self._uniq[perm[rows]].tobytes())
            yield PsiMessage("psi.s.blinded", seq, blinded, final=final)

    def rows_at(self, positions: Sequence[int]) -> list[int]:
        """S's own input rows at positions of its shuffled stream (alignment, see `aligned`)."""
        if self._perm is None or any(not 0 <= p < len(self._perm) for p in positions):
            raise InvalidParameters("stream position out of range")
        return [int(self._first[self._perm[p]]) for p in positions]


def _batches(step: str, arr: np.ndarray[Any, Any], batch: int) -> Iterator[PsiMessage]:
    for seq, rows, final in _slices(len(arr), batch):
        yield PsiMessage(step, seq, arr[rows].tobytes(), final=final)


@dataclass
class PsiOutcome:
    """What the designated receiver learns (members only for psi.intersection)."""

    receiver_size: int
    sender_size: int
    cardinality: int
    members: list[int] | None = None


def _noop(_to: str, _msg: PsiMessage) -> None:
    return None


def run_psi(
    receiver_messages: Sequence[bytes],
    sender_messages: Sequence[bytes],
    dst: bytes,
    *,
    reveal_members: bool = False,
    batch: int = DEFAULT_BATCH,
    executor: Executor | None = None,
    split: int = 1,
    transcript: Transcript = _noop,
) -> PsiOutcome:
    """In-process driver of psi.cardinality (default) or psi.intersection.

    `transcript(recipient, message)` sees every message as it is delivered ("receiver" or
    "sender"); the integrator's transport replaces this driver.
    """
    group = PsiGroup(dst)
    r = PsiReceiver(
        receiver_messages,
        EcEngine(group, executor=executor, split=split),
        reveal_members=reveal_members,
        batch=batch,
    )
    s = PsiSender(
        sender_messages,
        EcEngine(group, executor=executor, split=split),
        reveal_members=reveal_members,
        batch=batch,
    )
    for req in r.requests():
        transcript("sender", req)
        for reply in s.respond(req):
            transcript("receiver", reply)
            r.receive_doubles(reply)
    if not reveal_members:
        for reply in s.shuffled_doubles():
            transcript("receiver", reply)
            r.receive_doubles(reply)
    for msg in s.own():
        transcript("receiver", msg)
        r.receive_sender(msg)
    return PsiOutcome(
        r.size, r.sender_size, r.cardinality(), r.members() if reveal_members else None
    )


# -- psi.sum: Private Join and Compute ---------------------------------------------------------


class SumMatcher(_Matcher):
    """P1: holds identifiers only; matches and multiplies ciphertexts it cannot decrypt.

    Step 1's {k1·H(x)} go in any order: P2 returns the double blindings shuffled.
    """

    _BLINDED = "pjc.p1.blinded"

    def __init__(
        self, messages: Sequence[bytes], engine: EcEngine, public_key: Any, *, batch: int
    ) -> None:
        super().__init__(unique_messages(messages)[0], engine, batch)
        self._encryptor = FastEncryptor(public_key)
        self._n2 = gmpy2.mpz(public_key.n) ** 2
        self._acc = gmpy2.mpz(1)
        self.intersection_size = 0  # exact: noise it or charge it (module docstring)

    def receive_pairs(self, msg: PsiMessage) -> None:
        """Step 3: (k2·H(y), Enc(t)) pairs; multiply in the ciphertexts of the matches."""
        self._require_doubles("value pairs")
        if len(msg.ciphertexts) != msg.count:
            raise InvalidParameters("one ciphertext per element is required")
        _, hit = self._match(msg)
        acc, n2 = self._acc, self._n2
        for i in np.flatnonzero(hit):
            c = msg.ciphertexts[int(i)]
            if not 0 < c < n2:
                raise InvalidParameters("ciphertext outside Z*_{n^2}")
            acc = acc * c % n2
            self.intersection_size += 1
        self._acc = acc

    def result(self) -> PsiMessage:
        """Step 4: Enc(Σ t over the intersection), re-randomised so K cannot tell which."""
        ct = int(self._acc * self._encryptor.obfuscator() % self._n2)
        return PsiMessage("pjc.p1.sum", 0, b"", (ct,), final=True)


class SumValueParty(_Doubler):
    """P2: blinds P1's elements (shuffled) and sends its own (element, Enc(value)) pairs."""

    _DOUBLED = "pjc.p2.doubled"

    def __init__(
        self,
        messages: Sequence[bytes],
        values: Sequence[int],
        engine: EcEngine,
        public_key: Any,
        *,
        batch: int,
    ) -> None:
        if len(messages) != len(values):
            raise InvalidParameters("one value per identifier")
        uniq, inverse = unique_messages(messages)
        if len(uniq) != len(messages):
            raise InvalidParameters("duplicate identifiers: aggregate values per identifier first")
        # rows in uniq's order: inverse maps input row → uniq index
        ordered = np.empty(len(values), dtype=object)
        ordered[inverse] = np.asarray(values, dtype=object)
        super().__init__(uniq, engine, batch)
        self._values = ordered
        self._encryptor = FastEncryptor(public_key)

    def respond(self, msg: PsiMessage) -> None:
        """Step 2 for one batch (held: released only shuffled)."""
        self._held.append(self._engine.blind(msg.elements))

    def pairs(self) -> Iterator[PsiMessage]:
        """Step 3: (k2·H(y), Enc(t)) in a uniform random order, batch by batch."""
        perm = permutation(len(self._uniq))  # in-process, the table is built after 32
        for seq, rows, final in _slices(len(perm), self._batch):
            idx = perm[rows]
            # the encryptions and the hashing share the pool's workers (both cores)
            cts = self._engine.encrypt_async(self._encryptor, [int(v) for v in self._values[idx]])
            elements = self._engine.hash_blind(self._uniq[idx].tobytes())
            yield PsiMessage("pjc.p2.pairs", seq, elements, cts(), final=final)


class SumResultHolder:
    """K: decrypts the one summed ciphertext (signed: values wrap modulo n)."""

    def __init__(self, private_key: Any) -> None:
        self._private = private_key

    def decrypt(self, msg: PsiMessage) -> int:
        if msg.step != "pjc.p1.sum" or len(msg.ciphertexts) != 1:
            raise InvalidParameters("expected exactly one summed ciphertext")
        n = int(self._private.public_key.n)
        m = int(self._private.raw_decrypt(msg.ciphertexts[0]))
        return m - n if m > n // 2 else m


@dataclass
class SumOutcome:
    """The exact sum K decrypts (before noise) and the size P1 learned (the test hook)."""

    total: int
    matcher_intersection_size: int
    sizes: tuple[int, int] = field(default=(0, 0))


def run_sum(
    matcher_messages: Sequence[bytes],
    value_messages: Sequence[bytes],
    values: Sequence[int],
    dst: bytes,
    keypair: tuple[Any, Any],
    *,
    matcher_holds_key: bool = False,
    batch: int = DEFAULT_BATCH,
    executor: Executor | None = None,
    split: int = 1,
    transcript: Transcript = _noop,
) -> SumOutcome:
    """In-process driver of psi.sum; `keypair` is K's (public, private) Paillier pair.

    Recipients in the transcript: "matcher" (P1), "value" (P2), "result" (K).
    """
    if matcher_holds_key:
        raise InvalidParameters("the matching party may not hold the result key")
    public, private = keypair
    group = PsiGroup(dst)
    p1 = SumMatcher(
        matcher_messages, EcEngine(group, executor=executor, split=split), public, batch=batch
    )
    p2 = SumValueParty(
        value_messages,
        values,
        EcEngine(group, executor=executor, split=split),
        public,
        batch=batch,
    )
    for req in p1.requests():
        transcript("value", req)
        p2.respond(req)
    for msg in p2.shuffled_doubles():
        transcript("matcher", msg)
        p1.receive_doubles(msg)
    for msg in p2.pairs():
        transcript("matcher", msg)
        p1.receive_pairs(msg)
    final = p1.result()
    transcript("result", final)
    total = SumResultHolder(private).decrypt(final)
    return SumOutcome(total, p1.intersection_size, (len(p1._uniq), len(p2._uniq)))

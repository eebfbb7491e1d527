"""The enterprise's side of a join with its own cohort, run here on its machine (issue 18).

The cohort (phone numbers, ID numbers, e-mail addresses) never leaves this process in the
clear: each identifier is normalised exactly as a provider's sandbox normalises its key
column (`pdx_client.identifiers`, the one implementation both import), keyed by the job
(HMAC with the job salt), hashed to P-256 (RFC 9380, `P256_XMD:SHA-256_SSWU_RO_`, under
the job's DST) and blinded by a scalar k1 made here for this job and never sent.

The protocol (an ECDH-PSI cardinality; the provider's sandbox is the matcher,
`sandbox.cohort_party` on the server's side). Counts only: no value of the provider's
travels, and a pairs message carrying values is refused here (docs/privacy.md §6.1.4).

a. here → sandbox, in batches: shuffled x(k1·H(x)) for every distinct identifier x;
b. sandbox → here, in batches: shuffled k2·H(y) for the provider's identifiers y;
c. here: x(k1·k2·H(y)) for each point, all shuffled with a permutation of the whole set
   made here (32 bytes each, kept in memory), returned in batches;
d. the sandbox counts the matches, adds the approved DP noise, refuses below the
   minimum intersection (under DP, checked on the noised count) and encrypts the count
   under this job key; `JobKey.decrypt` opens the result as for every statistic.

What this process learns before the release: |Y| (how many distinct identifiers the
provider holds) and nothing else: the points are blinded by k2. The provider's sandbox
learns |X| and the exact intersection size, no member; the platform relays counts, the
job salt and opaque bytes. A relay that swapped a provider point could test one
identifier of its choice; for a node-held dataset the node signs each provider step and
`drive` checks it against the party key pinned for the provider (`pdx_client.stepsig`,
§6.1.4); with no pinned keys, or platform-held data, it warns `UnverifiedSteps`. The node
signs the encrypted result too: `Enterprise.result` checks it before it decrypts
(`pdx_client.resultsig`).

`drive` answers every step of a running job (GET/POST /v1/computations/{id}/join-step);
`Enterprise.compute(..., cohort=[...])` and `pdx compute request --cohort-file` call it.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from array import array
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from pdx_client.errors import PdxError
from pdx_client.flseal import NodeTrust
from pdx_client.identifiers import IdKind, JobDomain, normalise
from pdx_client.steps import Http, answer_steps
from pdx_client.stepsig import Expected, StepUnverified, StepVerifier, unframe

__all__ = ["JOIN_STEP_FORMAT", "CohortError", "CohortParty", "drive", "hash_to_curve"]

JOIN_STEP_FORMAT = "pdx-psi-step/1"
"""Must equal `sandbox.cohort_joins.JOIN_STEP_FORMAT`."""
_VALUE_FIELDS = ("cts", "n_j", "fields")
"""What a pairs message of the old value protocol carried; refused now (counts only)."""
_ENDED = frozenset({"released", "review", "failed", "rejected", "expired", "destroyed"})
_PROVIDER_STEP = {"blind": "cohort.start", "pairs": "cohort.pairs", "doubled": "cohort.elements"}
"""The provider's output each step carries (signed by its node: `pdx_client.stepsig`)."""

# -- RFC 9380 hash_to_curve, P256_XMD:SHA-256_SSWU_RO_ (pure Python; the server's
#    crypto._h2c_p256 is the same suite, checked equal in tests/test_cohort_join.py) -----

_P = 2**256 - 2**224 + 2**192 + 2**96 - 1
_A = _P - 3
_B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
_Z = _P - 10
_L = 48
_SQRT_EXP = (_P + 1) // 4
_CURVE = ec.SECP256R1()


def _expand_message_xmd(msg: bytes, dst: bytes, length: int) -> bytes:
    """RFC 9380 §5.3.1 with SHA-256."""
    ell = -(-length // 32)
    if ell > 255 or len(dst) > 255:
        raise ValueError("expand_message_xmd: output or DST too long")
    dst_prime = dst + bytes([len(dst)])
    b0 = hashlib.sha256(bytes(64) + msg + length.to_bytes(2, "big") + b"\x00" + dst_prime).digest()
    bi = hashlib.sha256(b0 + b"\x01" + dst_prime).digest()
    out = [bi]
    for i in range(2, ell + 1):
        mixed = bytes(a ^ b for a, b in zip(b0, bi, strict=True))
        bi = hashlib.sha256(mixed + bytes([i]) + dst_prime).digest()
        out.append(bi)
    return b"".join(out)[:length]


def _sswu(u: int) -> tuple[int, int]:
    """RFC 9380 §6.6.2 simplified SWU for P-256 (Z = -10)."""
    p = _P
    zu2 = _Z * u * u % p
    den = (zu2 * zu2 + zu2) % p
    if den == 0:
        x1 = _B * pow(_Z * _A, -1, p) % p
    else:
        x1 = (p - _B) * pow(_A, -1, p) * (1 + pow(den, -1, p)) % p
    gx1 = (pow(x1, 3, p) + _A * x1 + _B) % p
    x2 = zu2 * x1 % p
    gx2 = (pow(x2, 3, p) + _A * x2 + _B) % p
    y1 = pow(gx1, _SQRT_EXP, p)
    if y1 * y1 % p == gx1:
        x, y = x1, y1
    else:
        x, y = x2, pow(gx2, _SQRT_EXP, p)
    if (u & 1) != (y & 1):  # sgn0 (§4.1)
        y = p - y
    return x, y


def _add(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    p = _P
    (x1, y1), (x2, y2) = a, b
    if x1 == x2:
        if (y1 + y2) % p == 0:
            raise CohortError("hash to the identity")
        lam = (3 * x1 * x1 + _A) * pow(2 * y1, -1, p) % p
    else:
        lam = (y2 - y1) * pow(x2 - x1, -1, p) % p
    x3 = (lam * lam - x1 - x2) % p
    return x3, (lam * (x1 - x3) - y1) % p


def hash_to_curve(msg: bytes, dst: bytes) -> tuple[int, int]:
    """RFC 9380 §3 hash_to_curve for P256_XMD:SHA-256_SSWU_RO_ (cofactor 1)."""
    uniform = _expand_message_xmd(msg, dst, 2 * _L)
    u0 = int.from_bytes(uniform[:_L], "big") % _P
    u1 = int.from_bytes(uniform[_L:], "big") % _P
    return _add(_sswu(u0), _sswu(u1))


def _point(x: int, y: int) -> ec.EllipticCurvePublicKey:
    encoded = b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")
    return ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, encoded)


# -- the party ---------------------------------------------------------------------------------


class CohortError(PdxError):
    """The join's step is malformed, or the cohort does not fit the request."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, type="https://pdx.dev/problems/join-cohort", title=detail)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(doc: dict[str, Any], name: str) -> bytes:
    try:
        return base64.b64decode(str(doc[name]), validate=True)
    except (KeyError, ValueError):
        raise CohortError(f"the step's {name} are malformed") from None


class CohortParty:
    """The enterprise's side of one join: its identifiers, its scalar k1, its shuffle.

    `record` (tests and audits) receives every step document this party is sent.
    """

    def __init__(
        self,
        identifiers: Iterable[str],
        kind: IdKind | str,
        *,
        size: int | None = None,
        record: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.kind = IdKind(kind)
        self._raw = list(identifiers)
        self.size = size
        self._record = record
        self.steps = StepVerifier(None, None)
        """Checks the provider node's signatures (`drive` binds it to the job)."""
        self._reset()

    def _reset(self) -> None:
        """A fresh attempt: a new scalar k1, nothing received."""
        self._k1 = ec.generate_private_key(_CURVE)
        self._messages: list[bytes] | None = None
        self._salt: Any = None
        self._sent = 0
        self._mine = bytearray()
        """x(k1·k2·H(y)) for each point received, 32 bytes each, in the order received."""
        self._order: array[int] | None = None
        self._returned = 0
        self.rows: int | None = None
        """|Y|: the one fact this party learns before the release."""
        self._canonical: list[str] | None = None
        self._doubled: list[bytes] | None = None
        self._theirs: set[bytes] = set()
        self.members: list[str] | None = None
        """psi.intersection only: the (normalised) members of this list the provider holds."""

    # each step ------------------------------------------------------------------------------

    def reply(self, doc: dict[str, Any]) -> dict[str, Any]:
        """The reply to one step document (`JOIN_STEP_FORMAT`)."""
        if self._record is not None:
            self._record(doc)
        if doc.get("format") != JOIN_STEP_FORMAT:
            raise CohortError("not a join step this SDK knows")
        op = doc.get("op")
        step = _PROVIDER_STEP.get(str(op))
        if step is not None:
            doc = self._authentic(doc, step)
        if op == "blind":
            return self._blind(doc)
        if op == "pairs":
            return self._pairs(doc)
        if op == "return":
            return self._return(doc)
        if op == "doubled":
            return self._take_doubled(doc)
        raise CohortError(f"unknown join step {op!r}")

    def _authentic(self, doc: dict[str, Any], step: str) -> dict[str, Any]:
        """The step with the provider's fields taken from its node's signed output, if any."""
        doc, output = self.steps.open(doc, step)
        if output is None:
            return doc
        header, body = unframe(output)
        if step == "cohort.start":
            return {**doc, **{k: header.get(k) for k in ("salt", "dst", "rows")}}
        if step == "cohort.pairs":
            count = header.get("count")
            if not isinstance(count, int) or count < 0:
                raise CohortError("the provider's points are malformed")
            final = header.get("final") is True
            return {**doc, "count": count, "final": final, "points": _b64(body[: 65 * count])}
        return {**doc, "elements": _b64(body)}

    def _prepare(self, doc: dict[str, Any]) -> list[bytes]:
        domain = JobDomain(str(doc["job_id"]), bytes.fromhex(str(doc["salt"])))
        if IdKind(str(doc.get("kind"))) is not self.kind:
            raise CohortError(f"the job joins {doc.get('kind')} identifiers, not {self.kind}")
        if bytes.fromhex(str(doc["dst"])) != domain.dst:
            raise CohortError("the step's hash-to-curve DST is not this job's")
        unique: dict[bytes, str] = {}
        for value in self._raw:
            canonical = normalise(self.kind, value)
            if canonical is not None:  # cannot join: dropped here, never sent
                unique.setdefault(domain.message(self.kind, canonical), canonical)
        messages = list(unique)
        declared = int(doc.get("size") or 0)
        if len(messages) > declared:
            raise CohortError(
                f"{len(messages)} distinct identifiers, more than the {declared} declared"
            )
        secrets.SystemRandom().shuffle(messages)
        self._dst = domain.dst
        self.rows = int(doc["rows"])
        if doc.get("reveal") is True:  # psi.intersection: this party matches
            self._canonical = [unique[m] for m in messages]
            self._doubled = [b""] * len(messages)
        return messages

    def _blind(self, doc: dict[str, Any]) -> dict[str, Any]:
        if self._messages is not None and doc.get("salt") != self._salt:
            # A recovered run starts the join again (a new sandbox, a new salt): so does this
            # party, with a new scalar; nothing of the first attempt is reused.
            self._reset()
        if self._messages is None:
            self._salt = doc.get("salt")
            self._messages = self._prepare(doc)
        batch = max(1, min(int(doc.get("batch", 8192)), 65536))
        chunk = self._messages[self._sent : self._sent + batch]
        self._sent += len(chunk)
        ecdh = ec.ECDH()
        out = b"".join(self._k1.exchange(ecdh, _point(*hash_to_curve(m, self._dst))) for m in chunk)
        final = self._sent >= len(self._messages)
        if final:
            self._messages = []  # nothing of the cohort is kept past its blinding
        return {"op": "blind", "elements": _b64(out), "final": final}

    def _take_doubled(self, doc: dict[str, Any]) -> dict[str, Any]:
        """psi.intersection: x(k2·k1·H(x)) for a batch of this party's own elements, in order."""
        if self._doubled is None:
            raise CohortError("doubled elements for a join that reveals no members")
        at, raw = int(doc["at"]), _unb64(doc, "elements")
        if at < 0 or len(raw) % 32 or at + len(raw) // 32 > len(self._doubled):
            raise CohortError("the doubled elements do not match what was sent")
        for i in range(len(raw) // 32):
            self._doubled[at + i] = raw[32 * i : 32 * (i + 1)]
        return {"op": "doubled", "ok": True}

    def _match(self, doc: dict[str, Any]) -> dict[str, Any]:
        """psi.intersection: x(k1·k2·H(y)) for the provider's points; the members, at the end."""
        if self._doubled is None or self._canonical is None:
            raise CohortError("the provider's points are malformed")
        for x in self._blind_points(doc):
            self._theirs.add(x)
        if doc.get("final") is True:
            self.members = sorted(
                c for c, d in zip(self._canonical, self._doubled, strict=True) if d in self._theirs
            )
            self._theirs.clear()
        return {"op": "pairs", "ok": True}

    def _blind_points(self, doc: dict[str, Any]) -> Iterator[bytes]:
        """x(k1·P) for each of the provider's 65-byte points P in the step."""
        points, count = _unb64(doc, "points"), int(doc["count"])
        if count < 0 or len(points) != 65 * count:
            raise CohortError("the provider's points are malformed")
        ecdh = ec.ECDH()
        for i in range(count):
            try:
                peer = ec.EllipticCurvePublicKey.from_encoded_point(
                    _CURVE, points[65 * i : 65 * (i + 1)]
                )
            except ValueError:
                raise CohortError("a provider's point is not on P-256") from None
            yield self._k1.exchange(ecdh, peer)

    def _pairs(self, doc: dict[str, Any]) -> dict[str, Any]:
        if doc.get("reveal") is True:
            return self._match(doc)
        if any(k in doc for k in _VALUE_FIELDS):
            # Counts only: a provider's values through this party could be scaled past the
            # noise, and their key's holder would see which matched (docs/privacy.md §6.1.4).
            raise CohortError("the step carries values: a join with a cohort counts only")
        if self._order is not None:
            raise CohortError("the provider's points were already complete")
        for x in self._blind_points(doc):
            self._mine += x
        if doc.get("final") is True:
            if len(self._mine) // 32 != self.rows:  # a batch held back, or one too many
                raise CohortError(
                    f"the provider sent {len(self._mine) // 32} points, not the {self.rows} "
                    "it announced"
                )
            order = list(range(len(self._mine) // 32))
            secrets.SystemRandom().shuffle(order)  # one permutation of the whole set
            self._order = array("Q", order)
        return {"op": "pairs", "ok": True}

    def _return(self, doc: dict[str, Any]) -> dict[str, Any]:
        if self._order is None:
            raise CohortError("asked to return elements before receiving all the points")
        batch = max(1, int(doc.get("batch", 256)))
        mine = self._mine
        chunk = self._order[self._returned : self._returned + batch]
        elements = b"".join(mine[32 * k : 32 * (k + 1)] for k in chunk)
        self._returned += len(chunk)
        final = self._returned >= len(self._order)
        if final:
            self._mine = bytearray()
        return {"op": "return", "elements": _b64(elements), "final": final}


def drive(
    http: Http,
    computation_id: str,
    party: CohortParty,
    *,
    timeout: float = 600.0,
    poll: float = 0.1,
    sleep: Callable[[float], None] = time.sleep,
    trust: NodeTrust | None = None,
    fingerprint: str | None = None,
) -> CohortParty:
    """Answer every step of a running join with the requester's cohort until the job ends.

    A node-held input's steps must carry its node's signature under a party key in `trust`
    (or `PDX_TRUSTED_PARTIES`), over this job and `fingerprint` (the job key's, when
    given): otherwise the step is answered with a stop (the job fails, `join-stopped`) and
    `StepUnverified` is raised. With no
    pinned keys, or a platform-held input, the steps are used unchecked (`UnverifiedSteps`).
    """
    computation = http.get(f"/v1/computations/{computation_id}")
    if computation.get("id") != computation_id:
        raise CohortError(f"the server answered for {computation.get('id')}, not {computation_id}")
    party.steps = StepVerifier(
        trust if trust is not None else NodeTrust.from_env(),
        Expected.of(computation, fingerprint),
    )

    def reply(k: int, step: dict[str, Any]) -> dict[str, Any]:
        try:
            return party.reply(step["request"])
        except (StepUnverified, CohortError) as exc:  # nothing more is answered: it fails now
            stop = {"op": "stop", "reason": str(exc)[:500]}
            http.post(f"/v1/computations/{computation_id}/join-step/{k}", stop)
            raise

    answer_steps(
        http,
        computation_id,
        "join-step",
        reply,
        ended=_ENDED,
        timeout=timeout,
        poll=poll,
        sleep=sleep,
    )
    return party

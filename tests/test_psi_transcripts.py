"""Transcripts of psi.cardinality, psi.sum and hetero-LR hold no other party's plaintext (issue 18).

Every message each party receives is recorded in its wire form (`to_bytes`) and searched for
the plaintext values it must not carry and their common encodings: identifiers raw, normalised,
UTF-16, SHA-256, the keyed PSI message and its unblinded hash-to-curve point; values as
decimal text, 8-byte integers and minimal big-endian bytes; features as float64 (both byte
orders), repr text and fixed-point integers; labels as a vector in several encodings and as
the scaled integers the protocol computes with.
"""

from __future__ import annotations

import hashlib
import os
import random
import struct
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np

from crypto import psi_group
from sandbox import hetero_lr, paillier, psi
from sandbox.identifiers import IdKind, JobDomain, normalise
from tests.helpers.i18_psi import id_number, noisy_id

KEY = paillier.generate_keypair(1024)


def _id_encodings(raw: str, d: JobDomain) -> list[bytes]:
    canon = normalise(IdKind.ID_NUMBER, raw) or raw
    msg = d.message(IdKind.ID_NUMBER, canon)
    group = psi_group(d.dst)
    point = group.hash_to_point(msg)
    return [
        raw.encode(),
        canon.encode(),
        canon.encode("utf-16-le"),
        hashlib.sha256(canon.encode()).digest(),
        hashlib.sha256(canon.encode()).hexdigest().encode(),
        msg,
        group.encode(point),  # H(x) without any blinding: x, and y (points travel as SEC1)
        point.y.to_bytes(32, "big"),
    ]


def _int_encodings(v: int) -> list[bytes]:
    out = [str(v).encode(), v.to_bytes((v.bit_length() + 8) // 8, "big", signed=True)]
    if 2**32 <= abs(v) < 2**63:  # smaller ones are mostly zero bytes, found in any padding
        out += [struct.pack(">q", v), struct.pack("<q", v)]
    # short or mostly-zero byte strings occur by chance (ciphertext padding, random bytes)
    return [e for e in out if len(e) >= 5 and sum(1 for b in e if b) >= 4]


def _float_encodings(f: float) -> list[bytes]:
    return [struct.pack("<d", f), struct.pack(">d", f), repr(f).encode()]


def _leaks(transcript: Iterable[bytes], needles: Iterable[bytes]) -> list[bytes]:
    blob = b"\x00".join(transcript)
    return [n for n in needles if n in blob]


class Recorder:
    def __init__(self) -> None:
        self.by_party: dict[str, list[bytes]] = defaultdict(list)
        self.messages: dict[str, list[Any]] = defaultdict(list)

    def __call__(self, to: str, msg: Any) -> None:
        self.by_party[to].append(msg.to_bytes())
        self.messages[to].append(msg)


def _sets(seed: int) -> tuple[list[str], list[str], set[str]]:
    rng = random.Random(seed)
    people = list({id_number(rng) for _ in range(400)})
    a, b = people[:250], people[150:]
    return [noisy_id(v, rng) for v in a], [noisy_id(v, rng) for v in b], set(a) & set(b)


def _msgs(d: JobDomain, values: list[str]) -> list[bytes]:
    return [m for m in d.messages(IdKind.ID_NUMBER, values) if m is not None]


def test_checker_finds_planted_plaintexts() -> None:
    """The search is not vacuous: it flags each kind of encoding when it is present."""
    d = JobDomain("job-plant", os.urandom(32))
    rec = _id_encodings("11010519491231002X", d)
    for needle in rec + _int_encodings(123_456_789_012) + _float_encodings(0.123456789):
        assert _leaks([os.urandom(64) + needle + os.urandom(64)], [needle]) == [needle]


def test_cardinality_transcripts() -> None:
    side_a, side_b, members = _sets(11)
    d = JobDomain("job-t-card", os.urandom(32))
    rec = Recorder()
    out = psi.run_psi(_msgs(d, side_a), _msgs(d, side_b), d.dst, batch=64, transcript=rec)
    assert out.cardinality == len(members)
    assert set(rec.by_party) == {"sender", "receiver"}
    receiver_secrets = [e for v in side_a for e in _id_encodings(v, d)]
    sender_secrets = [e for v in side_b for e in _id_encodings(v, d)]
    assert _leaks(rec.by_party["sender"], receiver_secrets) == []
    assert _leaks(rec.by_party["receiver"], sender_secrets) == []


def test_cardinality_receiver_cannot_locate_members() -> None:
    """The double blindings come back shuffled: their positions do not name R's members."""
    side_a, side_b, members = _sets(12)
    d = JobDomain("job-t-shuffle", os.urandom(32))
    group = psi_group(d.dst)
    ma, mb = _msgs(d, side_a), _msgs(d, side_b)
    r = psi.PsiReceiver(ma, psi.EcEngine(group), reveal_members=False, batch=50)
    s = psi.PsiSender(mb, psi.EcEngine(group), reveal_members=False, batch=50)
    for req in r.requests():
        assert s.respond(req) == []
    doubles = b"".join(m.elements for m in s.shuffled_doubles())
    r_uniq = sorted(set(ma))
    member_positions = {i for i, m in enumerate(r_uniq) if m in set(mb)}
    # What R can compute from its view: which double-blinded positions match S's elements.
    theirs = b"".join(m.elements for m in s.own())
    theirs_ab = set(
        psi._items(r._engine.blind(theirs))  # R raises S's elements to its own key a
    )
    matched_positions = {i for i, e in enumerate(psi._items(doubles)) if e in theirs_ab}
    assert len(matched_positions) == len(members) == len(member_positions)
    assert matched_positions != member_positions


def test_sum_transcripts() -> None:
    side_a, side_b, members = _sets(13)
    rng = random.Random(13)
    values = [rng.randrange(10**11, 10**12) for _ in side_b]  # distinctive 12-digit values
    d = JobDomain("job-t-sum", os.urandom(32))
    rec = Recorder()
    out = psi.run_sum(
        _msgs(d, side_a), _msgs(d, side_b), values, d.dst, KEY, batch=60, transcript=rec
    )
    assert out.matcher_intersection_size == len(members)
    assert set(rec.by_party) == {"value", "matcher", "result"}
    matcher_ids = [e for v in side_a for e in _id_encodings(v, d)]
    value_ids = [e for v in side_b for e in _id_encodings(v, d)]
    value_plain = [e for v in values for e in _int_encodings(v)]
    assert _leaks(rec.by_party["value"], matcher_ids) == []
    assert _leaks(rec.by_party["matcher"], value_ids + value_plain) == []
    assert _leaks(rec.by_party["result"], matcher_ids + value_ids + value_plain) == []
    (final,) = rec.messages["result"]  # K receives one message: one ciphertext, no elements
    assert len(final.ciphertexts) == 1 and final.elements == b""


def test_hetero_lr_transcripts() -> None:
    rng = np.random.default_rng(5)
    rows = 40
    xg, x1, x2 = (rng.normal(size=(rows, 3)) for _ in range(3))
    y = (xg[:, 0] + x1[:, 0] - x2[:, 0] > 0).astype(int)
    cfg = hetero_lr.HeteroConfig(key_bits=1024, iterations=2)
    rec = Recorder()
    public, private = paillier.generate_keypair(1024)
    hetero_lr.train(xg, y, [x1, x2], cfg, transcript=rec, guest_keypair=(public, private))
    assert set(rec.by_party) == {"guest", "host0", "host1"}

    fx = hetero_lr._Fixed(cfg)

    def features(x: Any) -> list[bytes]:
        out = [e for f in x.ravel() for e in _float_encodings(float(f))]
        q = np.rint(x * fx.s).astype(np.int64)
        out += [e for v in q.ravel() for e in _int_encodings(int(v))]
        out += [row.tobytes() for row in x] + [row.tobytes() for row in q]
        return out

    labels = [
        y.astype(np.uint8).tobytes(),
        y.astype(np.int64).tobytes(),
        np.packbits(y.astype(np.uint8)).tobytes(),
        ",".join(map(str, y)).encode(),
        str(list(map(int, y))).encode(),
    ]
    labels += [e for yi in y for e in _int_encodings(int(yi) * fx.t)]
    # the per-record residuals d·T of round 2, recomputed from the weights after round 1
    # (masks cancel exactly, so a one-round run ends at the same weights)
    one = hetero_lr.train(xg, y, [x1, x2], hetero_lr.HeteroConfig(key_bits=1024, iterations=1))
    z = np.asarray(fx.quantise(xg @ one.guest_weights[:-1] + one.guest_weights[-1]), dtype=object)
    for x, w in zip((x1, x2), one.host_weights, strict=True):
        z = z + np.asarray(fx.quantise(x @ w), dtype=object)
    d_t = [
        sum(fx.ck[k] * int(zi) ** k for k in range(1, cfg.degree + 1)) + fx.c0 - int(yi) * fx.t
        for zi, yi in zip(z, y, strict=True)
    ]
    residuals = [e for v in d_t for e in _int_encodings(v)]
    assert len(residuals) >= rows
    guest_side = features(xg) + labels + residuals
    assert _leaks(rec.by_party["guest"], features(x1) + features(x2) + residuals) == []
    assert _leaks(rec.by_party["host0"], guest_side + features(x2)) == []
    assert _leaks(rec.by_party["host1"], guest_side + features(x1)) == []

    # The guest holds the key: its view is also every plaintext it can decrypt.
    n = int(public.n)
    opened = set()
    for msg in rec.messages["guest"]:
        for c in msg.ciphertexts:
            m = int(private.raw_decrypt(c))
            opened.add(m - n if m > n // 2 else m)
    assert opened.isdisjoint(d_t)  # per-record residuals arrive masked
    host_fixed = {int(v) for x in (x1, x2) for v in np.rint(x * fx.s).astype(np.int64).ravel()}
    assert opened.isdisjoint(host_fixed - {0, 1, -1})


def test_checker_sees_plaintext_in_a_protocol_message() -> None:
    """Negative control on the wire form: a message that did carry values is flagged."""
    row = np.array([0.7315, -1.2041, 0.0562])
    secret = -(3**80)  # a residual-sized integer
    leaky = hetero_lr.LrMessage("leak", integers=(5, secret, 7))
    assert _leaks([leaky.to_bytes()], _int_encodings(secret)) != []
    ids = psi.PsiMessage("leak", 0, row.tobytes())
    assert _leaks([ids.to_bytes()], [row.tobytes()]) == [row.tobytes()]

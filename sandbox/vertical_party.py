"""One party's side of vertical logistic regression, run in its sandbox (`fl.hetero_logreg`).

The guest (inputs[0]: labels and features) and each host (features) keep their rows,
their alignment and (the guest) the Paillier secret key inside their own sandbox
session; the platform relays opaque messages between the sessions (`sandbox.vertical_ops`).

Alignment: ECDH-PSI with the guest as receiver of each host (`sandbox.psi`, members
revealed to the guest's sandbox only); the guest draws one random order of the rows
every host holds and sends each host the stream positions of those rows (the platform
sees how many; under a requester-held job key the positions and the guest's public key
travel sealed for each host, `sandbox.vertical_keys`). Then the rounds of
`sandbox.hetero_lr` (masked residuals and gradients under the guest's key). Each party
standardises its own aligned features and, under DP, clips its part of a row to norm
1/√parties, so every joint row has norm ≤ 1 (the DP bound of `sandbox.vertical_dp`). At the end each
party returns its own weights, which the platform assembles and releases through the gate
(DP noise there); under a requester-held job key each party instead returns its block
noised and encrypted to the requester.
"""

from __future__ import annotations

import json
import math
import secrets
from fractions import Fraction
from typing import Any

import numpy as np

from crypto.psi_ec import PsiGroup
from sandbox import paillier
from sandbox.cohort_party import count_noise, noised_count, refuse_below_minimum
from sandbox.errors import InvalidParameters
from sandbox.hetero_lr import Guest, Host, LrMessage
from sandbox.identifiers import JobDomain, normalise
from sandbox.isolation import OperatorContext
from sandbox.noise_shares import NoisePlan
from sandbox.party_steps import run_step
from sandbox.psi import EcEngine, PsiMessage, PsiReceiver, PsiSender
from sandbox.stats import _rows
from sandbox.vertical_dp import split_epsilon
from sandbox.vertical_keys import encrypt_weights, open_alignment, party_state, seal_alignment
from sandbox.vertical_params import HeteroParams

__all__ = ["lr_bytes", "lr_from", "party"]

_BATCH = 1 << 20
_WIDTH = 512  # fixed ciphertext width on the wire (n² of a key of up to 2048 bits)


def lr_bytes(msg: LrMessage) -> bytes:
    head = json.dumps({"step": msg.step, "ints": [str(i) for i in msg.integers]}).encode()
    return head + b"\n" + b"".join(c.to_bytes(_WIDTH, "big") for c in msg.ciphertexts)


def lr_from(data: bytes) -> LrMessage:
    head, sep, body = data.partition(b"\n")
    try:
        h = json.loads(head) if sep else None
        ints = tuple(int(i) for i in h["ints"])  # type: ignore[index]
        step = str(h["step"])  # type: ignore[index]
    except (ValueError, TypeError, KeyError):
        raise InvalidParameters("malformed training message") from None
    if len(body) % _WIDTH:
        raise InvalidParameters("malformed training message")
    cts = tuple(int.from_bytes(body[i : i + _WIDTH], "big") for i in range(0, len(body), _WIDTH))
    return LrMessage(step, cts, ints)


def _frame(header: dict[str, Any], *parts: bytes) -> bytes:
    sizes = [len(p) for p in parts]
    return json.dumps({**header, "sizes": sizes}).encode() + b"\n" + b"".join(parts)


def _unframe(data: bytes) -> tuple[dict[str, Any], list[bytes]]:
    head, sep, body = data.partition(b"\n")
    try:
        h = json.loads(head) if sep else None
        sizes = [int(s) for s in h["sizes"]]  # type: ignore[index]
    except (ValueError, TypeError, KeyError):
        raise InvalidParameters("malformed vertical message") from None
    if sum(sizes) != len(body) or any(s < 0 for s in sizes):
        raise InvalidParameters("malformed vertical message")
    out, at = [], 0
    for s in sizes:
        out.append(body[at : at + s])
        at += s
    return h, out  # type: ignore[return-value]


def _load(ctx: OperatorContext, position: int) -> tuple[HeteroParams, list[bytes], list[list[str]]]:
    params = HeteroParams.model_validate(ctx.params["hetero"])
    party_state(ctx)  # a requester-held key: its binding, n and the agreement seeds
    domain = JobDomain(str(ctx.params["job_id"]), ctx.blobs.get("salt", b""))
    ctx.state["group"] = PsiGroup(domain.dst)
    msgs: list[bytes] = []
    rows: list[list[str]] = []
    seen: set[bytes] = set()
    for row in _rows(ctx.inputs, params.columns(position)):
        canonical = normalise(params.kind, row[0])
        if canonical is None:
            continue
        m = domain.message(params.kind, canonical)
        if m in seen:
            continue  # one row per identifier
        seen.add(m)
        msgs.append(m)
        rows.append(row[1:])
    return params, msgs, rows


def _features(
    rows: list[list[str]], count: int, parties: int, clip: bool = True
) -> np.ndarray[Any, Any]:
    """Standardised on the aligned rows, each party's part of a row clipped to 1/√parties.

    The clip bounds the DP sensitivity (`sandbox.vertical_dp`); without DP (`clip` False)
    the rows are only standardised, as centralised logistic regression would take them.
    """
    try:
        x = np.asarray([[float(v) for v in r[:count]] for r in rows], dtype=float)
    except ValueError:
        raise InvalidParameters("a feature column holds a non-numeric value") from None
    if x.size == 0:
        return x.reshape(len(rows), count)
    sd = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    if not clip:
        standardised: np.ndarray[Any, Any] = x
        return standardised
    limit = 1.0 / math.sqrt(parties)
    norms = np.linalg.norm(x, axis=1) / limit
    out: np.ndarray[Any, Any] = x / np.maximum(norms, 1.0)[:, None]
    return out


def _clip(ctx: OperatorContext) -> bool:
    """Whether rows are clipped for DP (the approved binding's DP under a requester key).

    Under the platform's key the platform says (`clip_rows`, default on).
    """
    if "party" in ctx.state:
        return bool(ctx.state["party"]["binding"].get("dp"))
    return bool(ctx.state.get("clip_rows", True))


def _check_minimum(ctx: OperatorContext, aligned: int) -> None:
    """The minimum aligned rows: under DP on a noised count, without DP on the exact one.

    Under a requester-held key the approved binding decides (its minimum and its DP,
    whatever the relay says): under DP the count gets OpenDP's discrete Laplace noise of
    scale 1/ε_count, ε_count the binding ε's `COUNT_SHARE` (`sandbox.vertical_dp`), so
    refuse-or-release is post-processing of an ε_count-DP count and a requester choosing
    one party's rows (known members plus a target) does not learn the target's membership.
    Under the platform's key the platform decides the minimum on a noised count in the
    release gate (`sandbox.vertical_ops.HeteroJob.release`) and sends `min_rows` 0 under DP.
    """
    minimum = int(ctx.params.get("min_rows", 1))
    count: Fraction | int = aligned
    if "party" in ctx.state:
        binding = ctx.state["party"]["binding"]
        minimum = max(minimum, int(binding["min_cohort"]))
        if binding.get("dp"):
            count = _noised_aligned(float(binding["dp"]["epsilon"]), aligned)
    refuse_below_minimum(count, minimum, ctx.state)


def _noised_aligned(epsilon: float, aligned: int) -> Fraction:
    """The aligned count plus its noise (ε_count of the approved ε, sensitivity 1, one share)."""
    plan = NoisePlan.build(("rows",), clip=None, epsilon=split_epsilon(epsilon)[0],
                           delta=0.0, mechanism="laplace", providers=1)  # fmt: skip
    return noised_count(plan, [aligned], count_noise(plan, 1))


# -- guest ---------------------------------------------------------------------------------


def _guest_start(ctx: OperatorContext) -> bytes:
    params, msgs, rows = _load(ctx, 0)
    hosts = len(params.keys) - 1
    receivers = [
        PsiReceiver(msgs, EcEngine(ctx.state["group"]), reveal_members=True, batch=_BATCH)
        for _ in range(hosts)
    ]
    requests = [b"".join(m.elements for m in r.requests()) for r in receivers]
    ctx.state.update(role="guest", params=params, rows=rows, receivers=receivers,
                     clip_rows=bool(ctx.params.get("clip_rows", True)))  # fmt: skip
    return _frame({}, *requests)


def _guest_align(ctx: OperatorContext) -> bytes:
    params: HeteroParams = ctx.state["params"]
    maps: list[dict[int, int]] = []
    for r, i in zip(ctx.state["receivers"], range(len(ctx.state["receivers"])), strict=True):
        _, (doubles, own) = _unframe(ctx.blobs[f"host{i}"])
        r.receive_doubles(PsiMessage("psi.s.doubled", 0, doubles, final=True))
        r.receive_sender(PsiMessage("psi.s.blinded", 0, own, final=True))
        maps.append(dict(r.aligned()))
    common = sorted(set.intersection(*(set(m) for m in maps)))
    _check_minimum(ctx, len(common))
    keys = np.frombuffer(secrets.token_bytes(8 * len(common)), np.uint64)
    order = [common[int(i)] for i in np.argsort(keys, kind="stable")]
    rows = [ctx.state["rows"][g] for g in order]
    feats = len(params.features[0])
    x = _features(rows, feats, len(params.keys), _clip(ctx))
    try:
        y = np.asarray([int(r[feats]) for r in rows])
    except ValueError:
        raise InvalidParameters("the label column holds a value other than 0 or 1") from None
    bits = int(ctx.params["key_bits"])
    guest = Guest(x, y, params.config(bits))
    ctx.state.update(guest=guest, receivers=None, rows=None)
    positions = [[m[g] for g in order] for m in maps]
    setup = lr_bytes(guest.setup())
    if "party" in ctx.state:  # each host's alignment sealed for its sandbox alone
        last = len(maps) - 1
        sealed = [
            seal_alignment(ctx, i + 1, {"positions": p, "n": str(int(guest.public.n))},
                           setup if i == last else b"")
            for i, p in enumerate(positions)
        ]  # fmt: skip
        return _frame({"rows": len(order), "sealed": True}, *sealed)
    head = {"positions": positions, "n": str(int(guest.public.n))}
    return _frame(head, setup)


def _guest_round(ctx: OperatorContext) -> bytes:
    return lr_bytes(ctx.state["guest"].round_start())


def _guest_residuals(ctx: OperatorContext) -> bytes:
    guest: Guest = ctx.state["guest"]
    guest.receive_masked_residuals(lr_from(ctx.blobs["masked"]))
    guest.receive_cross_term(lr_from(ctx.blobs["cross"]), len(guest.y))
    return b"{}"


def _guest_unmask(ctx: OperatorContext) -> bytes:
    return lr_bytes(ctx.state["guest"].unmask_for_host(lr_from(ctx.blobs["request"])))


def _guest_finish(ctx: OperatorContext) -> bytes:
    guest: Guest = ctx.state["guest"]
    if "party" in ctx.state:  # noised and encrypted to the requester: nothing else leaves
        sealed = encrypt_weights(ctx, guest.w, ctx.state["params"].C)
        ctx.state.clear()
        return sealed
    out = {"weights": [float(w) for w in guest.w], "rows": len(guest.y)}
    ctx.state.clear()
    return json.dumps(out).encode()


# -- host ----------------------------------------------------------------------------------


def _host_start(ctx: OperatorContext) -> bytes:
    position = int(ctx.params["position"])
    params, msgs, rows = _load(ctx, position)
    sender = PsiSender(msgs, EcEngine(ctx.state["group"]), reveal_members=True, batch=_BATCH)
    request = PsiMessage("psi.r.blinded", 0, ctx.blobs.get("request", b""), final=True)
    doubles = b"".join(m.elements for m in sender.respond(request))
    own = b"".join(m.elements for m in sender.own())
    ctx.state.update(role="host", params=params, rows=rows, sender=sender, position=position,
                     clip_rows=bool(ctx.params.get("clip_rows", True)))  # fmt: skip
    return _frame({}, doubles, own)


def _host_align(ctx: OperatorContext) -> bytes:
    params: HeteroParams = ctx.state["params"]
    position = ctx.state["position"]
    setup: bytes | None
    if "party" in ctx.state:  # sealed by the guest's sandbox for this one
        header, setup = open_alignment(ctx, ctx.blobs.get("sealed", b""))
        positions, n = header["positions"], header["n"]
    else:
        positions, n, setup = ctx.params["positions"], ctx.params["n"], ctx.blobs.get("setup")
    rows = [ctx.state["rows"][i] for i in ctx.state["sender"].rows_at(positions)]
    x = _features(rows, len(params.features[position]), len(params.keys), _clip(ctx))
    public = paillier.public_key_from_n(int(n))
    host = Host(x, params.config(public.n.bit_length()), public)
    if setup:
        host.receive_guest_features(lr_from(setup))
    ctx.state.update(host=host, sender=None, rows=None)
    return b"{}"


def _host_extend(ctx: OperatorContext) -> bytes:
    return lr_bytes(ctx.state["host"].extend(lr_from(ctx.blobs["powers"])))


def _host_residuals(ctx: OperatorContext) -> bytes:
    resid, masked, cross = ctx.state["host"].residuals(lr_from(ctx.blobs["powers"]))
    ctx.state["resid"] = resid
    return _frame({}, lr_bytes(resid), lr_bytes(masked), lr_bytes(cross))


def _host_gradient(ctx: OperatorContext) -> bytes:
    resid = ctx.state.get("resid") if "resid" not in ctx.blobs else lr_from(ctx.blobs["resid"])
    if resid is None:
        raise InvalidParameters("gradient before the residuals")
    return lr_bytes(ctx.state["host"].gradient_request(resid))


def _host_apply(ctx: OperatorContext) -> bytes:
    ctx.state["host"].apply(lr_from(ctx.blobs["reply"]))
    return b"{}"


def _host_finish(ctx: OperatorContext) -> bytes:
    if "party" in ctx.state:  # noised and encrypted to the requester: nothing else leaves
        sealed = encrypt_weights(ctx, ctx.state["host"].w, ctx.state["params"].C)
        ctx.state.clear()
        return sealed
    out = {"weights": [float(w) for w in ctx.state["host"].w]}
    ctx.state.clear()
    return json.dumps(out).encode()


_STEPS = {
    "guest.start": _guest_start,
    "guest.align": _guest_align,
    "guest.round": _guest_round,
    "guest.residuals": _guest_residuals,
    "guest.unmask": _guest_unmask,
    "guest.finish": _guest_finish,
    "host.start": _host_start,
    "host.align": _host_align,
    "host.extend": _host_extend,
    "host.residuals": _host_residuals,
    "host.gradient": _host_gradient,
    "host.apply": _host_apply,
    "host.finish": _host_finish,
}


def party(ctx: OperatorContext) -> bytes:
    """Vetted operator `fl.hetero_logreg`: one step of one party's side (`params.step`)."""
    return run_step(ctx, _STEPS, kind="training", party="a party")

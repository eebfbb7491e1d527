"""Vertical LR under a requester-held job key: sealed alignment, noisy weights encrypted to it.

Runs inside each party's sandbox (`sandbox.vertical_party` calls it when the step carries
`params.party`, the binding its provider approved):

* The guest's alignment message to each host (the host's row positions and the guest's
  own Paillier public key, plus [[X_g]] for the last host) travels sealed under the two
  parties' X25519 agreement (`crypto.relay`, the seeds the nodes derive from signed mask
  keys): the platform relays it but can neither read the positions nor substitute its own
  key for the guest's (with it, it could have a host compute on ciphertexts it opens).
* At the end each party adds its part of the model's Gaussian output perturbation to its
  own block of weights (`sandbox.vertical_dp`: the same σ on every coordinate as the
  central mechanism, so the blocks together carry exactly its noise), rounds to fixed
  point (`SCALE_BITS`) and encrypts each weight under the requester's key. Only those
  ciphertexts leave; `pdx_client.jobkeys.JobKey.decrypt` opens them.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from crypto.errors import CryptoError
from crypto.relay import open_relay, relay_key, seal_relay
from sandbox.coordinator import JobPublic
from sandbox.dp import OpenDPNoise
from sandbox.errors import InvalidParameters
from sandbox.isolation import OperatorContext
from sandbox.paillier import FastEncryptor, public_key_from_n
from sandbox.vertical_dp import weights_sigma

__all__ = ["SCALE_BITS", "encrypt_weights", "open_alignment", "party_state", "seal_alignment"]

SCALE_BITS = 32
"""Fixed point of a released weight: round(w·2^32) (|w| ≪ 2^900, far inside n/2)."""


def party_state(ctx: OperatorContext) -> None:
    """At a start step: keep the binding, the requester's n and the agreement seeds."""
    party = ctx.params.get("party")
    if party is None:
        return
    if not isinstance(party, dict):
        raise InvalidParameters("malformed job key binding")
    job = JobPublic.from_request(ctx.params["job"], {})
    if job.paillier_n is None:
        raise InvalidParameters("the call lacks the requester's job key")
    raw = ctx.blobs.get("mask_seeds")
    seeds = json.loads(raw) if raw else {}
    if not isinstance(seeds, dict):
        raise InvalidParameters("malformed agreement seeds")
    ctx.state["party"] = {
        "binding": party,
        "n": int(job.paillier_n),
        "job_id": job.job_id,
        "index": int(party["index"]),
        "seeds": {int(k): bytes.fromhex(str(v)) for k, v in seeds.items()},
    }


def _key(ctx: OperatorContext, peer: int) -> tuple[bytes, bytes]:
    state = ctx.state["party"]
    seed = state["seeds"].get(peer)
    if seed is None:
        raise InvalidParameters("this party has no agreement seed with its peer")
    guest_side, host_side = sorted((state["index"], peer))
    context = f"{state['job_id']}:hetero:{guest_side}:{host_side}".encode()
    aad = f"pdx:hetero:align:{state['job_id']}:{host_side}".encode()
    return relay_key(seed, context), aad


def seal_alignment(ctx: OperatorContext, host: int, header: dict[str, Any], setup: bytes) -> bytes:
    """Guest: host `host`'s alignment (1-based input position), sealed for its sandbox."""
    key, aad = _key(ctx, host)
    return seal_relay(key, 0, aad, json.dumps(header).encode() + b"\n" + setup)


def open_alignment(ctx: OperatorContext, sealed: bytes) -> tuple[dict[str, Any], bytes]:
    """Host: the guest's sealed alignment (`InvalidParameters` if altered or not the guest's)."""
    key, aad = _key(ctx, 0)
    try:
        plain = open_relay(key, 0, aad, sealed)
    except CryptoError:
        raise InvalidParameters("the guest's alignment failed authentication") from None
    head, _, setup = plain.partition(b"\n")
    header = json.loads(head)
    if not isinstance(header, dict):
        raise InvalidParameters("malformed alignment")
    return header, setup


def encrypt_weights(ctx: OperatorContext, weights: np.ndarray[Any, Any], c: float) -> bytes:
    """The calling party's block, DP-noised when the binding says so, encrypted to the requester."""
    state = ctx.state["party"]
    dp = state["binding"].get("dp")
    w = np.asarray(weights, dtype=float)
    if dp:
        delta = float(dp.get("delta") or 0.0)
        if dp.get("mechanism") != "gaussian" or not 0 < delta < 1:
            raise InvalidParameters("the model's output perturbation is Gaussian with δ > 0")
        sigma = weights_sigma(c, float(dp["epsilon"]), delta)  # the weights' share of ε
        w = OpenDPNoise().gaussian_vector(w, sigma)
    n = int(state["n"])
    enc = FastEncryptor(public_key_from_n(n))
    cts = [format(enc.encrypt_raw(int(round(float(v) * (1 << SCALE_BITS)))), "x") for v in w]
    return json.dumps({"ciphertexts": cts, "scale_bits": SCALE_BITS}).encode()

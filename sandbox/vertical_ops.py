"""The platform's side of `fl.hetero_logreg`: one sandbox session per party, relayed messages.

The relay sees PSI group elements, the count of aligned rows, ciphertexts under the
guest's key and masked integers; the guest's secret key, the labels, each party's
features and the alignment stay in the parties' sandboxes (`sandbox.vertical_party`).
The assembled weights are released through the gate: ε charged to every input's budget
first, then output perturbation (`sandbox.vertical_dp`), then the cohort check on the
aligned row count (the minimum intersection). Under DP that check is on the aligned count
plus discrete Laplace noise at `COUNT_SHARE` of the approved ε (the weights get the rest),
never on the exact count: the guest's sandbox is then told `min_rows` 0; under a
requester-held key the guest's sandbox takes the same noised decision itself.

Under a requester-held job key (`party`, `sandbox.party_stats.PartyJob`) every call
carries the binding each provider approved (its node checks it on every call), the
guest's alignment travels sealed for each host, and each party returns its own block of
weights noised and encrypted under the requester's key (`sandbox.vertical_keys`): the
platform relays, charges the budget and stores the ciphertexts (`encrypted_model`),
which only the requester's SDK opens (`pdx_client.jobkeys.JobKey.decrypt`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from sandbox._registry import ProviderInput
from sandbox.coordinator import SECURITY_MODEL, each_once
from sandbox.errors import IntersectionTooSmall, InvalidParameters
from sandbox.isolation import Sandbox
from sandbox.party_stats import (
    ENCRYPTED_FORMAT,
    MaskRelay,
    PartyJob,
    collect_mask_keys,
    platform_relay,
)
from sandbox.release import (
    Candidate,
    Release,
    ReleaseGate,
    ReleaseObligations,
    unique,
)
from sandbox.vertical_dp import perturb_weights, split_epsilon, weights_sigma
from sandbox.vertical_keys import SCALE_BITS
from sandbox.vertical_params import HeteroParams
from sandbox.vertical_party import _unframe

__all__ = ["HETERO_SECURITY", "HeteroJob", "HeteroModel", "encrypted_model", "model_obligations"]

OPERATOR = "fl.hetero_logreg"
MODEL_DELTA = 1e-6
"""δ of the model's Gaussian output perturbation where the policy names none."""

HETERO_SECURITY: dict[str, Any] = {
    "technique": "vertical (hetero) logistic regression: ECDH-PSI alignment, residuals and "
    "gradients under the guest's Paillier key with additive masks (sandbox.hetero_lr)",
    "who_learns_what": {
        "guest provider (inputs[0])": "inside its sandbox: the aligned rows, its own gradient "
        "per round, masked residuals and masked host gradients; its sandbox returns only its "
        "own weights",
        "host providers": "inside their sandboxes: which of their rows are aligned, their own "
        "gradients; ciphertexts under the guest's key otherwise",
        "coordinator": "group elements, the aligned row count, ciphertexts, masked integers, "
        "and each party's final weights before the release gate's noise (under a "
        "requester-held job key: only the noisy weights' ciphertexts under that key, and "
        "the alignment sealed)",
        "requester": "the assembled weights (standardised feature units), with DP noise when "
        "the policy requires it; never a row, a label, the alignment or a per-round metric "
        "(under a requester-held job key its SDK decrypts them). Under DP the minimum "
        "aligned rows is decided on the aligned count plus discrete Laplace noise at 0.2 of "
        "the approved epsilon (the weights' Gaussian gets 0.8; the total charged is the "
        "approved epsilon), so a requester choosing one party's rows learns no membership "
        "from a refusal. An input of the requester's own legal person may be guest or host "
        "only when platform-held: on its own node it would read that party's gradients and "
        "weights before noise (refused)",
    },
    "under_requester_key": "each party adds the Gaussian output perturbation to its own "
    "block of weights in its sandbox and encrypts it under the requester's key: the "
    "coordinator relays and stores ciphertexts only and never sees a weight; the guest's "
    "alignment message (host row positions, its public key) is sealed for each host under "
    "the two parties' X25519 agreement (docs/privacy.md)",
}


def model_obligations(obligations: ReleaseObligations) -> ReleaseObligations:
    """The Gaussian output perturbation needs δ > 0: (ε, `MODEL_DELTA`) where none is named."""
    if obligations.dp_epsilon is not None and obligations.dp_delta <= 0:
        return replace(obligations, dp_delta=MODEL_DELTA, dp_mechanism="gaussian")
    if obligations.dp_epsilon is not None:
        return replace(obligations, dp_mechanism="gaussian")
    return obligations


@dataclass(frozen=True)
class HeteroModel:
    """The released model: weights per input's features (standardised units) and intercept."""

    operator: str
    weights: dict[str, dict[str, float]]
    intercept: float
    iterations: int
    dp_epsilon: float | None
    round_seconds: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class HeteroJob:
    """One vertical logistic regression over `providers` (guest first)."""

    def __init__(
        self,
        params: HeteroParams,
        providers: Sequence[ProviderInput],
        *,
        sandbox: Sandbox,
        job_id: str,
        key_bits: int = 2048,
        min_rows: int = 1,
        party: PartyJob | None = None,
        relay: MaskRelay | None = None,
        clip_rows: bool = True,
    ) -> None:
        if len(providers) != len(params.keys):
            raise InvalidParameters("one key column per input")
        self.params = params
        self.providers = each_once(providers)
        self.sandbox = sandbox
        self.job_id = job_id
        self.key_bits = key_bits
        self.min_rows = min_rows
        self.relayed: list[tuple[str, str, int]] = []
        self.round_seconds: list[float] = []
        self.party = party
        """The requester-held key's public facts: the weights leave encrypted under it."""
        self.relay = relay or platform_relay(job_id)
        """(a party's mask public key, its seeds when the platform is its node): by default
        every input is the platform's own (as in the sandbox tests)."""
        self.record: Callable[[str, str, bytes], None] | None = None
        """Called with (to, step, bytes) for every relayed message and every party's output."""
        self.rows = 0
        self.clip_rows = clip_rows
        """Platform-key path: clip rows for DP (under a requester key the binding decides)."""
        self.noised_minimum = False
        """Platform-key path under DP: the gate decides the minimum on a noised count, so
        the guest's sandbox checks none (`run`); under a requester key the binding decides."""
        self._bound: dict[str, Any] = {}

    def train(self) -> tuple[list[np.ndarray[Any, Any]], int]:
        """Every party's final weights (guest last entry: intercept) and the aligned rows."""
        if self.party is not None:
            raise InvalidParameters("under a requester-held key the weights leave encrypted")
        outputs, rows = self.exchange()
        g = json.loads(outputs[0])
        weights = [json.loads(o)["weights"] for o in outputs[1:]]
        return [np.asarray(g["weights"]), *(np.asarray(w) for w in weights)], rows

    def exchange(self) -> tuple[list[bytes], int]:
        """Run every party's side; each party's final output (guest first) and the rows."""
        self.sandbox.check()
        salt = os.urandom(32)
        job: dict[str, Any] = {"hetero": self.params.as_job(), "job_id": self.job_id,
                               "clip_rows": self.clip_rows}  # fmt: skip
        starts: list[tuple[dict[str, Any], dict[str, bytes]]] = [({}, {})] * len(self.providers)
        if self.party is not None:
            # Every call carries the approved binding: a provider's node checks each one.
            self._bound = {"job": self.party.public.params(), "party": self.party.binding()}
            starts = self._agreement()
        sessions = [self.sandbox.open_session(OPERATOR, [p.path]) for p in self.providers]
        try:
            return self._run(sessions, salt, job, starts)
        finally:
            for s in sessions:
                s.close()

    def _agreement(self) -> list[tuple[dict[str, Any], dict[str, bytes]]]:
        """Each party's start parameters and seeds: the relayed (signed) X25519 keys."""
        assert self.party is not None
        fetch, local_blobs = self.relay
        keys = collect_mask_keys(self.providers, fetch)
        peers = [{**k, "index": i} for i, k in enumerate(keys)]
        out = []
        for i, p in enumerate(self.providers):
            pp = {**self.party.binding(), "index": i, "peers": peers}
            out.append(({"party": pp}, local_blobs(p, pp)))
        return out

    def _call(self, session: Any, to: str, step: str, blobs: dict[str, bytes], **p: Any) -> bytes:
        for name, data in blobs.items():
            if name not in ("salt", "mask_seeds"):
                self.relayed.append((to, step, len(data)))
                if self.record is not None:
                    self.record(to, step, data)
        out: bytes = session.call({"step": step, **self._bound, **p}, blobs).unwrap()
        if step.endswith(".finish") and self.record is not None:
            self.record("platform", step, out)
        return out

    def _run(
        self,
        s: list[Any],
        salt: bytes,
        job: dict[str, Any],
        starts: list[tuple[dict[str, Any], dict[str, bytes]]],
    ) -> tuple[list[bytes], int]:
        guest, hosts = s[0], s[1:]
        last = len(hosts) - 1
        g0, gb = starts[0]
        _, requests = _unframe(
            self._call(guest, "guest", "guest.start", {"salt": salt, **gb}, **job, **g0)
        )
        replies = {}
        for i, h in enumerate(hosts):
            h0, hb = starts[i + 1]
            blobs = {"salt": salt, "request": requests[i], **hb}
            replies[f"host{i}"] = self._call(
                h, f"host{i}", "host.start", blobs, position=i + 1, **job, **h0
            )
        head, parts = _unframe(
            self._call(
                guest,
                "guest",
                "guest.align",
                replies,
                key_bits=self.key_bits,
                min_rows=0 if self.noised_minimum else self.min_rows,
            )
        )
        if head.get("sealed"):  # one sealed alignment per host (requester-held key)
            if len(parts) != len(hosts):
                raise InvalidParameters("the guest's alignment does not match the hosts")
            for i, h in enumerate(hosts):
                self._call(h, f"host{i}", "host.align", {"sealed": parts[i]})
            rows = int(head["rows"])
        else:
            (setup,) = parts
            for i, h in enumerate(hosts):
                blobs = {"setup": setup} if i == last else {}
                self._call(
                    h, f"host{i}", "host.align", blobs, positions=head["positions"][i],
                    n=head["n"],
                )  # fmt: skip
            rows = len(head["positions"][0])
        self.rows = rows
        for _ in range(self.params.iterations):
            started = time.perf_counter()
            msg = self._call(guest, "guest", "guest.round", {})
            for i, h in enumerate(hosts):  # each host adds its U_h, the last one too
                msg = self._call(h, f"host{i}", "host.extend", {"powers": msg})
            _, (resid, masked, cross) = _unframe(
                self._call(hosts[last], f"host{last}", "host.residuals", {"powers": msg})
            )
            self._call(guest, "guest", "guest.residuals", {"masked": masked, "cross": cross})
            for i, h in enumerate(hosts):
                blobs = {"resid": resid} if i != last else {}
                req = self._call(h, f"host{i}", "host.gradient", blobs)
                reply = self._call(guest, "guest", "guest.unmask", {"request": req})
                self._call(h, f"host{i}", "host.apply", {"reply": reply})
            self.round_seconds.append(time.perf_counter() - started)
        outputs = [self._call(h, f"host{i}", "host.finish", {}) for i, h in enumerate(hosts)]
        return [self._call(guest, "guest", "guest.finish", {}), *outputs], rows

    def release(
        self,
        weights: list[np.ndarray[Any, Any]],
        rows: int,
        gate: ReleaseGate,
        obligations: ReleaseObligations,
    ) -> Release[HeteroModel]:
        """Charge, noise, check the cohort (the minimum intersection), release."""
        flat = np.concatenate([weights[0][:-1], *weights[1:], weights[0][-1:]])
        datasets = unique(p.dataset_id for p in self.providers)
        # The Gaussian mechanism needs δ > 0: charged as (ε, δ) to every input.
        obligations = model_obligations(obligations)
        spent = gate.charge(datasets, obligations, self.job_id)
        if obligations.dp_epsilon is not None:
            # The minimum on the aligned count plus discrete Laplace noise (sensitivity 1)
            # at ε_count: refuse-or-release is post-processing of a DP count.
            count_epsilon = split_epsilon(obligations.dp_epsilon)[0]
            rows = max(int(gate.noise.laplace([rows], 1.0 / count_epsilon)[0]), 0)
            flat = perturb_weights(
                flat, self.params.C, obligations.dp_epsilon, obligations.dp_delta, gate.noise
            )
        if rows < obligations.min_cohort:
            raise IntersectionTooSmall(
                "the aligned rows are fewer than the minimum intersection",
                min_intersection=obligations.min_cohort,
            )
        names = self.params.features
        out: dict[str, dict[str, float]] = {}
        at = 0
        for p, cols in zip(self.providers, names, strict=True):
            out[p.dataset_id] = {c: float(flat[at + j]) for j, c in enumerate(cols)}
            at += len(cols)
        model = HeteroModel(
            OPERATOR, out, float(flat[-1]), self.params.iterations, spent, self.round_seconds
        )
        return gate.release_model(
            Candidate.model(OPERATOR, "model", rows, flat, self.providers),
            obligations,
            self.job_id,
            model,
            epsilon_spent=spent,
            security_model={**SECURITY_MODEL.as_dict(), "vertical": HETERO_SECURITY},
        )

    def run(self, gate: ReleaseGate, obligations: ReleaseObligations) -> Release[HeteroModel]:
        self.noised_minimum = obligations.dp_epsilon is not None
        weights, rows = self.train()
        return self.release(weights, rows, gate, obligations)

    def run_under_party_key(
        self, gate: ReleaseGate, obligations: ReleaseObligations
    ) -> Release[dict[str, Any]]:
        """Requester-held key: charge every input's budget, train, hand back the ciphertexts.

        The minimum intersection is checked in the guest's sandbox against the approved
        binding (under DP on a noised aligned count, `sandbox.vertical_party`); the noise is
        each party's, added to its own block before encryption; provider review, when
        required, holds the ciphertexts.
        """
        if self.party is None:
            raise InvalidParameters("no requester-held key for this job")
        obligations = model_obligations(obligations)
        datasets = unique(p.dataset_id for p in self.providers)
        spent = gate.charge(datasets, obligations, self.job_id)  # before anything runs
        outputs, _rows = self.exchange()  # the exact count stays unreleased
        return Release(
            self.job_id,
            OPERATOR,
            encrypted_model(self, outputs),
            obligations,
            unique(p.provider_id for p in self.providers),
            epsilon_spent=spent,
            security_model={**SECURITY_MODEL.as_dict(), "vertical": HETERO_SECURITY},
        )


def encrypted_model(job: HeteroJob, outputs: Sequence[bytes]) -> dict[str, Any]:
    """The result document `pdx_client.jobkeys.JobKey.decrypt` opens: each block's ciphertexts.

    Order as the platform-key path's flat vector: the guest's features, each host's, then
    the intercept (the guest's last weight).
    """
    party = job.party
    assert party is not None
    n2 = party.n * party.n
    blocks: list[list[str]] = []
    for i, out in enumerate(outputs):
        try:
            doc = json.loads(out)
            cts = [str(c) for c in doc["ciphertexts"]]
            ok = int(doc["scale_bits"]) == SCALE_BITS and all(0 < int(c, 16) < n2 for c in cts)
        except (ValueError, TypeError, KeyError):
            ok, cts = False, []
        want = len(job.params.features[i]) + (1 if i == 0 else 0)
        if not ok or len(cts) != want:
            raise InvalidParameters("a party's encrypted weights do not match the model")
        blocks.append(cts)
    flat = [*blocks[0][:-1], *(c for b in blocks[1:] for c in b), blocks[0][-1]]
    dp = party.dp
    noise = None
    if dp is not None:
        eps = float(dp["epsilon"])
        sigma = weights_sigma(job.params.C, eps, float(dp["delta"]))
        count_eps, weights_eps = split_epsilon(eps)
        noise = {"mechanism": "gaussian", "sigma": sigma, "added_by": "each party, own block",
                 "epsilon_weights": weights_eps, "epsilon_minimum": count_eps}  # fmt: skip
    return {
        "format": ENCRYPTED_FORMAT,
        "scheme": "paillier",
        "key_fingerprint": party.fingerprint,
        "operator": OPERATOR,
        "model": {
            "inputs": [
                {"dataset_id": p.dataset_id, "features": list(f)}
                for p, f in zip(job.providers, job.params.features, strict=True)
            ],
            "intercept": True,
            "scale_bits": SCALE_BITS,
        },
        "iterations": job.params.iterations,
        "min_cohort": party.min_cohort,
        "providers": party.providers,
        "dp": dp,
        "noise": noise,
        "packing": None,
        "length": len(flat),
        "addends": 1,
        "ciphertexts": flat,
    }

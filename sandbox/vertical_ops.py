"""The platform's side of `fl.hetero_logreg`: one sandbox session per party, relayed messages.

The relay sees PSI group elements, the count of aligned rows, ciphertexts under the
guest's key and masked integers; the guest's secret key, the labels, each party's
features and the alignment stay in the parties' sandboxes (`sandbox.vertical_party`).
The assembled weights are released through the gate: ε charged to every input's budget
first, then output perturbation (`sandbox.vertical_dp`), then the cohort check on the
aligned row count (the minimum intersection).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from sandbox._registry import ProviderInput
from sandbox.coordinator import SECURITY_MODEL
from sandbox.errors import IntersectionTooSmall, InvalidParameters
from sandbox.isolation import Sandbox
from sandbox.release import (
    Candidate,
    Measure,
    Partition,
    Release,
    ReleaseGate,
    ReleaseObligations,
    unique,
)
from sandbox.vertical_dp import perturb_weights
from sandbox.vertical_params import HeteroParams
from sandbox.vertical_party import _unframe

__all__ = ["HETERO_SECURITY", "HeteroJob", "HeteroModel"]

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
        "and each party's final weights before the release gate's noise",
        "requester": "the assembled weights (standardised feature units), with DP noise when "
        "the policy requires it; never a row, a label, the alignment or a per-round metric",
    },
}


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
    ) -> None:
        if len(providers) != len(params.keys):
            raise InvalidParameters("one key column per input")
        if len({p.provider_id for p in providers}) != len(providers):
            raise InvalidParameters("each provider takes part once")
        self.params = params
        self.providers = tuple(providers)
        self.sandbox = sandbox
        self.job_id = job_id
        self.key_bits = key_bits
        self.min_rows = min_rows
        self.relayed: list[tuple[str, str, int]] = []
        self.round_seconds: list[float] = []

    def train(self) -> tuple[list[np.ndarray[Any, Any]], int]:
        """Every party's final weights (guest last entry: intercept) and the aligned rows."""
        self.sandbox.check()
        salt = os.urandom(32)
        job = {"job": self.params.as_job(), "job_id": self.job_id}
        sessions = [self.sandbox.open_session(OPERATOR, [p.path]) for p in self.providers]
        try:
            return self._run(sessions, salt, job)
        finally:
            for s in sessions:
                s.close()

    def _call(self, session: Any, to: str, step: str, blobs: dict[str, bytes], **p: Any) -> bytes:
        for name, data in blobs.items():
            if name != "salt":
                self.relayed.append((to, step, len(data)))
        out: bytes = session.call({"step": step, **p}, blobs).unwrap()
        return out

    def _run(self, s: list[Any], salt: bytes, job: dict[str, Any]) -> tuple[list[Any], int]:
        guest, hosts = s[0], s[1:]
        last = len(hosts) - 1
        _, requests = _unframe(self._call(guest, "guest", "guest.start", {"salt": salt}, **job))
        replies = {}
        for i, h in enumerate(hosts):
            blobs = {"salt": salt, "request": requests[i]}
            replies[f"host{i}"] = self._call(
                h, f"host{i}", "host.start", blobs, position=i + 1, **job
            )
        head, (setup,) = _unframe(
            self._call(
                guest,
                "guest",
                "guest.align",
                replies,
                key_bits=self.key_bits,
                min_rows=self.min_rows,
            )
        )
        for i, h in enumerate(hosts):
            blobs = {"setup": setup} if i == last else {}
            self._call(
                h, f"host{i}", "host.align", blobs, positions=head["positions"][i], n=head["n"]
            )
        rows = len(head["positions"][0])
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
        weights = [
            json.loads(self._call(h, f"host{i}", "host.finish", {}))["weights"]
            for i, h in enumerate(hosts)
        ]
        g = json.loads(self._call(guest, "guest", "guest.finish", {}))
        return [np.asarray(g["weights"]), *(np.asarray(w) for w in weights)], rows

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
        if obligations.dp_epsilon is not None and obligations.dp_delta <= 0:
            # The Gaussian mechanism needs δ > 0: charged as (ε, δ) to every input.
            obligations = replace(obligations, dp_delta=MODEL_DELTA, dp_mechanism="gaussian")
        spent = gate.charge(datasets, obligations, self.job_id)
        if obligations.dp_epsilon is not None:
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
        cand = Candidate(
            OPERATOR,
            (
                Partition(
                    "model", rows, tuple(Measure(f"w{i}", float(v)) for i, v in enumerate(flat))
                ),
            ),
            datasets,
            unique(p.provider_id for p in self.providers),
        )
        return gate.release_model(
            cand,
            obligations,
            self.job_id,
            model,
            epsilon_spent=spent,
            security_model={**SECURITY_MODEL.as_dict(), "vertical": HETERO_SECURITY},
        )

    def run(self, gate: ReleaseGate, obligations: ReleaseObligations) -> Release[HeteroModel]:
        weights, rows = self.train()
        return self.release(weights, rows, gate, obligations)

"""Federated learning under your own job key: the SDK decrypts each round and posts the next model.

`fl.logreg` over node-held data runs under the requester's Paillier key
(`pdx_client.jobkeys`). The platform adds the providers' masked, encrypted updates but
cannot open them, so the requester closes every round: `drive` fetches the open step's
encrypted aggregate (GET /v1/computations/{id}/fl-round), decrypts it here, computes the
FedAvg step and posts the next global model (POST .../fl-round/{step}). Step 0 is the
setup: exact feature moments (the standardisation) or, under DP, a noisy row count.
The job's result is the last step's encrypted aggregate and the model it updates:
`open_model` adds them here, so the final model never exists on the platform.

Every reply is sealed (`pdx_client.flseal`): the standardisation and each global model
for each provider's node (under its signed key, checked against the party keys pinned in
`trust` or `PDX_TRUSTED_PARTIES`, and its challenge), and for this SDK itself under the
job key. The platform relays ciphertexts only: it sees no model, no standardisation and
no provider's update, only how many rounds ran.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pdx_client.errors import PdxError
from pdx_client.flseal import NodeKeyUnverified, NodeTrust, RequesterKey, Sealer, open_own
from pdx_client.steps import Http, answer_steps

__all__ = ["FL_RESULT_FORMAT", "FL_ROUND_FORMAT", "FlTrainer", "drive", "open_model", "predict"]

FL_ROUND_FORMAT = "pdx-fl-round/1"
FL_RESULT_FORMAT = "pdx-fl-result/1"
_ENDED = frozenset({"released", "rejected", "failed", "review"})


def _fixed(values: list[int], bits: int) -> list[float]:
    return [v / float(1 << bits) for v in values]


@dataclass
class FlTrainer:
    """The requester's side of the rounds: decrypts a step and says what comes next, sealed.

    `trust` pins the providers' party keys (None: `PDX_TRUSTED_PARTIES`, and failing that
    the relayed keys unchecked, with a warning); `job_id` the computation it closes.
    """

    key: RequesterKey
    trust: NodeTrust | None = None
    job_id: str | None = None
    weights: list[float] = field(default_factory=list)
    standardisation: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    sealer: Sealer | None = None
    _best: float = math.inf
    _stale: int = 0

    @property
    def verified(self) -> bool:
        """Whether every node's key was checked against a pinned party key."""
        return self.sealer is not None and self.sealer.verified

    def _check(self, doc: dict[str, Any]) -> None:
        if doc.get("format") != FL_ROUND_FORMAT:
            raise PdxError("not an encrypted federated round", type="about:blank")

    def reply(self, doc: dict[str, Any]) -> dict[str, Any]:
        """The reply to one step's aggregate: the setup and first model, next model, or stop."""
        self._check(doc)
        values = self.key.open_vector(doc)
        layout = doc["layout"]
        d = int(layout.get("d", len(doc["features"])))
        step = int(doc["step"])
        if step == 0:
            trust = self.trust if self.trust is not None else NodeTrust.from_env()
            self.sealer = Sealer(self.key, doc, values, trust, self.job_id)
            plain = self._setup(doc, values, d)
            message = {"weights": plain["weights"], "standardisation": self.standardisation}
        else:
            if self.sealer is None:
                raise PdxError("a round before the setup was seen", type="about:blank")
            plain = self._round(doc, _fixed(values, int(layout["fixed_bits"])), d)
            if plain.get("stop") is True:
                return {"stop": True}
            message = {"weights": plain["weights"]}
        own = {**message, "standardisation": self.standardisation, "step": step}
        return {"sealed": self.sealer.seal(step, message, own)}

    def _setup(self, doc: dict[str, Any], values: list[int], d: int) -> dict[str, Any]:
        self.weights = [0.0] * (len(doc["features"]) + 1)
        self.history, self._best, self._stale = [], math.inf, 0  # (again, after a recovery)
        if doc["kind"] == "count":  # DP: the noisy row count N̂ only
            n_hat = max(float(values[0]), 1.0)
            self.standardisation = {"n_total": n_hat}
            return {"n_total": n_hat, "weights": list(self.weights)}
        bits = int(doc["layout"]["fixed_bits"])
        n = float(values[0])
        if n < 1:
            raise PdxError("the setup aggregate counts no rows", type="about:blank")
        sums = _fixed(values[1 : 1 + d], bits)
        squares = _fixed(values[1 + d : 1 + 2 * d], bits)
        mean = [s / n for s in sums]
        var = [q / n - m * m for q, m in zip(squares, mean, strict=True)]
        scale = [math.sqrt(v) if v > 0 else 1.0 for v in var]
        self.standardisation = {"n_total": n, "mean": mean, "scale": scale}
        return {**self.standardisation, "weights": list(self.weights)}

    def _round(self, doc: dict[str, Any], v: list[float], d: int) -> dict[str, Any]:
        weight = v[d]
        if not weight > 0:
            raise PdxError("the aggregate update has no weight", type="about:blank")
        update = [x / weight for x in v[:d]]
        w = self.weights
        train = doc.get("training") or {}
        private = bool(doc.get("dp"))
        loss = acc = None
        if not private:
            lam = 1.0 / (float(train.get("C", 1.0)) * float(self.standardisation["n_total"]))
            loss = v[d + 1] + 0.5 * lam * sum(x * x for x in w[:-1])
            acc = v[d + 2]
        self.weights = [a + b for a, b in zip(w, update, strict=True)]
        self.history.append(
            {"round": int(doc["step"]) - 1, "loss": loss, "accuracy": acc,
             "update_norm": math.sqrt(sum(x * x for x in update))}
        )  # fmt: skip
        if loss is not None and train.get("early_stopping", True):
            if loss < self._best * (1.0 - float(train.get("tol", 1e-4))):
                self._best, self._stale = loss, 0
            else:
                self._stale += 1
                if self._stale >= int(train.get("patience", 5)):
                    return {"stop": True}
        return {"weights": list(self.weights)}


def drive(
    http: Http,
    computation_id: str,
    key: RequesterKey,
    *,
    timeout: float = 600.0,
    poll: float = 0.2,
    on_step: Callable[[int], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    trust: NodeTrust | None = None,
) -> FlTrainer:
    """Close every round of a running federated job until it ends (released, review...).

    A node whose key does not verify against `trust` (or `PDX_TRUSTED_PARTIES`) gets no
    model: the SDK stops the job at its setup and raises `NodeKeyUnverified`.
    """
    trainer = FlTrainer(key, trust=trust, job_id=computation_id)

    def reply(k: int, step: dict[str, Any]) -> dict[str, Any]:
        try:
            return trainer.reply(step["aggregate"])
        except NodeKeyUnverified:
            http.post(f"/v1/computations/{computation_id}/fl-round/{k}", {"stop": True})
            raise  # nothing was sealed for the unverified node

    answer_steps(
        http,
        computation_id,
        "fl-round",
        reply,
        ended=_ENDED,
        timeout=timeout,
        poll=poll,
        sleep=sleep,
        on_step=on_step,
    )
    return trainer


def open_model(
    key: RequesterKey, doc: dict[str, Any], trainer: FlTrainer | None = None
) -> dict[str, Any]:
    """The final model from the job's result: its last global model plus the last update."""
    final = doc["final"]
    if final.get("format") != FL_ROUND_FORMAT or final.get("kind") != "update":
        raise PdxError("malformed federated result", type="about:blank")
    layout = final["layout"]
    d = int(layout["d"])
    v = _fixed(key.open_vector(final), int(layout["fixed_bits"]))
    weight = v[d]
    if not weight > 0:
        raise PdxError("the aggregate update has no weight", type="about:blank")
    own = open_own(key, doc["model_in"])
    if own.get("step") != int(doc["rounds_run"]) - 1:
        raise PdxError("the sealed model is not the last round's", type="about:blank")
    w = [float(a) + b / weight for a, b in zip(own["weights"], v[:d], strict=True)]
    std = {**(doc.get("standardisation") or {}), **own["standardisation"]}
    return {
        "operator": "fl.logreg",
        "features": list(doc["features"]),
        "coef": w[:-1],
        "intercept": w[-1],
        "mean": list(std["mean"]),
        "scale": list(std["scale"]),
        "rows": std["n_total"],
        "bounds": doc.get("bounds"),
        "rounds_run": int(doc["rounds_run"]),
        "rounds": list(trainer.history) if trainer is not None else [],
        "dp": doc.get("dp"),
        "decrypted_by": "requester",
    }


def predict(model: dict[str, Any], rows: list[list[float]]) -> list[int]:
    """Class predictions of an opened model on raw feature rows (bounds clipped, standardised)."""
    out = []
    bounds = model.get("bounds")
    for row in rows:
        x = [float(v) for v in row]
        if bounds:
            x = [min(max(v, lo), hi) for v, (lo, hi) in zip(x, bounds, strict=True)]
        z = sum(
            c * (v - m) / s
            for c, v, m, s in zip(model["coef"], x, model["mean"], model["scale"], strict=True)
        )
        out.append(int(z + model["intercept"] > 0))
    return out

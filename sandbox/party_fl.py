"""Federated learning (`fl.logreg`) under a requester-held key: the requester closes each round.

The protocol of one FedAvg job when the requester sent a `job_key` (docs/privacy.md,
"Federated learning under your own key"):

1. Keys, as for statistics (`sandbox.party_stats`): the requester's SDK made a Paillier
   key pair and sent only n; each provider's node makes an X25519 mask key for the job,
   signed with its party key, and checks its peers' (`sandbox.mask_signing`).
2. Setup (step 0, `init`): each node loads its rows once into a long-lived sandbox
   session, refuses when its *own* row count is below the minimum cohort, and sends
   Enc(masked [n_k, Σx, Σx²]) (fixed point) or, under DP, Enc(masked n_k + a discrete
   Gaussian share of the noisy count). The coordinator adds the envelopes.
3. The requester's SDK fetches the encrypted aggregate, decrypts it, and posts the
   standardisation (means, scales and N; under DP only N̂, the scales come from the
   declared bounds) and the first global model. The platform forwards them.
4. Each round r: each node trains `local_epochs` from the global model on its rows
   (exact gradient descent, or record-level DP-SGD with the noise multiplier the node
   derives itself from the ε and δ its provider approved), and sends
   Enc(masked fixed-point [(n_k/N)·Δ_k, n_k/N, loss_k/N, correct_k/N]) (weights 1/K and no
   metrics under DP). The coordinator adds; the SDK decrypts the sum, which is the
   FedAvg update, and posts the next global model (or stops).
5. The last round's encrypted aggregate, with the last global model the requester posted
   and the standardisation, is the job's result: the SDK adds the update itself, so the
   final model is never on the platform.

Masks are derived per step from the pairwise seeds (`step_seeds`) and a node sends each
step at most once, so no two envelopes share a mask. The platform sees what it forwards:
the standardisation and every global model but the last (see `SECURITY_MODEL`).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from sandbox._dp_fl import bounds_standardisation, dp_local_train, plan_dp
from sandbox._registry import ProviderInput
from sandbox.accounting import DEFAULT_DELTA
from sandbox.coordinator import (
    Coordinator,
    JobPublic,
    PartyView,
    SecurityModel,
    seal_vector,
)
from sandbox.dp import OpenDPNoise
from sandbox.errors import CohortTooSmall, InvalidParameters, OperatorFailed
from sandbox.fl_local import load_rows, local_train, logloss_sum
from sandbox.isolation import OperatorContext, Sandbox, SandboxSession
from sandbox.masks import apply_masks
from sandbox.noise_shares import tolerated
from sandbox.party_stats import (
    ADVERSARY,
    REQUESTER_HOLDS_KEY,
    PartyJob,
    add_envelopes,
    unpack_aggregate,
)

__all__ = [
    "FL_RESULT_FORMAT",
    "FL_ROUND_FORMAT",
    "SECURITY_MODEL",
    "PartyFlJob",
    "node_party_logreg",
    "step_seeds",
]

FL_ROUND_FORMAT = "pdx-fl-round/1"
"""One step's encrypted aggregate, as the requester fetches it (`pdx_client.fl`)."""
FL_RESULT_FORMAT = "pdx-fl-result/1"
"""The job's result: the last step's aggregate and the model it updates."""
UPDATE_BITS = 32
"""Fixed point of updates and metrics: v ↦ round(v·2^32)."""
MOMENT_BITS = 16
"""Fixed point of the setup's feature sums and sums of squares."""
_MAX_FIXED = 1 << 80
"""A fixed-point value this large is refused: it would weaken the masks' hiding."""

SECURITY_MODEL = SecurityModel(
    adversary=ADVERSARY,
    assumptions=(
        REQUESTER_HOLDS_KEY,
        "each provider's node runs only the vetted fl.logreg operator its code request "
        "approved (job key fingerprint, epsilon, number of providers and cohort minimum are "
        "bound and checked on every call)",
        "mask keys are signed and checked as for statistics (sandbox.mask_signing); each "
        "step's masks are fresh and a node sends each step once",
        "under DP, each node derives its DP-SGD noise from the epsilon and delta its provider "
        "approved, whatever global model, scale or row count it is sent",
        "Paillier (>= 2048-bit n) is IND-CPA",
    ),
    parties=(
        PartyView(
            role="provider node",
            holds=("its own dataset", "the job public key", "its X25519 mask key for the job"),
            sees=(
                "its own rows and updates",
                "the standardisation and every global model the requester posts",
            ),
        ),
        PartyView(
            role="platform (coordinator)",
            holds=("the job public key", "the relayed mask public keys", "ciphertexts"),
            sees=(
                "ciphertexts only: no provider's update, no aggregate update",
                "what it forwards from the requester to the nodes: the standardisation "
                "(means, scales, the row count N; under DP only the noisy N) and every "
                "global model except the final one",
                "how many rounds ran and a provider's refusal below the cohort minimum",
            ),
        ),
        PartyView(
            role="requester",
            holds=("the job secret key (its SDK)",),
            sees=(
                "each round's aggregate update (sum over providers; DP-SGD noised under DP), "
                "the setup aggregate (exact moments, or the noisy count under DP), and the "
                "final model",
            ),
        ),
    ),
    not_protected=(
        "without DP, the global models the requester posts are exact functions of the "
        "providers' data and the platform sees them (never one provider's update)",
        "the requester chooses the global models; without DP, chosen models can reveal "
        "more about the union's rows than the final model alone (as for any FedAvg "
        "server); under DP every update is DP whatever the model",
        "a requester colluding with the platform and one provider's mask peers can read "
        "that provider's update",
        "providers submitting false data, and which providers participated",
    ),
)
"""The threat model of `fl.logreg` under a requester-held key (`security_model.threat_model`)."""


def step_seeds(seeds: Mapping[int, bytes], step: int) -> dict[int, bytes]:
    """The pairwise seeds of one step: fresh masks for every envelope a node sends."""
    tag = step.to_bytes(4, "big")
    return {k: hashlib.sha256(b"pdx-fl-step" + s + tag).digest() for k, s in seeds.items()}


def _fixed(values: Sequence[float], bits: int) -> list[int]:
    out = []
    for v in values:
        if not math.isfinite(v):
            raise InvalidParameters("an update is not finite")
        x = round(v * (1 << bits))
        if abs(x) >= _MAX_FIXED:
            raise InvalidParameters("an update is out of the fixed-point range")
        out.append(int(x))
    return out


# -- node side (inside the provider's sandbox session) -----------------------------------------


def node_party_logreg(ctx: OperatorContext) -> bytes:
    """`fl.logreg` under a requester key: `init` loads and sends the setup, `round` trains."""
    p, st = ctx.params, ctx.state
    job = JobPublic.from_request(p["job"], {})
    party = p["party"]
    if job.scheme != "paillier-packed" or job.paillier_n is None:
        raise InvalidParameters("requester-held keys are Paillier keys")
    cmd = p.get("cmd")
    if cmd == "init":
        if "x" in st:
            raise InvalidParameters("this session was already set up")
        x, y = load_rows(ctx, p["features"], p["label"])
        min_cohort = int(party["min_cohort"])
        if len(y) < min_cohort:  # per-provider cohort (docs/privacy.md)
            raise CohortTooSmall(
                "this provider's own records are fewer than the minimum cohort",
                min_cohort=min_cohort,
            )
        raw = ctx.blobs.get("mask_seeds")
        seeds = {int(k): bytes.fromhex(v) for k, v in json.loads(raw).items()} if raw else {}
        nodes = int(party["providers"])
        rounds = int(p["rounds"])
        dp = party.get("dp")
        plan = None
        if dp:  # the node's own plan, from the ε and δ its provider approved
            plan = plan_dp(
                float(dp["epsilon"]),
                float(dp.get("delta") or DEFAULT_DELTA),
                rounds=rounds,
                local_epochs=int(p["epochs"]),
                clip=float(p["clip_norm"]),
                count_share=float(p["count_share"]),
            )
            if p.get("bounds") is not None:
                lo, hi = np.asarray(p["bounds"], dtype=np.float64).T
                x = np.clip(x, lo, hi)
        st.update(x=x, y=y, job=job, index=int(party["index"]), seeds=seeds, nodes=nodes,
                  rounds=rounds, lr=float(p["lr"]), epochs=int(p["epochs"]), C=float(p["C"]),
                  plan=plan, sent=set())  # fmt: skip
        if plan is not None:
            share = plan.count_sigma / math.sqrt(nodes - tolerated(nodes))
            noisy = OpenDPNoise().gaussian([len(y)], share)
            layout = {"fields": ["rows"], "d": x.shape[1]}
            return _seal(st, 0, "count", layout, [int(v) for v in noisy])
        moments = [*np.sum(x, axis=0).tolist(), *np.sum(x * x, axis=0).tolist()]
        values = [len(y), *_fixed(moments, MOMENT_BITS)]
        layout = {"fields": ["rows", "sum", "sumsq"], "d": x.shape[1], "fixed_bits": MOMENT_BITS}
        return _seal(st, 0, "moments", layout, values)
    if cmd != "round" or "x" not in st:
        raise InvalidParameters("expected init, then round commands")
    r = int(p["round"])
    if not 0 <= r < st["rounds"]:
        raise InvalidParameters("round outside the job's declared rounds")
    if "xb" not in st:
        std = p.get("standardisation")
        if not isinstance(std, Mapping):
            raise InvalidParameters("the first round carries the standardisation")
        mean = np.asarray(std["mean"], dtype=np.float64)
        scale = np.asarray(std["scale"], dtype=np.float64)
        n_total = float(std["n_total"])
        d = st["x"].shape[1]
        if mean.shape != (d,) or scale.shape != (d,) or not np.all(scale > 0):
            raise InvalidParameters("malformed standardisation")
        if not (n_total >= 1 and math.isfinite(n_total)):
            raise InvalidParameters("malformed row count")
        st["xb"] = np.hstack([(st["x"] - mean) / scale, np.ones((len(st["y"]), 1))])
        st["n_total"] = n_total
    xb, y, n_total = st["xb"], st["y"], st["n_total"]
    w = np.asarray(p["weights"], dtype=np.float64)
    if w.shape != (xb.shape[1],) or not np.all(np.isfinite(w)):
        raise InvalidParameters("weights do not match the features")
    lam = 1.0 / (st["C"] * n_total)
    plan = st["plan"]
    if plan is None:
        loss, correct = logloss_sum(xb, y, w)
        delta = local_train(xb, y, w, lam, st["lr"], st["epochs"]) - w
        weight = len(y) / n_total
        vec = [*(weight * delta).tolist(), weight, loss / n_total, correct / n_total]
    else:
        dp = {"clip": plan.clip, "sigma": plan.sigma, "denominator": n_total / st["nodes"]}
        delta = dp_local_train(xb, y, w, lam, st["lr"], st["epochs"], dp) - w
        weight = 1.0 / st["nodes"]
        vec = [*(weight * delta).tolist(), weight, 0.0, 0.0]
    layout = {"fields": ["weighted_update", "weight", "loss", "correct"], "d": xb.shape[1],
              "fixed_bits": UPDATE_BITS, "round": r}  # fmt: skip
    return _seal(st, r + 1, "update", layout, _fixed(vec, UPDATE_BITS))


def _seal(
    st: dict[str, Any], step: int, kind: str, layout: dict[str, Any], values: list[int]
) -> bytes:
    """Mask with this step's pairwise masks (once per step) and encrypt under the job key."""
    if step in st["sent"]:
        raise InvalidParameters("this step was already sent")
    st["sent"].add(step)
    masked = apply_masks(values, st["index"], step_seeds(st["seeds"], step))
    return seal_vector(st["job"], f"fl.logreg.{kind}", layout, masked).to_bytes()


# -- platform side: sessions, adding, the requester's replies ---------------------------------

Exchange = Callable[[int, dict[str, Any]], dict[str, Any]]
"""Hands step k's encrypted aggregate to the requester and returns its reply (or raises)."""


class PartyFlJob:
    """One `fl.logreg` job under the requester's key; `run(exchange)` drives every step."""

    def __init__(
        self,
        config: Any,
        providers: Sequence[ProviderInput],
        party: PartyJob,
        *,
        sandbox: Sandbox,
        mask_keys: Sequence[Mapping[str, Any]],
        local_blobs: Callable[[ProviderInput, dict[str, Any]], dict[str, bytes]],
    ) -> None:
        if len(providers) < 2:
            raise InvalidParameters("federated learning needs at least two providers")
        self.config = config
        self.providers = tuple(providers)
        self.party = party
        self.sandbox = sandbox
        self.mask_keys = list(mask_keys)
        self.local_blobs = local_blobs
        self.coordinator = Coordinator(party.public)

    def _init_params(self) -> dict[str, Any]:
        cfg = self.config
        out: dict[str, Any] = {
            "cmd": "init",
            "step": "fl.start",  # the node adds its mask seeds to a session's first call
            "features": list(cfg.features),
            "label": cfg.label,
            "rounds": cfg.rounds,
            "epochs": cfg.local_epochs,
            "lr": cfg.learning_rate,
            "C": cfg.C,
            "clip_norm": cfg.clip_norm,
            "count_share": cfg.count_share,
            "job": self.party.public.params(),
        }
        if self.party.dp and cfg.feature_bounds is not None:
            out["bounds"] = [list(b) for b in cfg.feature_bounds]
        return out

    def _collect(self, sessions: Sequence[SandboxSession], step: int) -> dict[str, Any]:
        self.coordinator.reset()
        outcomes = [s.receive() for s in sessions]
        return self._document(step, add_envelopes(self.coordinator, self.providers, outcomes))

    def _document(self, step: int, aggregate: bytes) -> dict[str, Any]:
        env, ciphertexts = unpack_aggregate(self.party, aggregate)
        return {
            "format": FL_ROUND_FORMAT,
            "scheme": "paillier",
            "key_fingerprint": self.party.fingerprint,
            "operator": "fl.logreg",
            "step": step,
            "kind": env.kind.removeprefix("fl.logreg."),
            "layout": {k: v for k, v in env.layout.items() if k != "addends"},
            "features": list(self.config.features),
            "rounds": self.config.rounds,
            "training": {
                "C": self.config.C,
                "early_stopping": self.config.early_stopping,
                "tol": self.config.tol,
                "patience": self.config.patience,
            },
            "dp": self.party.dp,
            "min_cohort": self.party.min_cohort,
            **ciphertexts,
        }

    def _standardisation(self, reply: Mapping[str, Any]) -> dict[str, Any]:
        d = len(self.config.features)
        try:
            n_total = float(reply["n_total"])
            if self.party.dp:  # scales from the declared bounds; only N̂ is the requester's
                if self.config.feature_bounds is not None:
                    m, s = bounds_standardisation(self.config.feature_bounds)
                    mean, scale = m.tolist(), s.tolist()
                else:
                    mean, scale = [0.0] * d, [1.0] * d
            else:
                mean = [float(v) for v in reply["mean"]]
                scale = [float(v) for v in reply["scale"]]
        except (KeyError, TypeError, ValueError):
            raise InvalidParameters("the requester's setup reply is malformed") from None
        if len(mean) != d or len(scale) != d:
            raise InvalidParameters("the requester's setup reply is malformed")
        return {"mean": mean, "scale": scale, "n_total": n_total}

    def _weights(self, reply: Mapping[str, Any]) -> list[float]:
        w = reply.get("weights")
        d = len(self.config.features) + 1
        if not isinstance(w, list) or len(w) != d:
            raise InvalidParameters(f"the requester's model must have {d} weights")
        try:
            out = [float(v) for v in w]
        except (TypeError, ValueError):
            raise InvalidParameters("the requester's model is not numeric") from None
        if not all(math.isfinite(v) for v in out):
            raise InvalidParameters("the requester's model is not finite")
        return out

    def run(self, exchange: Exchange) -> dict[str, Any]:
        """Every step; the result document (`FL_RESULT_FORMAT`). Raises refusals and failures."""
        self.sandbox.check()
        peers = [{**k, "index": i} for i, k in enumerate(self.mask_keys)]
        sessions: list[SandboxSession] = []
        try:
            init = self._init_params()
            for i, p in enumerate(self.providers):
                party_params = {**self.party.binding(), "index": i, "peers": peers}
                s = self.sandbox.open_session("fl.logreg", [p.path])
                sessions.append(s)
                s.send({**init, "party": party_params}, self.local_blobs(p, party_params))
            party_call = {**self.party.binding(), "index": 0, "peers": peers}
            doc = self._collect(sessions, 0)
            reply = exchange(0, doc)
            std = self._standardisation(reply)
            w = self._weights(reply)
            last_round = 0
            for r in range(self.config.rounds):
                params: dict[str, Any] = {"cmd": "round", "round": r, "weights": w,
                                          "job": self.party.public.params()}  # fmt: skip
                if r == 0:
                    params["standardisation"] = std
                for i, s in enumerate(sessions):
                    s.send({**params, "party": {**party_call, "index": i}})
                doc = self._collect(sessions, r + 1)
                last_round = r
                if r == self.config.rounds - 1:
                    break
                reply = exchange(r + 1, doc)
                if reply.get("stop") is True:
                    break
                w = self._weights(reply)
        finally:
            for s in sessions:
                s.close()
        if doc.get("kind") != "update":
            raise OperatorFailed("the job ended before its first round")
        return {
            "format": FL_RESULT_FORMAT,
            "operator": "fl.logreg",
            "key_fingerprint": self.party.fingerprint,
            "features": list(self.config.features),
            "label": self.config.label,
            "standardisation": std,
            "bounds": [list(b) for b in self.config.feature_bounds]
            if self.party.dp and self.config.feature_bounds is not None
            else None,
            "model_in": w,
            "rounds_run": last_round + 1,
            "dp": self.party.dp,
            "final": doc,
        }

"""Horizontal federated logistic regression (`fl.logreg`): FedAvg with CKKS-aggregated updates.

Protocol (one `FlJob`):

1. Standardisation: the feature means and standard deviations of the union of all
   providers' rows are computed by the secure statistics path (`stats.variance` over the
   feature columns: exact Paillier sums, coordinator adds ciphertexts, result party
   decrypts, cohort-checked) and broadcast to the nodes with the total row count N. Every
   node then standardises exactly as a central `StandardScaler` on the union would
   (population variance), which per-node standardisation could not do under label or
   feature skew. Means/variances are an aggregate disclosure to the nodes; they are not
   noised, also in DP mode (stated in the job's security model).
2. Each provider's node is one long-lived sandbox session (`node_logreg`) that loads its
   CSV once. Each round the nodes receive the global weights w, run `local_epochs` of
   full-batch gradient descent on their share of the global objective
   (1/N)·Σ logloss + 1/(2·C·N)·‖w‖² (sklearn's `LogisticRegression(C)` objective
   divided by N, bias unpenalised), and send Enc([ (n_k/N)·Δ_k, n_k/N, loss_k/N,
   correct_k/N ]) where Δ_k = w_k − w, under the job's CKKS public context
   (`CkksParams.COMPACT`). The loss and accuracy are those of the received global model
   on the node's rows: aggregated, they are the round's training metrics.
3. The coordinator adds the ciphertexts; the result party decrypts only the sum, which
   is the FedAvg update Σ (n_k/N)·Δ_k and the global metrics, and broadcasts the new w.
4. Early stopping: stop when the global objective improves by less than `tol`
   (relative) for `patience` consecutive rounds, or at `rounds`.
5. Differential privacy at record level (optional, `dp_epsilon`/`dp_delta` from the
   config or the release obligations; `sandbox._dp_fl` holds the arithmetic):
   - (ε, δ) is charged to every input dataset before any data is touched, and converted
     to the zCDP budget ρ it allows (`sandbox.accounting.rho_for`).
   - Standardisation comes from the provider-declared `feature_bounds` (values clipped
     into them, mapped onto [−1, 1]); without declared bounds the features are used as
     they are (mean 0, scale 1): per-example gradient clipping bounds every record's
     influence whatever its values, so DP holds either way, only accuracy suffers. No
     exact mean, scale or row count is computed for or released with the model.
   - The total row count N is released once as a discrete Gaussian count costing
     `count_share`·ρ (one record moves it by 1); cohort and shape use that noisy N̂, and
     the nodes use N̂/K as their public gradient denominator and 1/(C·N̂) as λ.
   - Each local step on each node is DP gradient descent on the node's own rows
     (DP-SGD with every row in every step): per-example gradients clipped to L2 norm
     `clip_norm` = C, summed, plus OpenDP Gaussian noise of scale z·C, divided by the
     public N̂/K. T = rounds × local_epochs steps cost T/(2z²) in zCDP; z is chosen so
     this is the rest of ρ (`dpsgd_noise_multiplier`; no subsampling amplification is
     claimed). Records sit on one node only: nodes compose in parallel. The noisy
     updates are then averaged (weight 1/K) under the same secure aggregation.
   - Per-round loss and accuracy are not collected (they would need their own
     budget), so early stopping is off and all `rounds` run.
6. The final model goes through the release gate (cohort on N, N̂ under DP; shape: fewer
   parameters than rows and at most `max_cells`; provider review when required).

`encrypted=False` replaces CKKS by plaintext aggregation (`unsafe-plain`): only for
measuring what encryption costs, never for real jobs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt

from sandbox import ckks
from sandbox._dp_fl import DpPlan, bounds_standardisation, dp_local_train, plan_dp
from sandbox._registry import ProviderInput
from sandbox.accounting import DEFAULT_DELTA
from sandbox.coordinator import (
    SECURITY_MODEL,
    Envelope,
    JobPublic,
    ProviderJob,
    ResultParty,
)
from sandbox.errors import InvalidParameters, OperatorFailed
from sandbox.fl_local import load_rows, local_train, logloss_sum
from sandbox.isolation import OperatorContext, Sandbox, SandboxSession
from sandbox.release import (
    Candidate,
    Release,
    ReleaseGate,
    ReleaseObligations,
    unique,
)
from sandbox.stats import StatsJob, StatsQuery

Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class FlConfig:
    """Hyper-parameters of one federated logistic regression."""

    features: tuple[str, ...]
    label: str = "target"
    rounds: int = 200
    local_epochs: int = 20
    learning_rate: float = 0.5
    C: float = 1.0
    early_stopping: bool = True
    tol: float = 1e-4
    patience: int = 5
    dp_epsilon: float | None = None
    dp_delta: float = DEFAULT_DELTA
    clip_norm: float = 1.0
    """Under DP: the L2 norm each example's gradient is clipped to."""
    feature_bounds: tuple[tuple[float, float], ...] | None = None
    """Provider-declared [lo, hi] per feature: under DP, the standardisation."""
    count_share: float = 0.02
    """Under DP: the share of ρ spent on the noisy row count."""
    encrypted: bool = True

    def __post_init__(self) -> None:
        if not self.features or len(set(self.features)) != len(self.features):
            raise InvalidParameters("features must be distinct and non-empty")
        if self.label in self.features:
            raise InvalidParameters("the label cannot be a feature")
        if self.rounds < 1 or self.local_epochs < 1 or self.patience < 1:
            raise InvalidParameters("rounds, local_epochs and patience must be positive")
        if not (self.learning_rate > 0 and self.C > 0 and self.clip_norm > 0):
            raise InvalidParameters("learning_rate, C and clip_norm must be positive")
        if len(self.features) + 4 > ckks.CkksParams.COMPACT.slots:
            raise InvalidParameters("too many features for one ciphertext")
        if self.feature_bounds is not None and (
            len(self.feature_bounds) != len(self.features)
            or not all(
                math.isfinite(lo) and math.isfinite(hi) and lo < hi
                for lo, hi in self.feature_bounds
            )
        ):
            raise InvalidParameters("feature_bounds needs one finite lo < hi per feature")
        if not 0 < self.count_share < 1:
            raise InvalidParameters("count_share must be in (0, 1)")


@dataclass(frozen=True)
class RoundMetrics:
    """One FedAvg round as the result party saw it (aggregates only)."""

    round: int
    loss: float | None
    """Global objective of the model sent out this round (None under DP)."""
    accuracy: float | None
    update_norm: float
    seconds: float


@dataclass(frozen=True)
class FlModel:
    """The trained model with the standardisation it expects and the training record."""

    features: tuple[str, ...]
    coef: tuple[float, ...]
    intercept: float
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    rows: int
    rounds: tuple[RoundMetrics, ...]
    stopped_early: bool
    encrypted: bool
    dp: dict[str, float] | None = None
    setup_seconds: float = 0.0
    bounds: tuple[tuple[float, float], ...] | None = None
    """Under DP: inputs are clipped into these declared bounds before standardising."""

    def decision_function(self, x: npt.ArrayLike) -> Array:
        x = np.asarray(x, dtype=np.float64)
        if self.bounds is not None:
            lo, hi = np.asarray(self.bounds).T
            x = np.clip(x, lo, hi)
        z = (x - np.asarray(self.mean)) / np.asarray(self.scale)
        out: Array = z @ np.asarray(self.coef) + self.intercept
        return out

    def predict(self, x: npt.ArrayLike) -> npt.NDArray[np.int64]:
        return (self.decision_function(x) > 0).astype(np.int64)

    def accuracy(self, x: npt.ArrayLike, y: npt.ArrayLike) -> float:
        return float(np.mean(self.predict(x) == np.asarray(y)))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- node side (runs inside the sandbox, one session per provider) ----------------------------


_COUNT_UNIT = 1024.0


def node_logreg(ctx: OperatorContext) -> bytes:
    """Vetted operator `fl.logreg`: `init` loads and standardises, `round` trains and seals."""
    if "party" in ctx.params:  # under the requester's own key (`sandbox.party_fl`)
        from sandbox.party_fl import node_party_logreg

        return node_party_logreg(ctx)
    cmd = ctx.params.get("cmd")
    st = ctx.state
    if cmd == "init":
        p = ctx.params
        x, y = load_rows(ctx, p["features"], p["label"])
        if p.get("bounds") is not None:
            lo, hi = np.asarray(p["bounds"], dtype=np.float64).T
            x = np.clip(x, lo, hi)
        mean, scale = np.asarray(p["mean"]), np.asarray(p["scale"])
        xb = np.hstack([(x - mean) / scale, np.ones((len(y), 1))])
        job = JobPublic.from_request(p["job"], ctx.blobs)
        st.update(
            xb=xb,
            y=y,
            job=job,
            n_total=float(p.get("n_total") or 0.0),
            nodes=int(p["nodes"]),
            lam=float(p.get("lam") or 0.0),
            lr=float(p["lr"]),
            epochs=int(p["epochs"]),
            dp=p.get("dp"),
        )
        if job.ckks_public:
            ctx_pub = ckks.load_public_context(job.ckks_public)
            # Offline phase: one encryption of zero per planned round (bounded), so a
            # round's encryption is an addition (`ckks.ZeroPool`).
            pool_size = min(int(p.get("rounds", 0)) + (st["dp"] is not None), 512)
            st["pool"] = ckks.ZeroPool(ctx_pub, xb.shape[1] + 3, pool_size)
        if st["dp"] is None:
            return b"ready"
        # Under DP the job has no row count yet: this node's goes back encrypted, to be
        # summed with the others' and noised by the result party (`FlJob._noisy_rows`).
        # Sent in units of _COUNT_UNIT rows so large counts stay inside CKKS's range.
        count = np.concatenate([[len(y) / _COUNT_UNIT], np.zeros(xb.shape[1] + 2)])
        return _seal(st, count, "count")
    if cmd != "round" or "xb" not in st:
        raise InvalidParameters("expected init, then round commands")
    xb, y = st["xb"], st["y"]
    w = np.asarray(ctx.params["weights"], dtype=np.float64)
    if w.shape != (xb.shape[1],):
        raise InvalidParameters("weights do not match the features")
    dp = st["dp"]
    if dp is None:
        loss, correct = logloss_sum(xb, y, w)
        delta = local_train(xb, y, w, st["lam"], st["lr"], st["epochs"]) - w
        weight = len(y) / st["n_total"]
        metrics = [loss / st["n_total"], correct / st["n_total"]]
    else:
        # Record-level DP-SGD on this node's rows; nothing exact about them leaves. λ and
        # the denominator N̂/K come from the noisy count, sent with every round.
        dp = dict(dp, denominator=float(ctx.params["denominator"]))
        w_local = dp_local_train(xb, y, w, float(ctx.params["lam"]), st["lr"], st["epochs"], dp)
        delta = w_local - w
        weight = 1.0 / st["nodes"]
        metrics = [0.0, 0.0]
    payload = np.concatenate([weight * delta, [weight], metrics])
    return _seal(st, payload, "update")


def _seal(st: dict[str, Any], payload: Array, kind: str) -> bytes:
    """Encrypt one node's vector under the job key (plain bytes for `unsafe-plain`)."""
    pub: JobPublic = st["job"]
    d = len(payload) - 3
    layout = {"d": d, "fields": ["weighted_update", "weight", "loss", "correct"]}
    if kind == "count":
        layout = {"d": d, "fields": ["rows"]}
    if pub.scheme == "ckks":
        ckks.check_range(payload, ckks.CkksParams.COMPACT, addends=st["nodes"])
        body = st["pool"].encrypt(payload).to_bytes()
    else:
        body = payload.astype("<f8").tobytes()
    return Envelope(pub.job_id, pub.scheme, f"fl.logreg.{kind}", layout, body).to_bytes()


# -- the job ----------------------------------------------------------------------------------


def gaussian_sigma(clip: float, epsilon: float, delta: float) -> float:
    """σ of the classic (ε, δ) Gaussian mechanism, ε < 1 (Dwork & Roth, Thm A.1).

    Kept for callers; the FL job itself calibrates with the zCDP accountant.
    """
    return clip * math.sqrt(2.0 * math.log(1.25 / delta)) / epsilon


class FlJob(ProviderJob):
    """A federated logistic regression over several providers; `run()` does every step."""

    def __init__(
        self,
        config: FlConfig,
        providers: Sequence[ProviderInput],
        *,
        sandbox: Sandbox | None = None,
        job_id: str | None = None,
    ) -> None:
        if len(providers) < 2:
            raise InvalidParameters("federated learning needs at least two providers")
        self.config = config
        super().__init__(
            providers,
            sandbox,
            lambda: ResultParty(
                "ckks" if config.encrypted else "unsafe-plain",
                job_id=job_id,
                ckks_params=ckks.CkksParams.COMPACT,
            ),
        )
        self.standardisation: StatsJob | None = None

    def _standardise(
        self, gate: ReleaseGate, obligations: ReleaseObligations
    ) -> tuple[Array, Array, int]:
        query = StatsQuery("stats.variance", self.config.features)
        job = StatsJob(query, self.providers, sandbox=self.sandbox)
        self.standardisation = job
        agg = job.decrypt(job.aggregate(job.compute_partials()))
        fields, values = query.fields(), agg.values
        got = dict(zip(fields, values, strict=True))
        n = int(got["rows"])
        gate.check_cohort(n, obligations)
        unit = Fraction(10**query.decimals)
        means, scales = [], []
        for c in self.config.features:
            if int(got[f"n:{c}"]) != n:
                raise InvalidParameters("features must not have missing values")
            # Exact: population variance = Q/n − (S/n)², as StandardScaler computes it.
            mean = Fraction(int(got[f"sum:{c}"])) / unit / n
            var = Fraction(int(got[f"sumsq:{c}"])) / unit**2 / n - mean * mean
            means.append(float(mean))
            scales.append(math.sqrt(var) if var > 0 else 1.0)
        return np.asarray(means), np.asarray(scales), n

    def run(self, gate: ReleaseGate, obligations: ReleaseObligations) -> Release[FlModel]:
        """Standardise, train, release. Raises the gate's refusals and sandbox failures."""
        cfg = self.config
        datasets = unique(p.dataset_id for p in self.providers)
        eps = obligations.dp_epsilon if obligations.dp_epsilon is not None else cfg.dp_epsilon
        delta = obligations.dp_delta or cfg.dp_delta
        plan: DpPlan | None = None
        if eps is not None:
            plan = plan_dp(
                eps,
                delta,
                rounds=cfg.rounds,
                local_epochs=cfg.local_epochs,
                clip=cfg.clip_norm,
                count_share=cfg.count_share,
            )
            # Charged before any data is touched: a refusal costs the providers nothing.
            gate.budget.charge(datasets, eps, delta, self.job_id)
        self.sandbox.check()
        t0 = time.perf_counter()
        if plan is None:
            mean, scale, n_total = self._standardise(gate, obligations)
        else:
            mean, scale = (
                bounds_standardisation(cfg.feature_bounds)
                if cfg.feature_bounds is not None
                else (np.zeros(len(cfg.features)), np.ones(len(cfg.features)))
            )
            n_total = 0  # N̂ comes from the nodes' encrypted counts after init
        d = len(cfg.features) + 1
        pub = self.result_party.public
        init = {
            "cmd": "init",
            "features": list(cfg.features),
            "label": cfg.label,
            "mean": mean.tolist(),
            "scale": scale.tolist(),
            "n_total": n_total,
            "nodes": len(self.providers),
            "lam": 1.0 / (cfg.C * n_total) if plan is None else None,
            "lr": cfg.learning_rate,
            "epochs": cfg.local_epochs,
            "rounds": cfg.rounds,
            "dp": None,
            "job": pub.params(),
        }
        if plan is not None:
            if cfg.feature_bounds is not None:
                init["bounds"] = [list(b) for b in cfg.feature_bounds]
            init["dp"] = {"sigma": plan.sigma, "clip": plan.clip}
        sessions: list[SandboxSession] = []
        try:
            for p in self.providers:
                sessions.append(self.sandbox.open_session("fl.logreg", [p.path]))
            for s in sessions:
                s.send(init, pub.blobs())
            counts = [s.receive().unwrap() for s in sessions]
            if plan is not None:
                n_total = self._noisy_rows(gate, obligations, plan, counts)
            setup = time.perf_counter() - t0
            w, history, stopped = self._train(sessions, d, n_total, plan is not None)
        finally:
            for s in sessions:
                s.close()
        model = FlModel(
            features=cfg.features,
            coef=tuple(float(v) for v in w[:-1]),
            intercept=float(w[-1]),
            mean=tuple(float(v) for v in mean),
            scale=tuple(float(v) for v in scale),
            rows=n_total,
            rounds=tuple(history),
            stopped_early=stopped,
            encrypted=cfg.encrypted,
            dp=plan.as_dict() if plan else None,
            setup_seconds=setup,
            bounds=cfg.feature_bounds if plan else None,
        )
        return gate.release_model(
            Candidate.model("fl.logreg", "*", n_total, w, self.providers),
            obligations,
            self.job_id,
            model,
            epsilon_spent=eps,
            security_model=SECURITY_MODEL.as_dict(),
        )

    def _noisy_rows(
        self,
        gate: ReleaseGate,
        obligations: ReleaseObligations,
        plan: DpPlan,
        envelopes: Sequence[bytes],
    ) -> int:
        """N̂: the nodes' summed row counts plus discrete Gaussian noise (ρ = count_rho).

        Only the sum is decrypted, inside this method; cohort and shape are decided on
        N̂, and nothing else about the exact count leaves.
        """
        self.coordinator.reset()
        for provider, data in zip(self.providers, envelopes, strict=True):
            self.coordinator.submit(provider.provider_id, data)
        agg = self.result_party.decrypt(self.coordinator.aggregate())
        if agg.layout.get("fields") != ["rows"]:
            raise OperatorFailed("expected the nodes' row counts")
        exact = round(float(np.asarray(agg.values, dtype=np.float64)[0]) * _COUNT_UNIT)
        noisy = max(int(gate.noise.gaussian([exact], plan.count_sigma)[0]), 0)
        gate.check_cohort(noisy, obligations)
        return noisy

    def _train(
        self, sessions: Sequence[SandboxSession], d: int, n_total: int, private: bool
    ) -> tuple[Array, list[RoundMetrics], bool]:
        cfg = self.config
        w = np.zeros(d)
        history: list[RoundMetrics] = []
        best, stale, stopped = math.inf, 0, False
        lam = 1.0 / (cfg.C * n_total)
        for r in range(cfg.rounds):
            start = time.perf_counter()
            params: dict[str, Any] = {"cmd": "round", "round": r, "weights": w.tolist()}
            if private:  # public values derived from N̂ only
                params |= {"lam": lam, "denominator": n_total / len(sessions)}
            for s in sessions:
                s.send(params)
            self.coordinator.reset()
            for provider, s in zip(self.providers, sessions, strict=True):
                out = s.receive()
                if not out.ok:
                    out.unwrap()
                self.coordinator.submit(provider.provider_id, out.output)
            agg = self.result_party.decrypt(self.coordinator.aggregate())
            v = np.asarray(agg.values, dtype=np.float64)
            weight = float(v[d])
            if not weight > 0:
                raise OperatorFailed("aggregate update has no weight")
            update = v[:d] / weight
            loss = acc = None
            if not private:
                loss = float(v[d + 1]) + 0.5 * lam * float(w[:-1] @ w[:-1])
                acc = float(v[d + 2])
            w = w + update
            seconds = time.perf_counter() - start
            history.append(RoundMetrics(r, loss, acc, float(np.linalg.norm(update)), seconds))
            if cfg.early_stopping and not private and loss is not None:
                if loss < best * (1.0 - cfg.tol):
                    best, stale = loss, 0
                else:
                    stale += 1
                    if stale >= cfg.patience:
                        stopped = True
                        break
        return w, history, stopped


def run_fl_logreg(
    config: FlConfig,
    providers: Sequence[ProviderInput],
    *,
    gate: ReleaseGate,
    obligations: ReleaseObligations,
    sandbox: Sandbox | None = None,
    job_id: str | None = None,
) -> Release[FlModel]:
    """Train `fl.logreg` over the providers' CSV files and pass the model through the gate."""
    return FlJob(config, providers, sandbox=sandbox, job_id=job_id).run(gate, obligations)

"""Federated learning (`fl.logreg`) under a requester-held key: the requester closes each round.

The protocol of one FedAvg job when the requester sent a `job_key` (docs/privacy.md,
"Federated learning under your own key"):

1. Keys, as for statistics (`sandbox.party_stats`): the requester's SDK made a Paillier
   key pair and sent only n; each provider's node makes an X25519 mask key for the job,
   signed with its party key, and checks its peers' (`sandbox.mask_signing`).
2. Setup (step 0, `init`): each node loads its rows once into a long-lived sandbox
   session, refuses when its *own* row count is below the minimum cohort, draws a secret
   256-bit challenge c_k, and sends Enc(masked [n_k, Σx, Σx², c_k in its own slots])
   (fixed point) or, under DP, Enc(masked [n_k + a discrete Gaussian share of the noisy
   count, c_k]). The coordinator adds the envelopes.
3. The requester's SDK fetches the encrypted aggregate, decrypts it, checks every node's
   signed mask key against the party keys it pins, and posts the standardisation (means,
   scales and N; under DP only N̂, the scales come from the declared bounds) and the first
   global model *sealed for each node* (`seal_message`, below). The platform forwards
   ciphertexts it cannot open.
4. Each round r: each node opens its sealed model (refusing anything else), trains
   `local_epochs` from it on its rows
   (exact gradient descent, or record-level DP-SGD with the noise multiplier the node
   derives itself from the ε and δ its provider approved), and sends
   Enc(masked fixed-point [(n_k/N)·Δ_k, n_k/N, loss_k/N, correct_k/N]) (weights 1/K and no
   metrics under DP). The coordinator adds; the SDK decrypts the sum, which is the
   FedAvg update, and posts the next global model (or stops).
5. The last round's encrypted aggregate, with the last global model the requester posted
   and the standardisation, is the job's result: the SDK adds the update itself, so the
   final model is never on the platform.

Masks are derived per step from the pairwise seeds (`step_seeds`) and a node sends each
step at most once, so no two envelopes share a mask.

Sealed models. The model for round r travels to node k as AES-256-GCM under
`crypto.relay.fl_model_key(X25519(e, N_k), salt c_k)`, nonce r: N_k is the node's X25519
mask key, signed with its provider's party key (`sandbox.mask_signing`), e the requester's
ephemeral key, c_k the node's challenge, which only the requester's Paillier key opens.
The platform cannot read a model (it lacks e and N_k's private half, so the requester must
check N_k's signature: `pdx_client.flseal`), and cannot make one the node accepts (it
lacks c_k, whose key is the one the node's provider approved). The requester also seals
each model for itself under its Paillier key: the result carries that copy, never the
model (see `SECURITY_MODEL`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from crypto.errors import CryptoError
from crypto.relay import fl_model_key, open_relay
from sandbox._dp_fl import bounds_standardisation, dp_local_train, plan_dp
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
from sandbox.isolation import OperatorContext, SandboxSession
from sandbox.masks import apply_masks
from sandbox.noise_shares import tolerated
from sandbox.party_stats import (
    ADVERSARY,
    REQUESTER_HOLDS_KEY,
    PartyRun,
    add_envelopes,
    unpack_aggregate,
)

__all__ = [
    "CHALLENGE_WORDS",
    "FL_RESULT_FORMAT",
    "FL_ROUND_FORMAT",
    "FL_SEALED_FORMAT",
    "ROUNDS_SUMMARY",
    "SECURITY_MODEL",
    "PartyFlJob",
    "model_aad",
    "model_context",
    "node_party_logreg",
    "step_seeds",
]

FL_ROUND_FORMAT = "pdx-fl-round/1"
"""One step's encrypted aggregate, as the requester fetches it (`pdx_client.fl`)."""
FL_RESULT_FORMAT = "pdx-fl-result/1"
"""The job's result: the last step's aggregate and the requester's sealed copy of its model
(`model_in`, an object; `pdx_client.jobkeys` dispatches on this tag)."""
FL_SEALED_FORMAT = "pdx-fl-sealed/1"
"""A requester's reply: the model sealed for each node and for itself (`pdx_client.flseal`)."""
CHALLENGE_WORDS = 8
"""A node's challenge c_k: 8 words of 32 bits in its own slots of the setup aggregate."""
CHALLENGE_BITS = 32
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
        "the requester's SDK seals every global model and the standardisation for each node "
        "(X25519 with the node's mask key, HKDF salted with the node's challenge, AES-256-GCM); "
        "it checks each node's mask key against the party key it pins for that provider "
        "(PDX_TRUSTED_PARTIES) and refuses a node whose key does not verify; with no pinned "
        "keys it seals to the relayed keys and warns (see not_protected)",
        "a node opens only a model sealed under its challenge, which travelled under the "
        "requester's Paillier key (the fingerprint its provider approved), and refuses an "
        "unsealed, altered, replayed or substituted model",
        "Paillier (>= 2048-bit n) is IND-CPA",
    ),
    parties=(
        PartyView(
            role="provider node",
            holds=("its own dataset", "the job public key", "its X25519 mask key for the job"),
            sees=(
                "its own rows and updates",
                "the standardisation and every global model the requester seals for it",
            ),
        ),
        PartyView(
            role="platform (coordinator)",
            holds=("the job public key", "the relayed mask public keys", "ciphertexts"),
            sees=(
                "ciphertexts only: no provider's update, no aggregate update, no global "
                "model, no standardisation (each travels sealed for the nodes' sandboxes)",
                "how many rounds ran, when the requester stopped, the sizes of the sealed "
                "messages, and a provider's refusal below the cohort minimum",
                "under DP, the declared feature bounds (public parameters)",
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
        "a requester with no pinned party keys (or a node without a party key, e.g. an "
        "embedded node or platform custody, where the platform is the node) seals to keys "
        "the platform relays: a platform that records sees nothing, but one that substitutes "
        "a node's key and forges the setup aggregate can read the first model sealed to it "
        "(with the standardisation); that node then refuses it and the job fails",
        "the requester chooses the global models; without DP, chosen models can reveal "
        "more about the union's rows than the final model alone (as for any FedAvg "
        "server); under DP every update is DP whatever the model",
        "a requester colluding with the platform and one provider's mask peers can read "
        "that provider's update",
        "providers submitting false data, and which providers participated",
    ),
)
"""The threat model of `fl.logreg` under a requester-held key (`security_model.threat_model`)."""

ROUNDS_SUMMARY = (
    "the requester's SDK decrypts each round's aggregate and posts the next global model "
    "sealed for each provider's node (and for itself); the platform relays ciphertexts "
    "only and sees no global model, standardisation or provider's update, only how many "
    "rounds ran; the requester checks each node's key against the party keys it pins, and "
    "without them the sealing holds against a platform that records but not one that "
    "substitutes keys (sandbox.party_fl)"
)
"""The job's `security_model.rounds` (`exchange.computations.job_keys.store_job_key`)."""


def model_context(job_id: str, fingerprint: str, index: int) -> bytes:
    """What node `index`'s model key is bound to (`fl_model_key`'s context)."""
    return f"{job_id}:{fingerprint}:{index}".encode()


def model_aad(job_id: str, index: int, round_: int) -> bytes:
    """The associated data of round `round_`'s model for node `index` (its nonce is the round)."""
    return f"pdx:fl:model:{job_id}:{index}:{round_}".encode()


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
        bounds = None
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
                bounds = [(float(lo), float(hi)) for lo, hi in p["bounds"]]
                lo, hi = np.asarray(bounds, dtype=np.float64).T
                x = np.clip(x, lo, hi)
        index = int(party["index"])
        private = ctx.blobs.get("seal_private")  # the node's X25519 key (`mask_blobs`)
        challenge = os.urandom(CHALLENGE_WORDS * CHALLENGE_BITS // 8)
        st.update(x=x, y=y, job=job, index=index, seeds=seeds, nodes=nodes,
                  rounds=rounds, lr=float(p["lr"]), epochs=int(p["epochs"]), C=float(p["C"]),
                  plan=plan, sent=set(), bounds=bounds, fingerprint=str(party["fingerprint"]),
                  private=private, challenge=challenge)  # fmt: skip
        words = _challenge_slots(st["challenge"], index, nodes)
        if plan is not None:
            share = plan.count_sigma / math.sqrt(nodes - tolerated(nodes))
            noisy = OpenDPNoise().gaussian([len(y)], share)
            layout = {"fields": ["rows", "challenge"], "d": x.shape[1], **_challenge_layout(1)}
            return _seal(st, 0, "count", layout, [*(int(v) for v in noisy), *words])
        moments = [*np.sum(x, axis=0).tolist(), *np.sum(x * x, axis=0).tolist()]
        values = [len(y), *_fixed(moments, MOMENT_BITS)]
        layout = {"fields": ["rows", "sum", "sumsq", "challenge"], "d": x.shape[1],
                  "fixed_bits": MOMENT_BITS, **_challenge_layout(len(values))}  # fmt: skip
        return _seal(st, 0, "moments", layout, [*values, *words])
    if cmd != "round" or "x" not in st:
        raise InvalidParameters("expected init, then round commands")
    r = int(p["round"])
    if not 0 <= r < st["rounds"]:
        raise InvalidParameters("round outside the job's declared rounds")
    model = _open_model(st, r, p.get("sealed"))
    if "xb" not in st:
        _standardise(st, model.get("standardisation"))
    xb, y, n_total = st["xb"], st["y"], st["n_total"]
    try:
        w = np.asarray(model["weights"], dtype=np.float64)
    except (KeyError, TypeError, ValueError):
        raise InvalidParameters("the requester's model has no weights") from None
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


def _challenge_layout(offset: int) -> dict[str, Any]:
    return {"challenge": {"offset": offset, "words": CHALLENGE_WORDS, "bits": CHALLENGE_BITS}}


def _challenge_slots(challenge: bytes, index: int, nodes: int) -> list[int]:
    """Node `index`'s challenge in its own words of the setup vector, zeros elsewhere."""
    width = CHALLENGE_BITS // 8
    own = [int.from_bytes(challenge[i : i + width], "big") for i in range(0, len(challenge), width)]
    out = [0] * (CHALLENGE_WORDS * nodes)
    out[index * CHALLENGE_WORDS : (index + 1) * CHALLENGE_WORDS] = own
    return out


def _open_model(st: dict[str, Any], r: int, sealed: Any) -> dict[str, Any]:
    """Round r's global model, sealed by the requester for this node; refuses anything else."""
    if not isinstance(sealed, Mapping):
        raise InvalidParameters("the global model must come sealed by the requester")
    if st.get("private") is None:
        raise InvalidParameters("this node holds no key to open the requester's sealed model")
    job_id, index = st["job"].job_id, st["index"]
    try:
        requester = bytes.fromhex(str(sealed["requester"]))
        blob = base64.b64decode(str(sealed["model"]), validate=True)
        key = fl_model_key(
            st["private"], requester, st["challenge"],
            model_context(job_id, st["fingerprint"], index),
        )  # fmt: skip
        plain = open_relay(key, r, model_aad(job_id, index, r), blob)
        model = json.loads(plain)
    except (KeyError, ValueError, binascii.Error):
        raise InvalidParameters("malformed sealed model") from None
    except CryptoError:
        raise InvalidParameters(
            "the global model failed authentication: it was not sealed by the requester "
            "for this node and round"
        ) from None
    if not isinstance(model, dict):
        raise InvalidParameters("malformed sealed model")
    return model


def _standardise(st: dict[str, Any], std: Any) -> None:
    """The first round's standardisation (under DP only N̂: the scales are the bounds')."""
    if not isinstance(std, Mapping):
        raise InvalidParameters("the first round carries the standardisation")
    d = st["x"].shape[1]
    try:
        n_total = float(std["n_total"])
        if st["plan"] is not None:
            if st["bounds"] is not None:
                mean, scale = bounds_standardisation(st["bounds"])
            else:
                mean, scale = np.zeros(d), np.ones(d)
        else:
            mean = np.asarray(std["mean"], dtype=np.float64)
            scale = np.asarray(std["scale"], dtype=np.float64)
    except (KeyError, TypeError, ValueError):
        raise InvalidParameters("malformed standardisation") from None
    if mean.shape != (d,) or scale.shape != (d,) or not np.all(scale > 0):
        raise InvalidParameters("malformed standardisation")
    if not (n_total >= 1 and math.isfinite(n_total)):
        raise InvalidParameters("malformed row count")
    st["xb"] = np.hstack([(st["x"] - mean) / scale, np.ones((len(st["y"]), 1))])
    st["n_total"] = n_total


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

    def __init__(self, config: Any, run: PartyRun) -> None:
        if len(run.providers) < 2:
            raise InvalidParameters("federated learning needs at least two providers")
        self.config = config
        self.providers = tuple(run.providers)
        self.party = run.party
        self.sandbox = run.sandbox
        self.mask_keys = list(run.mask_keys)
        self.local_blobs = run.local_blobs
        self.coordinator = Coordinator(run.party.public)
        self.peers: list[dict[str, Any]] = []

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
            "seal": {"job_id": self.party.job_id, "nodes": self.peers},
            **ciphertexts,
        }

    def _public_standardisation(self) -> dict[str, Any] | None:
        """Under DP the means and scales come from the declared bounds (public parameters)."""
        if not self.party.dp:
            return None
        d = len(self.config.features)
        if self.config.feature_bounds is None:
            return {"mean": [0.0] * d, "scale": [1.0] * d}
        m, s = bounds_standardisation(self.config.feature_bounds)
        return {"mean": m.tolist(), "scale": s.tolist()}

    def _sealed(self, reply: Mapping[str, Any]) -> dict[str, Any]:
        """The requester's sealed reply, checked for shape only (the platform cannot open it)."""
        sealed = reply.get("sealed")
        ok = (
            isinstance(sealed, Mapping)
            and sealed.get("format") == FL_SEALED_FORMAT
            and isinstance(sealed.get("requester_key"), str)
            and len(sealed["requester_key"]) == 64
            and isinstance(sealed.get("nodes"), list)
            and len(sealed["nodes"]) == len(self.providers)
            and all(isinstance(m, str) for m in sealed["nodes"])
            and isinstance(sealed.get("requester"), Mapping)
        )
        if not ok:
            raise InvalidParameters("the requester's reply is not a model sealed for each node")
        assert isinstance(sealed, Mapping)
        return dict(sealed)

    def run(self, exchange: Exchange) -> dict[str, Any]:
        """Every step; the result document (`FL_RESULT_FORMAT`). Raises refusals and failures."""
        self.sandbox.check()
        peers = [{**k, "index": i} for i, k in enumerate(self.mask_keys)]
        self.peers = peers
        sessions: list[SandboxSession] = []
        try:
            init = self._init_params()
            for i, p in enumerate(self.providers):
                party_params = {**self.party.binding(), "index": i, "peers": peers, "seal": True}
                s = self.sandbox.open_session("fl.logreg", [p.path])
                sessions.append(s)
                s.send({**init, "party": party_params}, self.local_blobs(p, party_params))
            party_call = {**self.party.binding(), "index": 0, "peers": peers}
            doc = self._collect(sessions, 0)
            reply = exchange(0, doc)
            if reply.get("stop") is True:
                raise OperatorFailed("the requester stopped the job at its setup")
            sealed = self._sealed(reply)
            last_round = 0
            for r in range(self.config.rounds):
                own = sealed["requester"]  # the requester's copy of the model round r starts from
                params: dict[str, Any] = {"cmd": "round", "round": r,
                                          "job": self.party.public.params()}  # fmt: skip
                for i, s in enumerate(sessions):
                    model = {"requester": sealed["requester_key"], "model": sealed["nodes"][i]}
                    s.send({**params, "sealed": model, "party": {**party_call, "index": i}})
                doc = self._collect(sessions, r + 1)
                last_round = r
                if r == self.config.rounds - 1:
                    break
                reply = exchange(r + 1, doc)
                if reply.get("stop") is True:
                    break
                sealed = self._sealed(reply)
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
            "standardisation": self._public_standardisation(),
            "bounds": [list(b) for b in self.config.feature_bounds]
            if self.party.dp and self.config.feature_bounds is not None
            else None,
            "model_in": own,
            "rounds_run": last_round + 1,
            "dp": self.party.dp,
            "final": doc,
        }

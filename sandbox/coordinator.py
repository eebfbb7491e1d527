"""Job keys, the ciphertext-only coordinator, the decrypting result party, the security model.

One computation has three kinds of participant:

* provider nodes run a vetted operator on their own data in a sandbox and emit one
  `Envelope` (encrypted partial aggregate or model update) under the job's public key;
* the `Coordinator` holds only public material (`JobPublic`) and adds envelopes;
* the `ResultParty` created the job keys, holds the secret keys, decrypts only the
  aggregate and hands it to the release gate (`sandbox.release`).

`SECURITY_MODEL` states what each of them sees, as data a job can display.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from sandbox import ckks, paillier
from sandbox._registry import ProviderInput, default_sandbox
from sandbox.errors import HomomorphicMismatch, InvalidParameters
from sandbox.isolation import Sandbox

Scheme = Literal["paillier-packed", "ckks", "unsafe-plain"]
"""`unsafe-plain` adds plaintext vectors: only for measuring encryption overhead."""

_MAGIC = b"PDXENV1\n"


# -- the security model ---------------------------------------------------------------------


@dataclass(frozen=True)
class PartyView:
    """What one role holds and what it can learn."""

    role: str
    holds: tuple[str, ...]
    sees: tuple[str, ...]


@dataclass(frozen=True)
class SecurityModel:
    """The threat model a job runs under, as displayable data."""

    adversary: str
    assumptions: tuple[str, ...]
    parties: tuple[PartyView, ...]
    not_protected: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


SECURITY_MODEL = SecurityModel(
    adversary="semi-honest (honest-but-curious): every party follows the protocol but may "
    "try to learn more from what it receives",
    assumptions=(
        "the coordinator and the result party do not collude (together they could decrypt "
        "each provider's partial)",
        "the result party is the release gate's host: it decrypts only the aggregate and "
        "nothing reaches the requester except what the gate releases",
        "providers' nodes run only vetted operators, isolated (no network, read-only "
        "inputs, scratch-only writes, CPU/memory/time limits)",
        "Paillier (2048-bit n; DCR and DJN short-exponent assumptions) and CKKS (TenSEAL/SEAL, "
        "128-bit parameter sets) are semantically secure under chosen-plaintext attack",
    ),
    parties=(
        PartyView(
            role="provider node",
            holds=("its own dataset", "the job public key"),
            sees=(
                "its own rows and partial",
                "for federated learning: the global model broadcast each round and the "
                "federated feature means/standard deviations",
            ),
        ),
        PartyView(
            role="coordinator",
            holds=("the job public key / public CKKS context (no secret key)",),
            sees=(
                "ciphertexts only",
                "the public layout of the partials (statistic, columns, declared groups, bins; "
                "identical for every node, derived from the query, not the data)",
                "how many providers took part and the (fixed) size of each envelope",
            ),
        ),
        PartyView(
            role="result party",
            holds=("the job secret keys (Paillier private key, CKKS secret context)",),
            sees=("the decrypted aggregate over all providers, never one provider's partial",),
        ),
        PartyView(
            role="requester",
            holds=(),
            sees=(
                "only the released output: cohort-checked, small cells suppressed, DP noise "
                "when the obligations ask for it, after provider review when required",
            ),
        ),
    ),
    not_protected=(
        "malicious providers submitting false data (poisoning) or malformed ciphertexts "
        "beyond structural checks",
        "collusion between coordinator and result party",
        "which providers participated and the total record count passed to the gate",
        "floating-point side channels of the Laplace sampler (Mironov 2012)",
    ),
)


# -- job public material and envelopes --------------------------------------------------------


@dataclass(frozen=True)
class JobPublic:
    """Everything a node or the coordinator needs about a job's keys: public only."""

    job_id: str
    scheme: Scheme
    paillier_n: int | None = None
    packing: paillier.Packing = field(default_factory=paillier.Packing)
    ckks_public: bytes | None = None

    def params(self) -> dict[str, Any]:
        """JSON-safe part (the CKKS context travels as a blob: `blobs()`)."""
        return {
            "job_id": self.job_id,
            "scheme": self.scheme,
            "paillier_n": format(self.paillier_n, "x") if self.paillier_n else None,
            "slot_bits": self.packing.slot_bits,
            "headroom_bits": self.packing.headroom_bits,
        }

    def blobs(self) -> dict[str, bytes]:
        return {"ckks_public": self.ckks_public} if self.ckks_public else {}

    @classmethod
    def from_request(cls, params: dict[str, Any], blobs: dict[str, bytes]) -> JobPublic:
        n = params.get("paillier_n")
        return cls(
            job_id=str(params["job_id"]),
            scheme=params["scheme"],
            paillier_n=int(n, 16) if n else None,
            packing=paillier.Packing(int(params["slot_bits"]), int(params["headroom_bits"])),
            ckks_public=blobs.get("ckks_public"),
        )


@dataclass(frozen=True)
class Envelope:
    """One encrypted partial as it travels node → coordinator → result party.

    `layout` is public and must be identical across nodes; `payload` is the serialised
    `PackedVector`, `CkksVector` or (unsafe-plain) float64 array.
    """

    job_id: str
    scheme: Scheme
    kind: str
    layout: dict[str, Any]
    payload: bytes

    def to_bytes(self) -> bytes:
        header = {
            "job_id": self.job_id,
            "scheme": self.scheme,
            "kind": self.kind,
            "layout": self.layout,
        }
        return _MAGIC + json.dumps(header, separators=(",", ":")).encode() + b"\n" + self.payload

    @classmethod
    def from_bytes(cls, data: bytes) -> Envelope:
        if not data.startswith(_MAGIC):
            raise HomomorphicMismatch("not a pdx envelope")
        head, sep, payload = data[len(_MAGIC) :].partition(b"\n")
        try:
            h = json.loads(head) if sep else {}
            env = cls(str(h["job_id"]), h["scheme"], str(h["kind"]), dict(h["layout"]), payload)
        except (ValueError, KeyError, TypeError):
            raise HomomorphicMismatch("malformed envelope header") from None
        if env.scheme not in ("paillier-packed", "ckks", "unsafe-plain"):
            raise HomomorphicMismatch("unknown envelope scheme")
        return env


def seal_vector(job: JobPublic, kind: str, layout: dict[str, Any], values: Any) -> Envelope:
    """Encrypt a node's partial vector under the job key (integers for Paillier)."""
    if job.scheme == "paillier-packed":
        if job.paillier_n is None:
            raise InvalidParameters("job has no Paillier key")
        enc = paillier.FastEncryptor(paillier.public_key_from_n(job.paillier_n))
        payload = enc.encrypt_packed([int(v) for v in values], job.packing).to_bytes()
    elif job.scheme == "ckks":
        if job.ckks_public is None:
            raise InvalidParameters("job has no CKKS context")
        ctx = ckks.load_public_context(job.ckks_public)
        payload = ckks.CkksVector.encrypt(ctx, np.asarray(values, dtype=np.float64)).to_bytes()
    else:
        payload = np.asarray(values, dtype="<f8").tobytes()
    return Envelope(job.job_id, job.scheme, kind, layout, payload)


# -- coordinator ------------------------------------------------------------------------------


class Coordinator:
    """Adds encrypted partials; holds no secret key and never sees a plaintext partial.

    Every byte string passed to it is kept in `received` (in order, with the submitting
    party), so an auditor or a test can inspect exactly what the coordinator was given.
    """

    def __init__(self, job: JobPublic) -> None:
        self.job = job
        self.received: list[tuple[str, bytes]] = []
        self._ckks_ctx: Any = (
            ckks.load_public_context(job.ckks_public) if job.ckks_public is not None else None
        )
        self._kind: str | None = None
        self._layout: dict[str, Any] | None = None
        self._sum: Any = None
        self._parties: list[str] = []

    def reset(self) -> None:
        """Start a new aggregation (next federated round); `received` is kept."""
        self._kind, self._layout, self._sum, self._parties = None, None, None, []

    def submit(self, party: str, data: bytes) -> None:
        """Accept one node's envelope and add it to the running sum."""
        self.received.append((party, bytes(data)))
        if party in self._parties:
            raise HomomorphicMismatch("party already submitted to this aggregation")
        env = Envelope.from_bytes(data)
        if env.job_id != self.job.job_id or env.scheme != self.job.scheme:
            raise HomomorphicMismatch("envelope belongs to another job or scheme")
        if self._layout is None:
            self._kind, self._layout = env.kind, env.layout
        elif (env.kind, env.layout) != (self._kind, self._layout):
            raise HomomorphicMismatch("envelope layout differs from the other nodes'")
        vec = self._parse(env.payload)
        self._sum = vec if self._sum is None else self._sum + vec
        self._parties.append(party)

    def _parse(self, payload: bytes) -> Any:
        if self.job.scheme == "paillier-packed":
            return paillier.PackedVector.from_bytes(payload, expect_n=self.job.paillier_n)
        if self.job.scheme == "ckks":
            return ckks.CkksVector.from_bytes(self._ckks_ctx, payload)
        if len(payload) % 8:
            raise HomomorphicMismatch("malformed plain vector")
        return _PlainSum(np.frombuffer(payload, dtype="<f8").copy(), 1)

    @property
    def parties(self) -> tuple[str, ...]:
        return tuple(self._parties)

    def aggregate(self) -> bytes:
        """The envelope of the sum of everything submitted since the last `reset`."""
        if self._sum is None or self._layout is None or self._kind is None:
            raise HomomorphicMismatch("nothing to aggregate")
        if isinstance(self._sum, _PlainSum):
            payload = self._sum.values.astype("<f8").tobytes()
        else:
            payload = self._sum.to_bytes()
        layout = dict(self._layout, addends=len(self._parties))
        return Envelope(self.job.job_id, self.job.scheme, self._kind, layout, payload).to_bytes()


@dataclass
class _PlainSum:
    values: Any
    addends: int

    def __add__(self, other: _PlainSum) -> _PlainSum:
        if self.values.shape != other.values.shape:
            raise HomomorphicMismatch("plain vectors differ in length")
        return _PlainSum(self.values + other.values, self.addends + other.addends)


# -- result party -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Decrypted:
    """A decrypted aggregate: the layout and the summed vector (ints for Paillier)."""

    kind: str
    layout: dict[str, Any]
    values: Sequence[int] | Any
    addends: int


class ResultParty:
    """Creates a job's keys, keeps the secret ones, decrypts only aggregates."""

    def __init__(
        self,
        scheme: Scheme,
        *,
        job_id: str | None = None,
        paillier_bits: int = paillier.KEY_BITS,
        packing: paillier.Packing | None = None,
        ckks_params: ckks.CkksParams = ckks.CkksParams.WIDE,
    ) -> None:
        self.job_id = job_id or uuid.uuid4().hex
        self.scheme = scheme
        self._paillier_sk: Any = None
        self._ckks: ckks.CkksSecretContext | None = None
        self.ckks_params = ckks_params
        n: int | None = None
        ckks_public: bytes | None = None
        if scheme == "paillier-packed":
            pk, self._paillier_sk = paillier.generate_keypair(paillier_bits)
            n = int(pk.n)
        elif scheme == "ckks":
            self._ckks = ckks.CkksSecretContext(ckks_params)
            ckks_public = self._ckks.public_bytes()
        self.public = JobPublic(
            job_id=self.job_id,
            scheme=scheme,
            paillier_n=n,
            packing=packing or paillier.Packing(),
            ckks_public=ckks_public,
        )
        self._public_ctx: Any = None

    def export(self) -> bytes:
        """The job's secret keys and public material as JSON bytes, to be sealed at once.

        `restore` reads them back. The format is what `exchange.jobs` stores sealed for
        every job: keep it readable (`restore`) for keys already stored.
        """
        pub = self.public
        doc: dict[str, Any] = {"public": pub.params(), "scheme": self.scheme}
        if self.scheme == "paillier-packed":
            sk = self._paillier_sk
            doc["p"], doc["q"] = format(int(sk.p), "x"), format(int(sk.q), "x")
        elif self.scheme == "ckks":
            assert self._ckks is not None
            doc["ckks_params"] = self.ckks_params.as_dict()
            doc["ckks_secret"] = self._ckks._ctx.serialize(save_secret_key=True).hex()
            doc["ckks_public"] = (pub.ckks_public or b"").hex()
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def restore(cls, data: bytes) -> ResultParty:
        """A result party from `export` output, able to decrypt the job's aggregates."""
        import phe  # type: ignore[import-untyped]
        import tenseal as ts  # type: ignore[import-untyped]

        doc = json.loads(data)
        public = JobPublic.from_request(
            doc["public"],
            {"ckks_public": bytes.fromhex(doc["ckks_public"])} if doc.get("ckks_public") else {},
        )
        party = cls.__new__(cls)
        party.job_id = public.job_id
        party.scheme = public.scheme
        party.public = public
        party._paillier_sk = None
        party._ckks = None
        party._public_ctx = None
        party.ckks_params = ckks.CkksParams.WIDE
        if public.scheme == "paillier-packed":
            assert public.paillier_n is not None
            pk = paillier.public_key_from_n(public.paillier_n)
            party._paillier_sk = phe.PaillierPrivateKey(pk, int(doc["p"], 16), int(doc["q"], 16))
        elif public.scheme == "ckks":
            params = doc["ckks_params"]
            party.ckks_params = ckks.CkksParams(
                int(params["poly_modulus_degree"]),
                tuple(int(b) for b in params["coeff_mod_bit_sizes"]),
                int(params["scale_bits"]),
            )
            secret = ckks.CkksSecretContext.__new__(ckks.CkksSecretContext)
            secret.params = party.ckks_params
            secret._ctx = ts.context_from(bytes.fromhex(doc["ckks_secret"]), n_threads=1)
            party._ckks = secret
        return party

    def decrypt(self, aggregate: bytes) -> Decrypted:
        """Decrypt an aggregate envelope produced by the coordinator."""
        env = Envelope.from_bytes(aggregate)
        if env.job_id != self.job_id or env.scheme != self.scheme:
            raise HomomorphicMismatch("aggregate belongs to another job or scheme")
        addends = int(env.layout.get("addends", 1))
        values: Any
        if self.scheme == "paillier-packed":
            vec = paillier.PackedVector.from_bytes(env.payload, expect_n=self.public.paillier_n)
            if vec.addends != addends:
                raise HomomorphicMismatch("aggregate addend count mismatch")
            values = vec.decrypt(self._paillier_sk)
        elif self.scheme == "ckks":
            assert self._ckks is not None and self.public.ckks_public is not None
            if self._public_ctx is None:
                self._public_ctx = ckks.load_public_context(self.public.ckks_public)
            cvec = ckks.CkksVector.from_bytes(self._public_ctx, env.payload)
            if cvec.addends != addends:
                raise HomomorphicMismatch("aggregate addend count mismatch")
            values = self._ckks.decrypt(cvec)
        else:
            values = np.frombuffer(env.payload, dtype="<f8").copy()
        return Decrypted(env.kind, env.layout, values, addends)

    def tolerance(self, addends: int) -> float:
        """Absolute per-value error of a CKKS aggregate of `addends` partials (0 otherwise)."""
        return self.ckks_params.tolerance(addends) if self.scheme == "ckks" else 0.0


def each_once(providers: Sequence[ProviderInput]) -> tuple[ProviderInput, ...]:
    """The providers of a job; `InvalidParameters` when one takes part twice."""
    if len({p.provider_id for p in providers}) != len(providers):
        raise InvalidParameters("each provider takes part once")
    return tuple(providers)


class ProviderJob:
    """A job whose providers' partials one coordinator aggregates under one result party."""

    def __init__(
        self,
        providers: Sequence[ProviderInput],
        sandbox: Sandbox | None,
        result_party: Callable[[], ResultParty],
    ) -> None:
        self.providers = each_once(providers)
        self.sandbox = sandbox or default_sandbox()
        self.result_party = result_party()
        self.job_id = self.result_party.job_id
        self.coordinator = Coordinator(self.result_party.public)

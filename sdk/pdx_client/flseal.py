"""Sealing a federated job's global models for the providers' nodes, on the requester's side.

Under a requester-held key the SDK computes every global model of `fl.logreg`
(`pdx_client.fl`); the platform relays it to the providers' nodes. So that the platform
can neither read a model nor slip in one of its own, each reply is sealed per node:

* The node's X25519 mask key for the job comes with the round document, signed by its
  provider's party key over the job id, its organisation, its dataset, the fingerprint of
  *this* job key and the key itself (the server's `sandbox.mask_signing`). `NodeTrust`
  checks that signature against the party keys the requester pins for each organisation
  (a file in the nodes' own trusted-parties format, `PDX_TRUSTED_PARTIES`), so the
  platform cannot put a key of its own in a node's slot.
* Each node also sent a secret 256-bit challenge c_k in its own slots of the setup
  aggregate, under the requester's Paillier key; only this SDK reads it.
* The model for node k in round r: AES-256-GCM (nonce r) under
  HKDF-SHA256(salt c_k, X25519(e, N_k)), e an ephemeral key of this trainer (the server's
  `crypto.relay.fl_model_key`). Without e or N_k's private half the platform cannot read
  it; without c_k it cannot make a model the node accepts.
* The requester's own copy (so that `JobKey.decrypt` can add the final update later) is
  AES-256-GCM under a fresh key that travels encrypted under the job's Paillier key.

With no pinned keys the trainer seals to the keys the platform relays, warns
(`UnverifiedNodeKeys`) and records `verified = False`: that holds against a platform that
records, not one that substitutes keys (the job's `security_model` says so).

Needs only `cryptography` and `phe`: none of the server's packages.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import phe  # type: ignore[import-untyped]
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from pdx_client.errors import PdxError

__all__ = [
    "SEALED_FORMAT",
    "TRUST_ENV",
    "NodeKeyUnverified",
    "NodeTrust",
    "Sealer",
    "UnverifiedNodeKeys",
    "challenges",
    "model_key",
    "open_own",
]

SEALED_FORMAT = "pdx-fl-sealed/1"
"""Must equal `sandbox.party_fl.FL_SEALED_FORMAT`."""
MASK_KEY_FORMAT = "pdx-mask-key/1"
"""Must equal `sandbox.mask_signing.FORMAT`."""
TRUST_ENV = "PDX_TRUSTED_PARTIES"
_OWN_SLOT_BITS, _OWN_WORD_BITS = 64, 32


class RequesterKey(Protocol):
    """What sealing and `fl.drive` need of the requester's job key (`pdx_client.JobKey`)."""

    @property
    def n(self) -> int: ...

    @property
    def fingerprint(self) -> str: ...

    def open_vector(self, doc: dict[str, Any]) -> list[int]: ...


class NodeKeyUnverified(PdxError):
    """A node's key does not carry the signature of a party key pinned for its provider."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            detail,
            type="https://pdx.dev/problems/fl-node-key-unverified",
            title="Node key unverified",
        )


class UnverifiedNodeKeys(UserWarning):
    """Models are sealed to node keys nobody checked (no pinned party keys)."""


def mask_key_message(
    job_id: str, org_id: str, dataset_id: str, fingerprint: str, public: bytes
) -> bytes:
    """What a node signs over its X25519 key (as `sandbox.mask_signing.mask_key_message`)."""
    fields = (MASK_KEY_FORMAT, job_id, org_id, dataset_id, fingerprint, public.hex())
    return "\n".join(fields).encode()


def model_key(private: bytes, peer_public: bytes, challenge: bytes, context: bytes) -> bytes:
    """As the server's `crypto.relay.fl_model_key` (both ends derive the same key)."""
    if len(challenge) < 16:
        raise PdxError("a node's challenge is too short", type="about:blank")
    try:
        shared = X25519PrivateKey.from_private_bytes(private).exchange(
            X25519PublicKey.from_public_bytes(peer_public)
        )
    except ValueError:
        raise NodeKeyUnverified("a node's key is not a usable X25519 key") from None
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=challenge, info=b"pdx:fl-model/1:" + context
    ).derive(shared)


def _model_context(job_id: str, fingerprint: str, index: int) -> bytes:
    return f"{job_id}:{fingerprint}:{index}".encode()  # = sandbox.party_fl.model_context


def _model_aad(job_id: str, index: int, round_: int) -> bytes:
    return f"pdx:fl:model:{job_id}:{index}:{round_}".encode()  # = sandbox.party_fl.model_aad


@dataclass(frozen=True)
class NodeTrust:
    """The party keys the requester pins, per organisation (Ed25519, raw public keys)."""

    keys: Mapping[str, tuple[str, bytes]] = field(default_factory=dict)
    """key id (sha256 over `ed25519:` and the raw key) → (organisation, raw public key)."""

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> NodeTrust:
        """`{"parties": {org_id: [{"algorithm": "ed25519", "public_key": base64}]}}`."""
        import hashlib

        keys: dict[str, tuple[str, bytes]] = {}
        try:
            for org_id, entries in doc["parties"].items():
                for k in entries:
                    if k["algorithm"] != "ed25519":
                        continue  # the SDK verifies Ed25519 party keys only
                    raw = base64.b64decode(k["public_key"], validate=True)
                    key_id = "sha256:" + hashlib.sha256(b"ed25519:" + raw).hexdigest()
                    keys[key_id] = (str(org_id), raw)
        except (KeyError, TypeError, AttributeError, ValueError, binascii.Error):
            raise PdxError("malformed trusted-parties document", type="about:blank") from None
        return cls(keys)

    @classmethod
    def load(cls, path: str | Path) -> NodeTrust:
        """The nodes' trusted-parties file format (`PDX_NODE_TRUSTED_PARTIES`)."""
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise PdxError(
                f"cannot read the trusted-parties file {path}", type="about:blank"
            ) from None
        return cls.from_document(doc)

    @classmethod
    def from_env(cls) -> NodeTrust | None:
        """The file named by `PDX_TRUSTED_PARTIES`, or None when it is not set."""
        path = os.environ.get(TRUST_ENV)
        return cls.load(path) if path else None

    def check(self, entry: Mapping[str, Any], job_id: str, fingerprint: str) -> bytes:
        """The node's X25519 key once its signature checks (`NodeKeyUnverified` otherwise)."""
        org_id = str(entry.get("org_id"))
        pinned = self.keys.get(str(entry.get("key_id")))
        if pinned is None or pinned[0] != org_id:
            raise NodeKeyUnverified(
                f"the key of provider {org_id}'s node is not signed by a party key pinned "
                "for that organisation"
            )
        try:
            public = bytes.fromhex(str(entry["public"]))
            signature = base64.b64decode(str(entry.get("signature")), validate=True)
            message = mask_key_message(
                job_id, org_id, str(entry.get("dataset_id")), fingerprint, public
            )
            Ed25519PublicKey.from_public_bytes(pinned[1]).verify(signature, message)
        except (KeyError, ValueError, binascii.Error, InvalidSignature):
            raise NodeKeyUnverified(
                f"the key of provider {org_id}'s node does not carry its signature for this job"
            ) from None
        return public


def challenges(values: Sequence[int], layout: Mapping[str, Any], providers: int) -> list[bytes]:
    """Each node's challenge from the decrypted setup aggregate (its own words)."""
    try:
        spec = layout["challenge"]
        offset, words, bits = int(spec["offset"]), int(spec["words"]), int(spec["bits"])
    except (KeyError, TypeError, ValueError):
        raise PdxError(
            "the setup aggregate carries no node challenges", type="about:blank"
        ) from None
    out = []
    for k in range(providers):
        chunk = values[offset + k * words : offset + (k + 1) * words]
        if len(chunk) != words or any(not 0 <= v < 1 << bits for v in chunk):
            raise PdxError("a node's challenge is malformed", type="about:blank")
        out.append(b"".join(int(v).to_bytes(bits // 8, "big") for v in chunk))
    return out


def _seal_own(key: RequesterKey, job_id: str, message: Mapping[str, Any]) -> dict[str, Any]:
    """`message` for the requester itself: AES-256-GCM under a key sent under its Paillier key."""
    secret = AESGCM.generate_key(bit_length=256)
    words = [int.from_bytes(secret[i : i + 4], "big") for i in range(0, 32, 4)]
    bias = 1 << (_OWN_SLOT_BITS - 2)  # headroom 1, one addend (as JobKey.open_vector reads)
    m = sum((w + bias) << (j * _OWN_SLOT_BITS) for j, w in enumerate(words))
    ct = phe.PaillierPublicKey(key.n).raw_encrypt(m)
    body = json.dumps(message, separators=(",", ":")).encode()
    aad = f"pdx:fl:own:{job_id}".encode()
    return {
        "key": {
            "key_fingerprint": key.fingerprint,
            "packing": {"slot_bits": _OWN_SLOT_BITS, "headroom_bits": 1},
            "length": len(words),
            "addends": 1,
            "ciphertexts": [format(ct, "x")],
        },
        "job_id": job_id,
        "data": base64.b64encode(AESGCM(secret).encrypt(bytes(12), body, aad)).decode(),
    }


def open_own(key: RequesterKey, doc: Mapping[str, Any]) -> dict[str, Any]:
    """The requester's own sealed copy (`_seal_own`), opened with its job key."""
    try:
        words = key.open_vector(dict(doc["key"]))
        secret = b"".join(int(w).to_bytes(4, "big") for w in words)
        aad = f"pdx:fl:own:{doc['job_id']}".encode()
        body = AESGCM(secret).decrypt(bytes(12), base64.b64decode(doc["data"]), aad)
        out = json.loads(body)
    except (KeyError, TypeError, ValueError, OverflowError, binascii.Error, InvalidTag):
        raise PdxError(
            "the sealed model cannot be opened with this key", type="about:blank"
        ) from None
    if not isinstance(out, dict):
        raise PdxError("malformed sealed model", type="about:blank")
    return out


class Sealer:
    """Seals one job's replies for its nodes; made from the decrypted setup aggregate."""

    def __init__(
        self,
        key: RequesterKey,
        doc: Mapping[str, Any],
        values: Sequence[int],
        trust: NodeTrust | None,
        job_id: str | None = None,
    ) -> None:
        seal = doc.get("seal")
        if not isinstance(seal, Mapping) or not isinstance(seal.get("nodes"), list):
            raise PdxError("the round carries no node keys to seal for", type="about:blank")
        self.key = key
        self.job_id = str(seal.get("job_id"))
        if job_id is not None and self.job_id != job_id:
            raise NodeKeyUnverified("the node keys were made for another computation")
        nodes: list[Mapping[str, Any]] = list(seal["nodes"])
        if sorted(int(n.get("index", -1)) for n in nodes) != list(range(len(nodes))):
            raise NodeKeyUnverified("the node keys are not one per provider")
        nodes.sort(key=lambda n: int(n["index"]))
        self.challenges = challenges(values, doc["layout"], len(nodes))
        self.verified = trust is not None
        self.publics: list[bytes] = []
        for n in nodes:
            if trust is not None:
                self.publics.append(trust.check(n, self.job_id, key.fingerprint))
            else:
                try:
                    self.publics.append(bytes.fromhex(str(n["public"])))
                except (KeyError, ValueError):
                    raise NodeKeyUnverified("a node's key is malformed") from None
        if trust is None:
            warnings.warn(
                UnverifiedNodeKeys(
                    f"no pinned party keys ({TRUST_ENV}): the global models are sealed to "
                    "node keys the platform relayed, unchecked"
                ),
                stacklevel=3,
            )
        self._private = X25519PrivateKey.generate()

    @property
    def public(self) -> bytes:
        return self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def seal(
        self, round_: int, message: Mapping[str, Any], own: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The `sealed` reply: `message` for every node for round `round_`, `own` for us."""
        from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

        private = self._private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        body = json.dumps(message, separators=(",", ":")).encode()
        nodes = []
        for k, (public, challenge) in enumerate(zip(self.publics, self.challenges, strict=True)):
            key = model_key(
                private, public, challenge, _model_context(self.job_id, self.key.fingerprint, k)
            )
            ct = AESGCM(key).encrypt(
                round_.to_bytes(12, "big"), body, _model_aad(self.job_id, k, round_)
            )
            nodes.append(base64.b64encode(ct).decode())
        return {
            "format": SEALED_FORMAT,
            "requester_key": self.public.hex(),
            "nodes": nodes,
            "requester": _seal_own(self.key, self.job_id, own),
        }

"""Mask keys signed with each provider's own party key and checked against keys the node pins.

Why: under a requester-held job key each provider's node adds pairwise masks agreed over
X25519 (`sandbox.party_stats`, `sandbox.masks`), and the platform relays the nodes' X25519
public keys. Unauthenticated, a platform could put its own X25519 key in one node's slot,
derive that node's pairwise seeds with every honest peer and strip its masks (then, with
the requester, read that provider's partial). So a node configured with its provider's
party key signs what it contributes, and checks every peer's contribution before it
derives a single seed.

What is signed (`mask_key_message`, UTF-8): the format tag, the computation id, the
signer's organisation id, its dataset id, the fingerprint of the requester's job key and
the X25519 public key, one per line. All but the key come from the binding the node's
code request fixed, not from the platform's call, so a signature cannot be replayed
into another job, another dataset, another organisation's slot or under another job key.

Where a node gets its peers' public keys: a *trusted-parties file* kept by the node's
operator on the provider's machine (`PDX_NODE_TRUSTED_PARTIES`, JSON
`{"parties": {org_id: [{"algorithm": "ed25519" | "sm2-sm3", "public_key": base64}]}}`:
the party keys each organisation registered at `POST /v1/market/parties/{org}/keys`,
copied from the party records the operator verified, e.g. against the ledger entry of
each registration). It is read again for every job, so a new peer is added without a
restart. This was chosen over the alternatives:

* keys the platform puts in the node's code-request binding, or relays with the call:
  the platform writes that binding (and, where a provider delegated node approvals,
  approves it), so it could pin its own key for a peer: exactly the forgery to stop;
* keys named in the provider's signed run approval: the provider's SDK would sign the
  key ids the platform shows it, so a forgery is attributable but not prevented, and a
  job that needs no provider approval (open data) carries no signature at all.

The file is the one source the platform cannot write. The node's own organisation is
the entry that lists the node's own key (`PDX_NODE_PARTY_KEY`: the PKCS#8 PEM that
`pdx_client.partykeys.PartyKey.save` writes, Ed25519; `PDX_NODE_PARTY_KEY_PASSPHRASE`
if it is encrypted). A node without `PDX_NODE_PARTY_KEY` neither signs nor checks (an
embedded node: platform custody, docs/privacy.md §6.4); a node with it refuses any peer
whose key is unsigned, signed by a key not pinned for that peer's organisation, or
signed over anything else, and a peer list that is not exactly the approved number of
providers (`MaskKeyUnverified`, code `mask-key-unverified`): no partial leaves it.

Imports `crypto` only inside functions: the isolated worker imports `sandbox` alone.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.errors import HomomorphicMismatch, MaskKeyUnverified

__all__ = [
    "FORMAT",
    "KEY_ENV",
    "PASSPHRASE_ENV",
    "TRUST_ENV",
    "NodeIdentity",
    "PinnedKey",
    "mask_key_message",
    "node_identity",
    "party_key_id",
    "relayed_key",
    "signed_mask_key",
    "verify_peers",
]

FORMAT = "pdx-mask-key/1"
KEY_ENV = "PDX_NODE_PARTY_KEY"
PASSPHRASE_ENV = "PDX_NODE_PARTY_KEY_PASSPHRASE"
TRUST_ENV = "PDX_NODE_TRUSTED_PARTIES"
_ALGORITHMS = ("ed25519", "sm2-sm3")


def party_key_id(algorithm: str, public: bytes) -> str:
    """The id the platform gives a party key: sha256 over `algorithm:` and the raw key."""
    return "sha256:" + hashlib.sha256(algorithm.encode() + b":" + public).hexdigest()


def mask_key_message(
    job_id: str, org_id: str, dataset_id: str, fingerprint: str, public: bytes
) -> bytes:
    """What a node signs over its X25519 public key for one job (see module doc)."""
    return "\n".join((FORMAT, job_id, org_id, dataset_id, fingerprint, public.hex())).encode()


@dataclass(frozen=True)
class PinnedKey:
    """A party key the node's operator trusts for one organisation."""

    org_id: str
    algorithm: str
    public: bytes

    @property
    def key_id(self) -> str:
        return party_key_id(self.algorithm, self.public)


@dataclass(frozen=True)
class NodeIdentity:
    """A node's signing key, its organisation, and the peers' keys it pins (by key id)."""

    org_id: str
    algorithm: str
    private: Any  # crypto.SigningKeyPair
    public: bytes
    trusted: Mapping[str, PinnedKey]

    @property
    def key_id(self) -> str:
        return party_key_id(self.algorithm, self.public)


def _trusted(path: str) -> dict[str, PinnedKey]:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        parties = doc["parties"]
        out: dict[str, PinnedKey] = {}
        for org_id, keys in parties.items():
            for k in keys:
                algorithm = str(k["algorithm"])
                if algorithm not in _ALGORITHMS:
                    raise ValueError(algorithm)
                pinned = PinnedKey(str(org_id), algorithm, base64.b64decode(k["public_key"]))
                out[pinned.key_id] = pinned
        return out
    except (OSError, ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        raise MaskKeyUnverified(
            f"this node's trusted-parties file ({TRUST_ENV}) is missing or malformed"
        ) from None


def node_identity() -> NodeIdentity | None:
    """The node's party key and pinned peers (None: the node signs and checks nothing)."""
    key_path = os.environ.get(KEY_ENV)
    if not key_path:
        return None
    import crypto
    from crypto.suites.signature import load_private_pem

    passphrase = os.environ.get(PASSPHRASE_ENV)
    try:
        private = load_private_pem(
            Path(key_path).read_bytes(), passphrase.encode() if passphrase else None
        )
    except (OSError, crypto.CryptoError):
        raise MaskKeyUnverified(f"this node's party key ({KEY_ENV}) cannot be loaded") from None
    trusted = _trusted(os.environ.get(TRUST_ENV, ""))
    public = private.public_bytes()
    own = trusted.get(party_key_id("ed25519", public))
    if own is None:
        raise MaskKeyUnverified(
            f"this node's own party key is not listed in its trusted-parties file ({TRUST_ENV})"
        )
    return NodeIdentity(own.org_id, "ed25519", private, public, trusted)


def signed_mask_key(binding: Mapping[str, Any], public: bytes) -> bytes:
    """The node's answer to `keys`: the raw key, or (with an identity) the signed document."""
    identity = node_identity()
    if identity is None:
        return public
    party = binding.get("party") or {}
    message = mask_key_message(
        str(binding["job_id"]),
        identity.org_id,
        str(binding["dataset_id"]),
        str(party.get("fingerprint")),
        public,
    )
    doc = {
        "format": FORMAT,
        "public": public.hex(),
        "org_id": identity.org_id,
        "key_id": identity.key_id,
        "algorithm": identity.algorithm,
        "signature": base64.b64encode(identity.private.sign(message)).decode(),
    }
    return json.dumps(doc, sort_keys=True).encode()


# -- platform side: what is relayed -----------------------------------------------------------


def relayed_key(answer: bytes, org_id: str, dataset_id: str) -> dict[str, Any]:
    """One node's `keys` answer as the peer entry the platform relays (it cannot sign it).

    `org_id` and `dataset_id` are the platform's own view of the input; a node signed its
    own, so a mismatch fails the peers' checks.
    """
    entry: dict[str, Any] = {"org_id": org_id, "dataset_id": dataset_id}
    if len(answer) == 32:
        return {**entry, "public": answer.hex()}
    try:
        doc = json.loads(answer)
        if doc.get("format") != FORMAT or len(bytes.fromhex(doc["public"])) != 32:
            raise ValueError("format")
        return {
            **entry,
            **{k: str(doc[k]) for k in ("public", "key_id", "algorithm", "signature")},
        }
    except (ValueError, KeyError, TypeError, AttributeError):
        raise HomomorphicMismatch("a node returned a malformed mask key") from None


# -- node side: check every peer before deriving a seed ---------------------------------------


def verify_peers(
    identity: NodeIdentity,
    binding: Mapping[str, Any],
    party: Mapping[str, Any],
    own_public: bytes,
) -> None:
    """Refuse (`MaskKeyUnverified`) unless every peer's key carries its pinned signature."""
    job_id = str(binding["job_id"])
    fingerprint = str((binding.get("party") or {}).get("fingerprint"))
    try:
        me = int(party["index"])
        peers: Sequence[Mapping[str, Any]] = list(party.get("peers") or [])
        indices = sorted(int(p["index"]) for p in peers)
        providers = int(party["providers"])
    except (KeyError, TypeError, ValueError):
        raise MaskKeyUnverified("the relayed mask keys are malformed") from None
    if indices != list(range(providers)) or me not in indices:
        raise MaskKeyUnverified("the relayed mask keys are not one per approved provider")
    for peer in peers:
        _verify_peer(identity, binding, job_id, fingerprint, me, own_public, peer)


def _verify_peer(
    identity: NodeIdentity,
    binding: Mapping[str, Any],
    job_id: str,
    fingerprint: str,
    me: int,
    own_public: bytes,
    peer: Mapping[str, Any],
) -> None:
    import crypto

    index = int(peer["index"])
    org_id, dataset_id = str(peer.get("org_id")), str(peer.get("dataset_id"))
    if index == me:
        if peer.get("public") != own_public.hex() or dataset_id != binding["dataset_id"]:
            raise MaskKeyUnverified(
                "the platform relayed another mask key for this node", peer=index
            )
        return
    if dataset_id == binding["dataset_id"]:
        raise MaskKeyUnverified("a peer's mask key claims this node's input", peer=index)
    pinned = identity.trusted.get(str(peer.get("key_id")))
    if pinned is None or pinned.org_id != org_id:
        raise MaskKeyUnverified(
            f"provider {index}'s mask key is not signed by a key this node trusts for "
            f"organisation {org_id}",
            peer=index,
        )
    try:
        public = bytes.fromhex(str(peer["public"]))
        signature = base64.b64decode(str(peer.get("signature")), validate=True)
        verifying = crypto.load_verifying_key(pinned.algorithm, pinned.public)
        ok = verifying.verify(
            mask_key_message(job_id, org_id, dataset_id, fingerprint, public), signature
        )
    except (ValueError, KeyError, binascii.Error, crypto.CryptoError):
        ok = False
    if not ok:
        raise MaskKeyUnverified(
            f"provider {index}'s mask key does not carry organisation {org_id}'s "
            "signature for this job",
            peer=index,
        )

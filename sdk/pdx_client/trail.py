"""A party's trail: its own ledger entries, checked against a checkpoint it remembers."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

from pdx_client.errors import VerificationError
from pdx_client.models import TrailEntry, TrailVerification
from pdx_client.proofs import (
    Checkpoint,
    MerkleHasher,
    open_checkpoint,
    verify_consistency,
    verify_receipt,
)
from pdx_client.session import Session

__all__ = ["CheckpointStore", "Trail"]


class CheckpointStore:
    """The newest checkpoint this user has seen, per log origin (a JSON file, mode 0600)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def get(self, origin: str) -> Checkpoint | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8")).get(origin)
        except (OSError, ValueError):
            return None
        if not data:
            return None
        return Checkpoint(
            origin=origin, size=int(data["size"]), root=base64.b64decode(data["root"]), note=""
        )

    def put(self, checkpoint: Checkpoint) -> None:
        try:
            known = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            known = {}
        known[checkpoint.origin] = checkpoint.to_json()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(known, f, indent=1)
        os.replace(tmp, self.path)


class Trail:
    """Read and verify the entries naming one organisation (GET /v1/trail/...)."""

    def __init__(self, session: Session, *, hash_name: str = "sha256") -> None:
        self.session = session
        self.hash_name = hash_name

    def verifier_key(self) -> str:
        return self.session.public("/v1/ledger/verifier-key").text.strip()

    def checkpoint(self, verifier_key: str | None = None) -> Checkpoint:
        """The newest public checkpoint, its signature checked with the log's key."""
        vkey = verifier_key or self.verifier_key()
        return open_checkpoint(self.session.public("/v1/ledger/checkpoint").text, vkey)

    def entries(self, org: str | None = None, *, limit: int = 100) -> list[TrailEntry]:
        return [
            TrailEntry.model_validate(e)
            for e in self.session.iterate("/v1/trail/entries", limit=limit, org=org)
        ]

    def entry(self, index: int, tree_size: int | None = None) -> TrailEntry:
        body = self.session.get(f"/v1/trail/entries/{index}", tree_size=tree_size)
        return TrailEntry.model_validate(body)

    def verify(
        self,
        *,
        org: str | None = None,
        verifier_key: str,
        store: CheckpointStore | None = None,
    ) -> TrailVerification:
        """The numbered procedure behind `pdx trail verify`; raises `VerificationError`.

        (1) the checkpoint's signature, with a verifier key the caller already trusts;
        (2) consistency with the checkpoint remembered from last time (a smaller tree is
            a rollback, a proof that fails a fork); (3) every entry naming the party has
            an inclusion proof to the checkpoint's root, over the exact leaf bytes;
        (4) only then is the new checkpoint remembered.
        """
        checkpoint = self.checkpoint(verifier_key)  # (1)
        h = MerkleHasher(self.hash_name)
        previous = store.get(checkpoint.origin) if store else None
        if previous is not None:  # (2)
            if checkpoint.size < previous.size:
                raise VerificationError(
                    f"the log shrank from {previous.size} to {checkpoint.size} entries: "
                    "rolled back",
                    type="https://pdx.dev/problems/ledger-rollback",
                    title="Ledger rolled back",
                )
            proof = self.session.get(
                "/v1/trail/consistency", first=previous.size, second=checkpoint.size
            )
            verify_consistency(
                h,
                previous.size,
                checkpoint.size,
                previous.root,
                checkpoint.root,
                [base64.b64decode(x) for x in proof["hashes"]],
            )
        me = org or self.session.get("/v1/me")["org_id"]
        verified: list[int] = []
        pending: list[int] = []
        for e in self.entries(me):  # (3)
            # The record names the acting organisation; the server's party index adds the
            # others an entry concerns (a computation's requester and providers).
            if me not in _parties(e.record) and me not in e.parties:
                raise VerificationError(f"entry {e.index} does not concern {me}")
            if e.index >= checkpoint.size:
                pending.append(e.index)
                continue
            if e.inclusion is None or e.inclusion.tree_size != checkpoint.size:
                e = self.entry(e.index, checkpoint.size)
            verify_receipt(e.model_dump(), checkpoint, hash_name=self.hash_name)
            if json.loads(base64.b64decode(e.leaf)) != e.record:
                raise VerificationError(f"entry {e.index}: the record is not the proven leaf")
            verified.append(e.index)
        if store is not None:  # (4)
            store.put(checkpoint)
        return TrailVerification(
            org=me,
            checkpoint_size=checkpoint.size,
            previous_size=previous.size if previous else None,
            verified=verified,
            pending=pending,
        )


def _parties(record: dict[str, Any]) -> list[str]:
    org = record.get("subject_org")
    return [org] if isinstance(org, str) else []

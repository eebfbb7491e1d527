"""Live ledger monitoring, like a Certificate Transparency monitor.

From a remembered state (tree size, root, compact-range frontier, last block), fetch
the server's newest checkpoint, check it against the trusted key, demand a
consistency proof from the remembered tree (a fork fails here), download only the new
entries and blocks, recompute the root, and remember the new state. The server is
never trusted: only the verifier key is.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from audit.errors import MonitorUnavailable, VerificationInputError
from audit.verify import VerifyReport, check_block, check_checkpoint, load_verifiers
from ledger import Block, LedgerError, TreeBuilder, decode_leaf, hasher, verify_consistency

PAGE = 500  # the server pages ledger entries 500 at a time at most


@dataclass
class MonitorState:
    """What a monitor remembers between runs."""

    origin: str
    hash: str
    tree_size: int
    root: bytes
    frontier: list[bytes]
    block: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "hash": self.hash,
            "tree_size": self.tree_size,
            "root": base64.b64encode(self.root).decode(),
            "frontier": [base64.b64encode(f).decode() for f in self.frontier],
            "block": self.block,
        }

    @classmethod
    def load(cls, path: Path) -> MonitorState | None:
        if not path.exists():
            return None
        try:
            raw = json.loads(path.read_text())
            return cls(
                origin=raw["origin"],
                hash=raw["hash"],
                tree_size=int(raw["tree_size"]),
                root=base64.b64decode(raw["root"]),
                frontier=[base64.b64decode(f) for f in raw["frontier"]],
                block=raw["block"],
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise VerificationInputError(f"unreadable monitor state {path}: {exc}") from None

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        os.replace(tmp, path)


class _Server:
    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def get(self, path: str, **params: int) -> httpx.Response:
        try:
            r = self.client.get(path, params=params)
        except httpx.HTTPError as exc:
            raise MonitorUnavailable(f"cannot reach the ledger: {exc}") from None
        if r.status_code != 200:
            raise MonitorUnavailable(f"GET {path} answered {r.status_code}: {r.text[:200]}")
        return r


def monitor(
    client: httpx.Client,
    keys: Sequence[str],
    state_path: Path,
    *,
    hash_name: str = "sha256",
) -> VerifyReport:
    """One monitoring round against `client` (base URL and auditor token set)."""
    verifiers = load_verifiers(keys)
    server = _Server(client)
    state = MonitorState.load(state_path)
    report = VerifyReport()
    note = server.get("/v1/ledger/checkpoint").text
    origin = state.origin if state is not None else note.split("\n", 1)[0]
    checkpoint, why = check_checkpoint(note, origin, verifiers)
    if checkpoint is None:
        report.fail(f"checkpoint: {why}")
        return report
    h = hasher(state.hash if state is not None else hash_name)
    old_size = state.tree_size if state is not None else 0
    if checkpoint.size < old_size:
        report.fail(f"the log shrank from {old_size} to {checkpoint.size} entries")
        return report
    if state is not None and old_size > 0:
        proof = server.get(
            "/v1/ledger/proof/consistency", first=old_size, second=checkpoint.size
        ).json()
        try:
            verify_consistency(
                h,
                old_size,
                checkpoint.size,
                state.root,
                checkpoint.root_hash,
                [base64.b64decode(x) for x in proof["hashes"]],
            )
        except LedgerError as exc:
            report.fail(
                f"fork: the new checkpoint is not consistent with the remembered one ({exc.detail})"
            )
            return report
    builder = (
        TreeBuilder.from_state(h, state.tree_size, state.frontier)
        if state is not None
        else TreeBuilder(h)
    )
    roots: dict[int, bytes] = {}
    position = old_size
    while position < checkpoint.size:
        page = server.get(
            "/v1/ledger/entries", start=position, end=checkpoint.size, limit=PAGE
        ).json()["items"]
        if not page:
            report.fail("the server returned no entries below its checkpoint", index=position)
            return report
        for item in page:
            if item["index"] != position:
                report.fail(f"entry {position} is missing", index=position)
                return report
            leaf = base64.b64decode(item["leaf"])
            try:
                record = decode_leaf(leaf)
            except LedgerError:
                report.fail(f"entry {position} is not a canonical JSON record", index=position)
                return report
            if record != item["record"]:
                report.fail(f"entry {position}: record does not match its leaf", index=position)
                return report
            builder.append(h.leaf(leaf))
            position += 1
            roots[position] = builder.root()
    if builder.root() != checkpoint.root_hash:
        report.fail(
            f"entries [{old_size}, {checkpoint.size}) do not reproduce the checkpoint root",
            index=old_size,
        )
        return report
    report.entries = checkpoint.size - old_size
    previous = Block.from_json(state.block) if state is not None and state.block else None
    height = previous.height + 1 if previous is not None else 0
    caught_up = False
    while not caught_up:
        page = server.get("/v1/ledger/blocks", start=height, end=height + PAGE, limit=PAGE).json()[
            "items"
        ]
        caught_up = len(page) < PAGE
        for item in page:
            item.pop("checkpoint", None)
            block = Block.from_json(item)
            if block.tree_size > checkpoint.size:
                caught_up = True  # sealed after the checkpoint we fetched: next round
                break
            why = check_block(block, previous, verifiers, h)
            if why is None and block.tree_size > old_size:
                if roots.get(block.tree_size) != block.root:
                    why = f"block {block.height}: root differs from the entries"
            if why is not None:
                report.fail(why, block=block.height)
                return report
            previous = block
            report.blocks += 1
        height += len(page)
    report.checkpoints = 1
    report.tree_size = checkpoint.size
    report.root = checkpoint.root_hash
    MonitorState(
        origin=origin,
        hash=h.name,
        tree_size=checkpoint.size,
        root=checkpoint.root_hash,
        frontier=list(builder.frontier),
        block=previous.to_json() if previous is not None else None,
    ).save(state_path)
    return report

"""Offline ledger verification: trust only the log's public key, recompute everything.

`verify_export(dir, keys)` reads a `pdx ledger export` directory and checks, in one
pass over the entries:
- every leaf is canonical JSON; the Merkle root recomputed at each block's tree size
  equals the root that block signs;
- every block header is signed by a trusted key, heights are dense, each links to the
  previous block's hash and starts where the previous one ended;
- every checkpoint is a signed note by a trusted key naming its block's size and root
  (so successive checkpoints are consistent: all are prefixes of one tree);
- every stored tile hash equals the node the entries produce;
- optionally, earlier checkpoints the auditor kept are prefixes of this log (no fork);
- optionally, a witness policy "k of these n witnesses": every cosignature by a listed
  witness verifies, and some checkpoint is cosigned by at least k of them;
- optionally, the roots anchored on a chain: each must be this log's root at its size.
The first failure is reported with the entry index, block height or tile it concerns.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from audit.errors import VerificationInputError
from ledger import (
    GENESIS_PREV,
    TILE_HEIGHT,
    TILE_WIDTH,
    Block,
    Checkpoint,
    LedgerError,
    NoteVerifier,
    TreeBuilder,
    TreeHasher,
    decode_leaf,
    hasher,
    open_note,
    parse_verifier_key,
    signer_key_id,
)


@dataclass
class VerifyReport:
    """Outcome: `ok`, what was covered, and the first problem found (if any)."""

    ok: bool = True
    entries: int = 0
    blocks: int = 0
    checkpoints: int = 0
    tree_size: int = 0
    root: bytes = b""
    problem: str | None = None
    bad_index: int | None = None
    bad_block: int | None = None
    bad_size: int | None = None
    witnessed_size: int | None = None
    anchors_checked: int = 0
    notes: list[str] = field(default_factory=list)

    def fail(self, problem: str, *, index: int | None = None, block: int | None = None) -> None:
        if self.ok:
            self.ok = False
            self.problem = problem
            self.bad_index = index
            self.bad_block = block


@dataclass(frozen=True)
class WitnessPolicy:
    """Trust a checkpoint once at least `quorum` of these witnesses cosigned it."""

    witnesses: tuple[NoteVerifier, ...]
    quorum: int

    @classmethod
    def parse(cls, keys: Sequence[str], quorum: int | None = None) -> WitnessPolicy:
        """From witness verifier keys (`name+hash+base64(0x04 ‖ key)`); quorum default: all."""
        witnesses: list[NoteVerifier] = []
        for key in keys:
            try:
                witnesses.append(parse_verifier_key(key.strip()))
            except LedgerError as exc:
                raise VerificationInputError(f"bad witness key: {exc.detail}") from exc
        chosen = len(witnesses) if quorum is None else quorum
        if not witnesses or not 1 <= chosen <= len(witnesses):
            raise VerificationInputError("a witness policy needs 1 <= k <= n witness keys")
        return cls(tuple(witnesses), chosen)


def witness_cosigners(note: str, policy: WitnessPolicy) -> tuple[list[str], str | None]:
    """Which policy witnesses validly cosigned `note`; (names, None) or ([], why).

    A cosignature by a listed witness that does not verify means that witness cosigned
    another tree at this size: a fork, reported, never ignored. The library entry point
    for the SDK's trail verification.
    """
    text, _, block = note.partition("\n\n")
    names: list[str] = []
    for witness in policy.witnesses:
        for line in block.splitlines():
            if not line.startswith(f"\u2014 {witness.name} "):
                continue
            try:
                _, ok = open_note(f"{text}\n\n{line}\n".encode(), [witness])
            except LedgerError:
                return [], f"witness {witness.name}'s cosignature does not verify on this tree"
            names.extend(ok)
    return sorted(set(names)), None


def load_verifiers(keys: Sequence[str]) -> dict[str, NoteVerifier]:
    """Trusted verifier keys (`name+hash+base64`), by block `signer_key_id`."""
    verifiers: dict[str, NoteVerifier] = {}
    for key in keys:
        try:
            verifier = parse_verifier_key(key.strip())
        except LedgerError as exc:
            raise VerificationInputError(f"bad verifier key: {exc.detail}") from exc
        verifiers[signer_key_id(verifier)] = verifier
    if not verifiers:
        raise VerificationInputError("give at least one trusted verifier key")
    return verifiers


def check_block(
    block: Block,
    previous: Block | None,
    verifiers: dict[str, NoteVerifier],
    h: TreeHasher,
) -> str | None:
    """Why `block` does not follow `previous` or is not validly signed; None if fine."""
    verifier = verifiers.get(block.signer_key_id)
    if verifier is None:
        return f"block {block.height} is signed by an untrusted key {block.signer_key_id}"
    if not verifier.verify(block.signed_bytes(), block.signature):
        return f"block {block.height}: signature does not verify"
    expected_height = previous.height + 1 if previous is not None else 0
    if block.height != expected_height:
        return f"block {block.height}: expected height {expected_height}"
    prev_hash = previous.block_hash(h.digest) if previous is not None else GENESIS_PREV
    if block.prev_block_hash != prev_hash:
        return f"block {block.height}: prev_block_hash does not match block {expected_height - 1}"
    expected_first = previous.tree_size if previous is not None else 0
    if block.first_index != expected_first or block.tree_size < block.first_index:
        return f"block {block.height}: covers [{block.first_index}, {block.tree_size}), " + (
            f"expected to start at {expected_first}"
        )
    if previous is not None and block.time_ms < previous.time_ms:
        return f"block {block.height}: time goes backwards"
    return None


def check_checkpoint(
    note: str, origin: str, verifiers: dict[str, NoteVerifier]
) -> tuple[Checkpoint | None, str | None]:
    """Open a signed-note checkpoint with the trusted keys; (checkpoint, None) or (None, why)."""
    try:
        text, _ = open_note(note.encode("utf-8"), list(verifiers.values()))
        checkpoint = Checkpoint.parse(text)
    except LedgerError as exc:
        return None, exc.detail
    if checkpoint.origin != origin:
        return None, f"origin {checkpoint.origin!r} is not {origin!r}"
    return checkpoint, None


def _lines(path: Path) -> Iterator[bytes]:
    try:
        with path.open("rb") as f:
            for line in f:
                yield line[:-1] if line.endswith(b"\n") else line
    except OSError as exc:
        raise VerificationInputError(f"cannot read {path.name}: {exc.strerror}") from exc


def _json_lines(path: Path) -> Iterator[object]:
    for number, line in enumerate(_lines(path)):
        try:
            yield json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise VerificationInputError(f"{path.name} line {number + 1} is not JSON") from None


class _ClaimedTiles:
    """The export's stored tiles, checked against the nodes the entries produce."""

    def __init__(self, path: Path, h: TreeHasher) -> None:
        self.size = h.size
        self.tiles: dict[tuple[int, int], bytes] = {}
        if not path.exists():
            return
        for item in _json_lines(path):
            if not isinstance(item, dict):
                raise VerificationInputError("tiles.jsonl holds a non-object line")
            try:
                key = (int(item["level"]), int(item["index"]))
                self.tiles[key] = base64.b64decode(item["hashes"], validate=True)
            except (KeyError, TypeError, ValueError, binascii.Error):
                raise VerificationInputError("tiles.jsonl holds a malformed tile") from None

    def hash(self, level: int, index: int) -> bytes | None:
        """The claimed hash of node (level, index), level a multiple of 8."""
        tile = self.tiles.get((level // TILE_HEIGHT, index // TILE_WIDTH))
        if tile is None:
            return None
        offset = (index % TILE_WIDTH) * self.size
        value = tile[offset : offset + self.size]
        return value if len(value) == self.size else None


def verify_export(
    directory: Path,
    keys: Sequence[str],
    *,
    trusted: Sequence[str] = (),
    witnesses: WitnessPolicy | None = None,
    anchors: Sequence[tuple[int, bytes]] | None = None,
) -> VerifyReport:
    """Verify an export against trusted keys, earlier checkpoints, witnesses, chain anchors.

    `anchors` are the (tree size, root) pairs a chain holds for this log's origin
    (`ledger.ChainAnchors.anchors`); a differing one is reported with its tree size.
    """
    verifiers = load_verifiers(keys)
    try:
        manifest = json.loads((directory / "manifest.json").read_text())
        origin, hash_name = manifest["origin"], manifest["hash"]
        h = hasher(hash_name)
    except (OSError, ValueError, KeyError, TypeError, LedgerError) as exc:
        raise VerificationInputError(f"unreadable manifest.json: {exc}") from None
    report = VerifyReport()

    # Blocks and their checkpoints: signatures, heights, links, ranges.
    blocks: list[Block] = []
    for value in _json_lines(directory / "blocks.jsonl"):
        try:
            block = Block.from_json(value)
        except LedgerError as exc:
            report.fail(f"block line {len(blocks) + 1}: {exc.detail}", block=len(blocks))
            return report
        why = check_block(block, blocks[-1] if blocks else None, verifiers, h)
        if why is not None:
            report.fail(why, block=block.height)
            return report
        blocks.append(block)
    report.blocks = len(blocks)
    notes: dict[int, str] = {}
    for value in _json_lines(directory / "checkpoints.jsonl"):
        if not isinstance(value, dict) or not isinstance(value.get("note"), str):
            raise VerificationInputError("checkpoints.jsonl holds a malformed line")
        notes[int(value["height"])] = value["note"]
    for block in blocks:
        note = notes.get(block.height)
        if note is None:
            report.fail(f"block {block.height} has no checkpoint", block=block.height)
            return report
        checkpoint, why = check_checkpoint(note, origin, verifiers)
        if checkpoint is None:
            report.fail(f"checkpoint of block {block.height}: {why}", block=block.height)
            return report
        if checkpoint.size != block.tree_size or checkpoint.root_hash != block.root:
            report.fail(
                f"checkpoint of block {block.height} names another tree than the block",
                block=block.height,
            )
            return report
        if witnesses is not None:
            cosigners, why = witness_cosigners(note, witnesses)
            if why is not None:
                report.fail(
                    f"tree size {checkpoint.size} (block {block.height}): {why}",
                    block=block.height,
                )
                report.bad_size = checkpoint.size
                return report
            if len(cosigners) >= witnesses.quorum:
                report.witnessed_size = checkpoint.size
        report.checkpoints += 1
    if witnesses is not None and report.witnessed_size is None:
        report.fail(
            f"no checkpoint is cosigned by {witnesses.quorum} of the "
            f"{len(witnesses.witnesses)} witnesses"
        )
        return report

    # Earlier checkpoints the auditor kept: must be prefixes of this log.
    earlier: dict[int, Checkpoint] = {}
    for note in trusted:
        checkpoint, why = check_checkpoint(note, origin, verifiers)
        if checkpoint is None:
            raise VerificationInputError(f"trusted checkpoint does not verify: {why}")
        earlier[checkpoint.size] = checkpoint
    anchored = dict(anchors or ())
    roots_at: dict[int, bytes] = {}

    # One pass over the entries: roots at block boundaries, stored tiles, earlier trees.
    claimed = _ClaimedTiles(directory / "tiles.jsonl", h)
    builder = TreeBuilder(h)
    shadow = TreeBuilder(h)  # over the claimed leaf hashes, to pinpoint a bad entry
    first_mismatch: int | None = None
    bad_tile: str | None = None
    boundaries = iter(blocks)
    next_block = next(boundaries, None)
    while next_block is not None and next_block.tree_size == 0:
        if next_block.root != h.empty_root():
            report.fail(f"block {next_block.height}: empty tree with a wrong root")
            return report
        next_block = next(boundaries, None)
    leaf_hash = h.leaf
    index = -1
    for index, leaf in enumerate(_lines(directory / "entries.jsonl")):
        try:
            decode_leaf(leaf)
        except LedgerError:
            report.fail(f"entry {index} is not a canonical JSON record", index=index)
            return report
        lh = leaf_hash(leaf)
        claimed_leaf = claimed.hash(0, index)
        if claimed_leaf is not None:
            shadow.append(claimed_leaf)
            if claimed_leaf != lh and first_mismatch is None:
                first_mismatch = index
        for level, node_index, node in builder.append(lh):
            if level % TILE_HEIGHT == 0 and bad_tile is None:
                stored = claimed.hash(level, node_index)
                if stored is not None and stored != node:
                    bad_tile = f"stored tile node (level {level}, index {node_index})"
        size = index + 1
        if size in anchored:
            roots_at[size] = builder.root()
        if size in earlier and builder.root() != earlier[size].root_hash:
            report.fail(
                f"fork: the log at size {size} differs from a trusted earlier checkpoint",
                index=index,
            )
            return report
        while next_block is not None and next_block.tree_size == size:
            if builder.root() != next_block.root:
                where = first_mismatch
                if where is None or shadow.size != size or shadow.root() != next_block.root:
                    # The stored hashes do not reproduce the signed root either, so they
                    # cannot say which entry changed; name the block's range.
                    report.fail(
                        f"entries [{next_block.first_index}, {size}) do not reproduce the "
                        f"root signed in block {next_block.height}",
                        block=next_block.height,
                        index=next_block.first_index,
                    )
                else:
                    report.fail(
                        f"entry {where} differs from the one block {next_block.height} signed",
                        index=where,
                        block=next_block.height,
                    )
                return report
            if bad_tile is not None or (first_mismatch is not None and first_mismatch < size):
                report.fail(
                    bad_tile or f"stored tile hash of entry {first_mismatch} is wrong",
                    index=first_mismatch,
                    block=next_block.height,
                )
                return report
            next_block = next(boundaries, None)
    count = index + 1
    report.entries = count
    last = blocks[-1].tree_size if blocks else 0
    if count != last:
        report.fail(
            f"export holds {count} entries but the last block covers {last}",
            index=min(count, last),
            block=blocks[-1].height if blocks else None,
        )
        return report
    missing = [size for size in earlier if size > count]
    if missing:
        report.fail(f"a trusted checkpoint of size {max(missing)} is beyond this log")
        return report
    for size, root in sorted(anchored.items()):
        # The chain accepted each anchor only as an extension of the one before, so the
        # smallest differing size bounds where the history was rewritten.
        if size > count:
            report.fail(f"the chain anchors tree size {size}, beyond this log of {count}")
            report.bad_size = size
            return report
        if roots_at.get(size) != root:
            report.fail(f"the chain contradicts this log at tree size {size}: another root")
            report.bad_size = size
            return report
        report.anchors_checked += 1
    report.tree_size = count
    report.root = builder.root()
    return report

"""Export the sealed ledger to a directory that an auditor verifies with no server.

Layout (all text, one JSON document or leaf per line):
  manifest.json      origin, hash, sizes
  entries.jsonl      leaf i on line i: the exact canonical-JSON bytes that were hashed
  blocks.jsonl       block headers in height order
  checkpoints.jsonl  {"height", "note"}: each block's signed-note checkpoint
  tiles.jsonl        {"level", "index", "hashes"}: the stored interior nodes (untrusted
                     by the verifier; it recomputes them and names any that differ)
Only sealed entries are exported: an unsealed tail has no signature to check yet.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ledger.canonical import canonical_json
from ledger.errors import ExportTargetNotEmpty, LedgerError
from ledger.log import MAX_PAGE, Ledger, LogTransaction
from ledger.publish import cosigned_notes

FORMAT = "pdx-ledger-export/1"
FILES = ("manifest.json", "entries.jsonl", "blocks.jsonl", "checkpoints.jsonl", "tiles.jsonl")


@dataclass(frozen=True)
class ExportSummary:
    entries: int
    blocks: int
    tree_size: int


def export(
    session: LogTransaction,
    ledger: Ledger,
    out: Path,
    *,
    cosignatures: Mapping[int, list[str]] | None = None,
) -> ExportSummary:
    """Write the sealed log to `out` (created; must be empty if it exists).

    Cosignature lines (by tree size) are read from the database unless given.
    """
    if out.exists() and any(out.iterdir()):
        raise ExportTargetNotEmpty("the export directory must be empty", path=str(out))
    out.mkdir(parents=True, exist_ok=True)
    # Witness cosignatures ride on the checkpoint notes they cosign (C2SP signed-note:
    # verifiers ignore signatures by keys they do not know).
    if cosignatures is None:
        cosignatures = cosigned_notes(session)
    latest = ledger.latest(session)
    tree_size = latest.block.tree_size if latest is not None else 0
    heights = latest.block.height + 1 if latest is not None else 0
    with (
        (out / "blocks.jsonl").open("wb") as blocks,
        (out / "checkpoints.jsonl").open("wb") as notes,
    ):
        for start in range(0, heights, MAX_PAGE):
            for sealed in ledger.blocks(session, start, min(heights, start + MAX_PAGE)):
                blocks.write(canonical_json(sealed.block.to_json()) + b"\n")
                note = sealed.checkpoint + "".join(cosignatures.get(sealed.block.tree_size, []))
                line = {"height": sealed.block.height, "note": note}
                notes.write(canonical_json(line) + b"\n")
    with (out / "entries.jsonl").open("wb") as entries:
        position = 0
        while position < tree_size:
            page = ledger.entries(session, start=position, end=tree_size, limit=MAX_PAGE)
            if not page or page[0].index != position:
                raise LedgerError("ledger entries have a gap", index=position)
            for stored in page:
                entries.write(stored.leaf + b"\n")
            position = page[-1].index + 1
    with (out / "tiles.jsonl").open("wb") as tiles:
        for level, idx, hashes in ledger.store(session).tiles():
            line = {"level": level, "index": idx, "hashes": base64.b64encode(hashes).decode()}
            tiles.write(canonical_json(line) + b"\n")
    manifest = {
        "format": FORMAT,
        "origin": ledger.config.origin,
        "hash": ledger.hasher.name,
        "tree_size": tree_size,
        "blocks": heights,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return ExportSummary(entries=tree_size, blocks=heights, tree_size=tree_size)

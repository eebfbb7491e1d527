"""Helpers for the witness, anchor and fork tests (issue 19): a small log and a witness server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from crypto import SignatureAlgorithm, generate_key_pair
from ledger import (
    CosignatureV1Signer,
    Ed25519LedgerSigner,
    Ledger,
    LedgerConfig,
    LedgerRecord,
    LogConfig,
    MemoryLogStorage,
    Witness,
    WitnessState,
    parse_verifier_key,
    serve_witness,
)
from ledger.export import export

ORIGIN = "pdx.test/i19"
T0 = datetime(2026, 12, 1, tzinfo=UTC)


def record(i: int, *, tampered: bool = False) -> LedgerRecord:
    return LedgerRecord(
        type="dataset.registered",
        action="register",
        object_type="dataset",
        object_id=f"ds-{i}" + ("-forged" if tampered else ""),
        actor="alice",
        subject_org="org-1",
        decision_id=None,
        purpose=None,
        request_id=None,
        payload_digest=None,
        ts=T0,
    )


class Log:
    """An in-memory log that seals a block per `grow(n)`; `rewrite` makes its forged twin."""

    def __init__(self, signer: Ed25519LedgerSigner | None = None) -> None:
        self.signer = signer or Ed25519LedgerSigner(
            ORIGIN, generate_key_pair(SignatureAlgorithm.ED25519)
        )
        self.storage = MemoryLogStorage()
        self.ledger = Ledger(LedgerConfig(ORIGIN))
        self.records: list[LedgerRecord] = []
        with self.storage.transaction() as tx:
            self.ledger.seal(tx, self.signer, now=T0)

    def grow(self, n: int, *, tampered_index: int | None = None) -> str:
        start = len(self.records)
        new = [record(i, tampered=i == tampered_index) for i in range(start, start + n)]
        self.records.extend(new)
        with self.storage.transaction() as tx:
            self.ledger.append_many(tx, new)
        with self.storage.transaction() as tx:
            self.ledger.seal(tx, self.signer, now=T0)
            return self.ledger.checkpoint(tx)

    def sizes(self) -> list[int]:
        with self.storage.transaction() as tx:
            return [b.block.tree_size for b in self.ledger.blocks(tx, 0, 1000)]

    def export(self, out: Path, cosignatures: dict[int, list[str]] | None = None) -> None:
        with self.storage.transaction() as tx:
            export(tx, self.ledger, out, cosignatures=cosignatures or {})


def rewrite(honest: Log, index: int) -> Log:
    """The operator's rewrite: same key, same block boundaries, entry `index` changed."""
    forged = Log(honest.signer)
    sizes = honest.sizes()
    for before, after in zip(sizes, sizes[1:], strict=False):
        forged.grow(after - before, tampered_index=index)
    return forged


@contextmanager
def witness_server(log: Log, name: str, state: Path | None = None) -> Iterator[Witness]:
    """A real tlog-witness HTTP server on a loopback port; `witness.url` is its endpoint."""
    signer = CosignatureV1Signer(name, generate_key_pair(SignatureAlgorithm.ED25519))
    verifier = parse_verifier_key(log.signer.verifier_key())
    witness = Witness(signer, {ORIGIN: LogConfig(ORIGIN, verifier)}, WitnessState(state), time.time)
    server = serve_witness(witness, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    witness.url = f"http://127.0.0.1:{server.server_port}/add-checkpoint"  # type: ignore[attr-defined]
    try:
        yield witness
    finally:
        server.shutdown()
        server.server_close()
        thread.join()

"""Ledger benchmark: batched durable appends vs one-commit-per-entry, proofs, full verify.

One run builds a 10^6-entry log in a fresh embedded (SQLite, WAL) platform database:
records are appended 1,000 per transaction while the sealer runs as in the server
(blocks every 10,000 entries here), so the figure includes hashing, tiles and signing.
The naive baseline (one INSERT + COMMIT per entry, same engine) runs in the same
process right after, and proofs and offline verification are timed on the result.
"""

from __future__ import annotations

import random
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from audit.verify import verify_export
from bench import report
from gateway.platform import build_platform, initialise
from gateway.settings import Settings
from ledger import (
    Checkpoint,
    Ed25519LedgerSigner,
    LedgerRecord,
    export,
    open_note,
    parse_verifier_key,
    verify_inclusion,
)

BATCH = 1000
SEAL_EVERY = 10_000


def _records(start: int, count: int, now: datetime) -> list[LedgerRecord]:
    return [
        LedgerRecord(
            type="dataset.registered",
            action="register",
            object_type="dataset",
            object_id=f"ds-{i:08d}",
            actor="pdx-0123456789abcdef",
            subject_org="7d0c6f52-6f1e-4a8e-9d55-0c8c3f0b9a11",
            decision_id="5a4f3c2b-1d0e-4f9a-8b7c-6d5e4f3a2b1c",
            purpose="bench",
            request_id="0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
            payload_digest="sha256:" + f"{i:064x}",
            ts=now,
        )
        for i in range(start, start + count)
    ]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(quick: bool = False) -> Path:
    entries = 50_000 if quick else 1_000_000
    naive_n = 2_000 if quick else 10_000
    work = report.WORK / "ledger"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    settings = Settings(home=work / "home", database_url=f"sqlite:///{work / 'pdx.db'}")
    platform = build_platform(settings, clock=lambda: datetime.now(UTC))
    initialise(platform)
    base = 0
    with platform.session() as session:
        base = platform.ledger.size(session)
    now = datetime.now(UTC)

    # 1. Batched appends with sealing, as the server does them.
    started = time.perf_counter()
    for start in range(0, entries, BATCH):
        with platform.session() as session, session.begin():
            platform.ledger.append_many(session, _records(start, BATCH, now))
        if (start + BATCH) % SEAL_EVERY == 0:
            platform.sealer.seal_now()
    platform.sealer.seal_now()
    append_s = time.perf_counter() - started
    append_rate = entries / append_s

    # 2. Naive baseline: one INSERT and one COMMIT per entry, same database engine.
    with platform.engine.begin() as conn:
        conn.execute(
            text("CREATE TABLE naive_log (idx INTEGER PRIMARY KEY, leaf BLOB, leaf_hash BLOB)")
        )
    h = platform.ledger.hasher
    naive_records = _records(0, naive_n, now)
    started = time.perf_counter()
    for i, rec in enumerate(naive_records):
        leaf = rec.leaf()
        with platform.engine.begin() as conn:
            conn.execute(
                text("INSERT INTO naive_log VALUES (:i, :leaf, :hash)"),
                {"i": i, "leaf": leaf, "hash": h.leaf(leaf)},
            )
    naive_rate = naive_n / (time.perf_counter() - started)

    # 3. Inclusion proofs at the full size, against the signed checkpoint.
    with platform.session() as session, session.begin():
        key = platform.keystore.signing_key(session, purpose="ledger-signing", now=platform.now())
    vkey = Ed25519LedgerSigner(settings.ledger_origin, key.private_key).verifier_key()
    rng = random.Random(1)
    gen_ms: list[float] = []
    ver_ms: list[float] = []
    with platform.session() as session:
        note = platform.ledger.checkpoint(session)
        checkpoint = Checkpoint.parse(open_note(note.encode(), [parse_verifier_key(vkey)])[0])
        size = checkpoint.size
        indexes = [rng.randrange(size) for _ in range(2000)]
        leaves = {i: platform.ledger.entry(session, i).leaf for i in indexes}
        for index in indexes[:200]:  # warm-up: tile cache and statement cache
            platform.ledger.inclusion_proof(session, index, size)
        for index in indexes:
            t0 = time.perf_counter()
            proof = platform.ledger.inclusion_proof(session, index, size)
            t1 = time.perf_counter()
            verify_inclusion(h, index, size, h.leaf(leaves[index]), proof, checkpoint.root_hash)
            t2 = time.perf_counter()
            gen_ms.append((t1 - t0) * 1000)
            ver_ms.append((t2 - t1) * 1000)

    # 4. Export, then full offline verification with the public key only.
    out = work / "export"
    started = time.perf_counter()
    with platform.session() as session:
        export(session, platform.ledger, out)
    export_s = time.perf_counter() - started
    started = time.perf_counter()
    result = verify_export(out, [vkey])
    verify_s = time.perf_counter() - started
    if not result.ok:
        raise RuntimeError(f"benchmark log failed verification: {result.problem}")
    platform.engine.dispose()

    gen, ver = report.median(gen_ms), report.median(ver_ms)
    return report.write(
        "ledger",
        {
            "entries": entries,
            "log_size": size,
            "seed_entries": base,
            "batch": BATCH,
            "seal_every": SEAL_EVERY,
            "database": "sqlite (WAL, synchronous=NORMAL)",
            "hash": h.name,
            "naive_entries": naive_n,
            "proof_samples": len(indexes),
        },
        {
            "append_entries_per_s": report.Metric(
                round(append_rate), "entries/s", ">= 20000", append_rate >= 20000
            ),
            "naive_entries_per_s": report.Metric(round(naive_rate), "entries/s"),
            "append_vs_naive": report.Metric(round(append_rate / naive_rate, 1), "x"),
            "inclusion_proof_generate_ms": report.Metric(round(gen, 3), "ms", "< 2", gen < 2),
            "inclusion_proof_generate_p99_ms": report.Metric(
                round(_percentile(gen_ms, 0.99), 3), "ms"
            ),
            "inclusion_proof_verify_ms": report.Metric(round(ver, 4), "ms", "< 0.2", ver < 0.2),
            "inclusion_proof_verify_p99_ms": report.Metric(
                round(_percentile(ver_ms, 0.99), 4), "ms"
            ),
            "full_verify_s": report.Metric(round(verify_s, 1), "s", "< 60", verify_s < 60),
            "export_s": report.Metric(round(export_s, 1), "s"),
        },
    )


if __name__ == "__main__":
    print(run())

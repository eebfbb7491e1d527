"""Ledger benchmark: batched durable appends vs one-commit-per-entry, proofs, full verify.

One run builds a 10^6-entry log in a fresh embedded (SQLite, WAL) platform database:
records are appended 1,000 per transaction while the sealer runs as in the server
(blocks every 10,000 entries here), so the figure includes hashing, tiles and signing.
Publishing runs as `make run` has it plus one witness: a local `pdx witness` process
cosigns each sealed checkpoint and the embedded eth-tester chain anchors them (the
platform's own thread, its default schedule). The naive baseline (one INSERT + COMMIT
per entry, same engine) runs in the same process right after, and proofs and offline
verification are timed on the result. Then: the lag from a seal to its anchor, one
witness round trip, and append throughput with publishing on vs off, side by side
(off, on, on, off chunks, so drift cancels).
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from audit.verify import verify_export
from bench import report
from gateway.platform import (
    Platform,
    build_platform,
    initialise,
    ledger_signer_for,
)
from gateway.publishing import witness_endpoints
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
from ledger.publish import MemoryCosignatures, Publisher, cosigned_sizes

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
    plain = Settings(home=work / "home", database_url=f"sqlite:///{work / 'pdx.db'}")
    first = build_platform(plain)
    initialise(first)
    with first.session() as session, session.begin():
        log_key = ledger_signer_for(
            platform_keystore=first.keystore, settings=plain, session=session, now=first.now()
        ).verifier_key()
    first.engine.dispose()
    with _witness(work, log_key) as (witness_url, witness_key):
        settings = plain.replace(
            anchor="embedded", witnesses=(f"{WITNESS}={witness_url}={witness_key}",)
        )
        return _run(quick, work, settings, entries, naive_n)


WITNESS = "bench.local/witness"


@contextmanager
def _witness(work: Path, log_key: str) -> Iterator[tuple[str, str]]:
    """A local `pdx witness` process: (its URL prefix, its verifier key)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "witness", "--name", WITNESS, "--port", "0"]
        + ["--key", str(work / "witness.key"), "--state", str(work / "witness.json")]
        + ["--log", log_key],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        key = proc.stdout.readline().split(" ", 2)[2].strip()
        url = proc.stdout.readline().rsplit(" ", 1)[1].strip()
        yield url, key
    finally:
        proc.terminate()
        proc.wait(10)


def _run(quick: bool, work: Path, settings: Settings, entries: int, naive_n: int) -> Path:
    platform = build_platform(settings, clock=lambda: datetime.now(UTC))
    initialise(platform)
    publishing = platform.publishing
    assert publishing is not None
    publishing.start()  # as the app's lifespan does
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

    # 5. Seal -> anchored on the embedded chain, with the platform's own schedule.
    lags = _anchor_lags(platform, now, samples=3 if quick else 5)
    # 6. Append throughput, publishing on vs off, in alternating chunks.
    chunk = 10_000 if quick else 50_000
    rate_off, rate_on = _side_by_side(platform, now, entries, chunk)
    publishing.stop()
    # 7. One cosign round trip to the local witness (checkpoint, proof, HTTP, verify).
    cosign_ms = _cosign_rounds(platform, now, entries + 4 * chunk, rounds=10 if quick else 30)
    platform.engine.dispose()
    lag = max(lags)
    ratio = rate_on / rate_off

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
            "publishing": "1 local pdx witness + embedded eth-tester chain, "
            f"anchor every {settings.anchor_every_blocks} blocks or {settings.anchor_every_s} s",
            "side_by_side_chunk": chunk,
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
            "anchor_lag_s": report.Metric(round(lag, 2), "s", "< 5", lag < 5),
            "anchor_lag_median_s": report.Metric(round(report.median(lags), 2), "s"),
            "witness_cosign_ms": report.Metric(round(cosign_ms, 2), "ms", "< 20", cosign_ms < 20),
            "append_with_anchor_vs_without": report.Metric(
                round(ratio, 3), "x", ">= 0.9", ratio >= 0.9
            ),
            "append_publishing_on_entries_per_s": report.Metric(round(rate_on), "entries/s"),
            "append_publishing_off_entries_per_s": report.Metric(round(rate_off), "entries/s"),
        },
    )


def _append(platform: Platform, start: int, count: int, now: datetime) -> float:
    """Append `count` records as step 1 does (batches, a seal every SEAL_EVERY); seconds."""
    started = time.perf_counter()
    for offset in range(0, count, BATCH):
        with platform.session() as session, session.begin():
            platform.ledger.append_many(session, _records(start + offset, BATCH, now))
        if (offset + BATCH) % SEAL_EVERY == 0:
            platform.sealer.seal_now()
    platform.sealer.seal_now()
    return time.perf_counter() - started


def _anchor_lags(platform: Platform, now: datetime, samples: int) -> list[float]:
    publishing = platform.publishing
    assert publishing is not None and publishing.anchorer is not None
    anchorer = publishing.anchorer
    lags = []
    for i in range(samples):
        with platform.session() as session, session.begin():
            platform.ledger.append_many(session, _records(10**8 + i * BATCH, BATCH, now))
        blocks = platform.sealer.seal_now()
        sealed = time.perf_counter()
        size = blocks[-1].block.tree_size
        deadline = sealed + 30
        while anchorer.anchored_size < size and time.perf_counter() < deadline:
            time.sleep(0.005)
        lags.append(time.perf_counter() - sealed)
    return lags


def _side_by_side(platform: Platform, now: datetime, start: int, chunk: int) -> tuple[float, float]:
    """Entries/s with publishing off and on: chunks off, on, on, off (the chain restarts)."""
    publishing = platform.publishing
    assert publishing is not None
    seconds = {False: 0.0, True: 0.0}
    for i, on in enumerate((False, True, True, False)):
        if on:
            publishing.start()
            _first_round(platform)  # steady state: start-up's own anchor is not an append cost
        else:
            publishing.stop()
        seconds[on] += _append(platform, 2 * 10**8 + start + i * chunk, chunk, now)
    return 2 * chunk / seconds[False], 2 * chunk / seconds[True]


def _first_round(platform: Platform) -> None:
    """Wait (30 s at most) until a just-started publisher anchored the newest checkpoint."""
    publishing = platform.publishing
    assert publishing is not None and publishing.anchorer is not None
    with platform.session() as session:
        size = platform.ledger.sealed_size(session)
    deadline = time.perf_counter() + 30
    while publishing.anchorer.anchored_size < size and time.perf_counter() < deadline:
        time.sleep(0.005)


def _cosign_rounds(platform: Platform, now: datetime, start: int, rounds: int) -> float:
    """Median ms of one witness round (publishing stopped: nothing else asks the witness)."""
    publishing = platform.publishing
    assert publishing is not None
    endpoints = witness_endpoints(platform.settings)
    with platform.session() as session:
        known = cosigned_sizes(session)  # as the platform resumes: no 409 first
    for endpoint in endpoints:
        endpoint.known_size = known.get(endpoint.verifier.name, 0)
    publisher = Publisher(
        platform.ledger, platform.sessions, witnesses=endpoints, store=MemoryCosignatures()
    )
    timings = []
    for i in range(rounds + 1):
        with platform.session() as session, session.begin():
            platform.ledger.append_many(session, _records(3 * 10**8 + start + i * 10, 10, now))
        platform.sealer.seal_now()
        started = time.perf_counter()
        if publisher.publish_now() != 1:
            raise RuntimeError(f"the witness did not cosign: {publisher.refusals}")
        if i:  # the first round warms the connection
            timings.append((time.perf_counter() - started) * 1000)
    publisher.stop()
    return report.median(timings)


if __name__ == "__main__":
    print(run())

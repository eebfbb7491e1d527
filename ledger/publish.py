"""Publishing checkpoints: collect witness cosignatures, store them, anchor on a chain.

The `Publisher` runs beside the sealer, in its own thread, woken after each seal. It
reads the newest checkpoint and the consistency proofs it needs in a short read
transaction, then, with no transaction open, asks each configured witness (tlog-witness
add-checkpoint, with a timeout) and, when due, anchors on the chain; cosignatures are
stored in their own short transaction (`ledger_cosignatures`), a separate store from
`LogStore`. Refusals are logged and kept (`refusals`), never retried blindly.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import httpx
from sqlalchemy import String, Text, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from crypto.periodic import Periodic
from ledger.anchor import Anchorer
from ledger.checkpoint import Checkpoint
from ledger.errors import LedgerError
from ledger.log import Ledger, LogTransaction
from ledger.models import LedgerBase
from ledger.note import open_note
from ledger.witness import CosignatureV1Verifier, add_checkpoint_request

__all__ = [
    "LedgerCosignature",
    "MemoryCosignatures",
    "Publisher",
    "SqlCosignatures",
    "WitnessEndpoint",
    "cosignature_lines",
    "cosigned_sizes",
    "cosigned_notes",
    "published_checkpoint",
]

log = logging.getLogger(__name__)


class LedgerCosignature(LedgerBase):
    """One witness's cosignature line for the checkpoint of `tree_size`."""

    __tablename__ = "ledger_cosignatures"

    tree_size: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    witness: Mapped[str] = mapped_column(String(255), primary_key=True)
    line: Mapped[str] = mapped_column(Text)
    cosigned_at: Mapped[int]  # Unix seconds, as the witness signed


class SqlCosignatures:
    """Cosignatures in the platform database, each save in its own short transaction."""

    def __init__(self, sessions: Callable[[], Session]) -> None:
        self._sessions = sessions

    def save(self, tree_size: int, lines: dict[str, tuple[str, int]]) -> None:
        with self._sessions() as session, session.begin():
            for witness, (line, at) in lines.items():
                session.merge(
                    LedgerCosignature(
                        tree_size=tree_size, witness=witness, line=line, cosigned_at=at
                    )
                )


@dataclass
class MemoryCosignatures:
    """Cosignatures in memory (tests, tools)."""

    stored: dict[int, dict[str, str]] = field(default_factory=dict)

    def save(self, tree_size: int, lines: dict[str, tuple[str, int]]) -> None:
        self.stored.setdefault(tree_size, {}).update({w: line for w, (line, _) in lines.items()})

    def lines(self) -> dict[int, list[str]]:
        return {size: [by[w] for w in sorted(by)] for size, by in self.stored.items()}


def cosignature_lines(tx: LogTransaction, tree_size: int) -> list[str]:
    """The stored cosignature lines of the checkpoint of `tree_size`, by witness name."""
    if not isinstance(tx, Session):
        return []
    query = (
        select(LedgerCosignature.line)
        .where(LedgerCosignature.tree_size == tree_size)
        .order_by(LedgerCosignature.witness)
    )
    return list(tx.scalars(query))


def published_checkpoint(ledger: Ledger, tx: LogTransaction) -> tuple[int, str]:
    """The newest checkpoint note with the witness cosignatures it has, and its tree size.

    Signed-note format: each cosignature is one more signature line; a verifier ignores
    lines by keys it does not know, so the note stays valid for log-key-only checkers.
    """
    note = ledger.checkpoint(tx)
    size = int(note.split("\n", 2)[1])
    return size, note + "".join(cosignature_lines(tx, size))


def cosigned_sizes(tx: LogTransaction) -> dict[str, int]:
    """The largest tree size each witness cosigned, as stored (a restart resumes from it)."""
    if not isinstance(tx, Session):
        return {}
    query = select(LedgerCosignature.witness, func.max(LedgerCosignature.tree_size)).group_by(
        LedgerCosignature.witness
    )
    return {witness: int(size) for witness, size in tx.execute(query)}


def cosigned_notes(tx: LogTransaction) -> dict[int, list[str]]:
    """Stored cosignature lines by tree size (empty for a non-SQL store)."""
    if not isinstance(tx, Session):
        return {}
    found: dict[int, list[str]] = {}
    for row in tx.scalars(select(LedgerCosignature).order_by(LedgerCosignature.witness)):
        found.setdefault(row.tree_size, []).append(row.line)
    return found


@dataclass
class WitnessEndpoint:
    """A witness the log asks: its add-checkpoint URL and its cosignature/v1 verifier key."""

    url: str
    verifier: CosignatureV1Verifier
    known_size: int = 0


class Publisher:
    """Gets the newest checkpoint cosigned by the witnesses and anchored when due."""

    def __init__(
        self,
        ledger: Ledger,
        transactions: Callable[[], AbstractContextManager[LogTransaction]],
        *,
        witnesses: list[WitnessEndpoint],
        store: SqlCosignatures | MemoryCosignatures,
        anchorer: Anchorer | None = None,
        timeout_s: float = 2.0,
        quorum: int | None = None,
        on_published: Callable[[int], None] | None = None,
    ) -> None:
        self._ledger = ledger
        self._transactions = transactions
        self.witnesses = witnesses
        self._store = store
        self.anchorer = anchorer
        self._client = httpx.Client(timeout=timeout_s)
        self._lock = threading.Lock()
        self._ticking: Periodic | None = None
        self._first = True
        self.refusals: list[str] = []
        self.cosigned_size = 0
        self.published = threading.Condition()
        # Cosignatures a checkpoint should get; fewer is logged (auditors enforce theirs).
        self.quorum = len(witnesses) if quorum is None else quorum
        # Called with a tree size before its checkpoint leaves the process (a restore
        # must never go below a checkpoint a witness holds).
        self._on_published = on_published
        # witness name -> the last tree size it was asked (or cosigned, before a restart)
        self._asked = {w.verifier.name: w.known_size for w in witnesses if w.known_size}

    # -- the sealer calls this after each seal --------------------------------------------

    def sealed(self, blocks: int) -> None:
        if self.anchorer is not None:
            self.anchorer.sealed(blocks)
        if self._ticking is not None:
            self._ticking.wake()

    def _read(self) -> tuple[str, Checkpoint] | None:
        with self._transactions() as tx:
            sealed = self._ledger.latest(tx)
        if sealed is None:
            return None
        text = sealed.checkpoint.partition("\n\n")[0] + "\n"
        return sealed.checkpoint, Checkpoint.parse(text)

    def _proof(self, first: int, second: int) -> list[bytes]:
        with self._transactions() as tx:
            return self._ledger.consistency_proof(tx, first, second)

    def publish_now(self, *, anchor: bool | None = None) -> int:
        """Publish the newest checkpoint; returns the number of cosignatures collected."""
        with self._lock:
            counted = self.anchorer.pending if self.anchorer is not None else 0
            current = self._read()
            if current is None:
                return 0
            note, checkpoint = current
            lines: dict[str, tuple[str, int]] = {}
            # Each witness is asked once per tree size (a timer wake-up with nothing new
            # sealed asks nobody); an unreachable one is asked again next round.
            due = [w for w in self.witnesses if self._asked.get(w.verifier.name) != checkpoint.size]
            if due and self._on_published is not None:
                self._on_published(checkpoint.size)
            for witness in due:
                got = self._ask(witness, note, checkpoint)
                if got is not None:
                    lines[witness.verifier.name] = got
            if lines:
                self._store.save(checkpoint.size, lines)
                self.cosigned_size = checkpoint.size
            if due and len(lines) < self.quorum:
                log.warning(
                    "checkpoint %d cosigned by %d of %d witnesses (quorum %d)",
                    checkpoint.size,
                    len(lines),
                    len(self.witnesses),
                    self.quorum,
                )
            if self.anchorer is not None and (anchor or (anchor is None and self.anchorer.due())):
                self.anchorer.anchor(checkpoint.size, checkpoint.root_hash, counted=counted)
            with self.published:
                self.published.notify_all()
            return len(lines)

    def _ask(
        self, witness: WitnessEndpoint, note: str, checkpoint: Checkpoint
    ) -> tuple[str, int] | None:
        for _ in range(2):  # once more after a 409 that tells us the witness's size
            old = witness.known_size if witness.known_size <= checkpoint.size else 0
            proof = self._proof(old, checkpoint.size) if 0 < old < checkpoint.size else []
            body = add_checkpoint_request(old, proof, note)
            try:
                response = self._client.post(witness.url, content=body)
            except httpx.HTTPError as exc:
                log.warning("witness %s unreachable: %s", witness.url, exc.__class__.__name__)
                return None
            if response.status_code == 409 and response.headers.get("content-type", "").startswith(
                "text/x.tlog.size"
            ):
                known = int(response.text.strip() or 0)
                if known == witness.known_size or known > checkpoint.size:
                    self._refused(witness, checkpoint, response)
                    return None
                witness.known_size = known
                continue
            if response.status_code != 200:
                self._refused(witness, checkpoint, response)
                return None
            self._asked[witness.verifier.name] = checkpoint.size
            return self._accept(witness, note, response.text)
        return None

    def _accept(self, witness: WitnessEndpoint, note: str, line: str) -> tuple[str, int] | None:
        if not line.endswith("\n") or line.count("\n") != 1:
            log.warning("witness %s answered a malformed cosignature", witness.url)
            return None
        try:
            _, names = open_note((note + line).encode(), [witness.verifier])
        except LedgerError:
            log.warning("witness %s answered a cosignature that does not verify", witness.url)
            return None
        if names != [witness.verifier.name]:
            return None
        size = int(note.split("\n", 2)[1])
        witness.known_size = size
        blob = line.rsplit(" ", 1)[1]
        at = int.from_bytes(base64.b64decode(blob)[4:12], "big")
        return line, at

    def _refused(
        self, witness: WitnessEndpoint, checkpoint: Checkpoint, response: httpx.Response
    ) -> None:
        self._asked[witness.verifier.name] = checkpoint.size  # refused: not again
        why = response.headers.get("x-witness-refusal") or response.text.strip()
        message = (
            f"witness {witness.verifier.name} refused tree size {checkpoint.size} "
            f"(HTTP {response.status_code}): {why}"
        )
        self.refusals.append(message)
        log.warning("%s", message)

    # -- the thread -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the thread; its first round publishes (and anchors) the newest checkpoint."""
        if self._ticking is not None:
            return
        interval = self.anchorer.schedule.every_s if self.anchorer is not None else None
        self._first = True
        self._ticking = Periodic(
            interval, thread="ledger-publisher", join_timeout_s=None, job=self._round
        )
        self._ticking.wake()
        self._ticking.start()

    def stop(self) -> None:
        if self._ticking is not None:
            self._ticking.stop()
            self._ticking = None
        self._client.close()

    def _round(self) -> None:
        try:
            self.publish_now(anchor=True if self._first else None)
            self._first = False
        except Exception:  # the thread must survive a bad moment; the next seal retries
            log.exception("ledger publishing failed")

"""Witness cosigning (C2SP tlog-witness, tlog-cosignature): check consistency, then cosign.

A witness keeps, per log origin, the last checkpoint it cosigned. It cosigns a new
checkpoint only with an RFC 9162 consistency proof from that one, so it never signs
two trees that are not prefixes of each other: a fork or a rollback is refused
(HTTP 409 / 422), and the refusal is logged and returned to the log.

cosignature/v1 (C2SP tlog-cosignature): the witness signs, with Ed25519,
    "cosignature/v1", "time <unix seconds>", then the checkpoint body (lines)
and appends a note signature line whose bytes are key ID (4) ‖ time (8, big-endian)
‖ signature (64). Its key ID is SHA-256(name ‖ 0x0A ‖ 0x04 ‖ public key)[:4], so a
cosignature can never be mistaken for a log signature by the same key (0x01).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Final

from crypto import SignatureAlgorithm, SigningKeyPair, load_verifying_key
from ledger.checkpoint import Checkpoint
from ledger.errors import LedgerError, NoteError, ProofError, WitnessRefusal
from ledger.merkle import hasher, verify_consistency
from ledger.note import (
    NoteKey,
    NoteVerifier,
    open_note,
    register_verifier_algorithm,
)

__all__ = [
    "ALG_COSIGNATURE_V1",
    "CosignatureV1Signer",
    "CosignatureV1Verifier",
    "LogConfig",
    "Witness",
    "WitnessState",
    "add_checkpoint_request",
    "cosigned_message",
    "parse_add_checkpoint",
    "serve_witness",
]

# C2SP signed-note "Signature types": 0x04 is the timestamped Ed25519 cosignature/v1.
ALG_COSIGNATURE_V1: Final = 0x04
_MAX_PROOF: Final = 63  # a tree of 2**63 leaves needs at most 2*63 hashes; we cap lower
_MAX_BODY: Final = 64 * 1024

log = logging.getLogger(__name__)


def cosigned_message(body: str, timestamp: int) -> bytes:
    """What a cosignature/v1 signs: the header lines, then the checkpoint body."""
    if not 0 <= timestamp < 2**64:
        raise NoteError("cosignature time must be a uint64")
    return f"cosignature/v1\ntime {timestamp}\n".encode() + body.encode("utf-8")


class CosignatureV1Verifier(NoteKey):
    """A `NoteVerifier` for one witness key: checks time ‖ Ed25519 over the cosigned message."""

    __slots__ = ("_public",)

    def __init__(self, name: str, public_key: bytes) -> None:
        if len(public_key) != 32:
            raise NoteError("a cosignature/v1 key is a 32-byte Ed25519 key", name=name)
        super().__init__(name, bytes([ALG_COSIGNATURE_V1]) + public_key)
        self._public = load_verifying_key(SignatureAlgorithm.ED25519, public_key)

    def timestamp(self, sig: bytes) -> int:
        return int.from_bytes(sig[:8], "big")

    def verify(self, msg: bytes, sig: bytes) -> bool:
        if len(sig) != 8 + 64:
            return False
        timestamp = int.from_bytes(sig[:8], "big")
        message = f"cosignature/v1\ntime {timestamp}\n".encode() + msg
        return self._public.verify(message, sig[8:])


register_verifier_algorithm(ALG_COSIGNATURE_V1, CosignatureV1Verifier)


class CosignatureV1Signer:
    """A witness's Ed25519 key, signing cosignature/v1 lines at a given time."""

    def __init__(self, name: str, key: SigningKeyPair) -> None:
        if key.algorithm is not SignatureAlgorithm.ED25519:
            raise NoteError("a witness key is Ed25519", algorithm=str(key.algorithm))
        self._key = key
        self._verifier = CosignatureV1Verifier(name, key.public_bytes())

    @property
    def name(self) -> str:
        return self._verifier.name

    @property
    def key_hash(self) -> int:
        return self._verifier.key_hash

    def verifier(self) -> CosignatureV1Verifier:
        return self._verifier

    def cosign(self, body: str, timestamp: int) -> str:
        """The note signature line cosigning checkpoint `body` at `timestamp` (Unix s)."""
        sig = self._key.sign(cosigned_message(body, timestamp))
        blob = self.key_hash.to_bytes(4, "big") + timestamp.to_bytes(8, "big") + sig
        return f"\u2014 {self.name} {base64.b64encode(blob).decode('ascii')}\n"


@dataclass(frozen=True)
class LogConfig:
    """A log the witness follows: its origin, the log's verifier key and tree hash."""

    origin: str
    verifier: NoteVerifier
    hash_name: str = "sha256"


class WitnessState:
    """The last cosigned (size, root) per origin; in a JSON file when `path` is given."""

    def __init__(self, path: Path | None = None) -> None:
        self._path = path
        self._heads: dict[str, tuple[int, bytes]] = {}
        if path is not None and path.exists():
            for origin, head in json.loads(path.read_text()).items():
                self._heads[origin] = (int(head["size"]), base64.b64decode(head["root"]))

    def get(self, origin: str) -> tuple[int, bytes] | None:
        return self._heads.get(origin)

    def put(self, origin: str, size: int, root: bytes) -> None:
        """Record and persist (write, fsync, rename) before the cosignature is returned."""
        self._heads[origin] = (size, root)
        if self._path is None:
            return
        data = {
            o: {"size": s, "root": base64.b64encode(r).decode()}
            for o, (s, r) in self._heads.items()
        }
        tmp = self._path.with_suffix(".tmp")
        with tmp.open("w") as f:
            json.dump(data, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._path)


def parse_add_checkpoint(body: bytes) -> tuple[int, list[bytes], bytes]:
    """tlog-witness add-checkpoint body: "old N", proof lines, a blank line, the note."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise WitnessRefusal("request is not UTF-8", status=400) from None
    head, sep, note = text.partition("\n\n")
    lines = head.split("\n")
    if not sep or not lines[0].startswith("old "):
        raise WitnessRefusal("request must start with 'old <size>' and a blank line", status=400)
    size_text = lines[0][4:]
    if not size_text.isdigit() or (size_text.startswith("0") and size_text != "0"):
        raise WitnessRefusal("old size must be decimal without leading zeroes", status=400)
    if len(lines) - 1 > _MAX_PROOF:
        raise WitnessRefusal("consistency proof is too long", status=400)
    proof: list[bytes] = []
    for line in lines[1:]:
        try:
            proof.append(base64.b64decode(line, validate=True))
        except ValueError:
            raise WitnessRefusal("proof line is not base64", status=400) from None
    return int(size_text), proof, note.encode("utf-8")


def add_checkpoint_request(old_size: int, proof: list[bytes], note: str) -> bytes:
    """The request body a log sends (the inverse of `parse_add_checkpoint`)."""
    lines = [f"old {old_size}"] + [base64.b64encode(h).decode("ascii") for h in proof]
    return ("\n".join(lines) + "\n\n" + note).encode("utf-8")


class Witness:
    """Cosigns checkpoints of known logs that extend the last one it cosigned."""

    def __init__(
        self,
        signer: CosignatureV1Signer,
        logs: Mapping[str, LogConfig],
        state: WitnessState,
        clock: Callable[[], float],
    ) -> None:
        self.signer = signer
        self._logs = dict(logs)
        self._state = state
        self._clock = clock
        self._lock = threading.Lock()
        self.refusals: list[str] = []

    def known(self, origin: str) -> tuple[int, bytes] | None:
        return self._state.get(origin)

    def add_checkpoint(self, body: bytes) -> str:
        """Handle one add-checkpoint request; the cosignature line, or `WitnessRefusal`."""
        try:
            return self._add(body)
        except WitnessRefusal as exc:
            if exc.status in (409, 422):  # a fork or rollback attempt: make it visible
                self.refusals.append(exc.detail)
                log.warning("witness %s refused a checkpoint: %s", self.signer.name, exc.detail)
            raise

    def _add(self, body: bytes) -> str:
        # tlog-witness add-checkpoint, in the spec's order of checks.
        if len(body) > _MAX_BODY:
            raise WitnessRefusal("request too large", status=400)
        old_size, proof, note = parse_add_checkpoint(body)
        text = note.decode("utf-8", "replace")
        origin = text.split("\n", 1)[0]
        config = self._logs.get(origin)
        if config is None:
            raise WitnessRefusal(f"unknown log {origin!r}", status=404)
        try:
            opened, _ = open_note(note, [config.verifier])
            checkpoint = Checkpoint.parse(opened)
        except LedgerError as exc:
            why = f"checkpoint not signed by the log: {exc.detail}"
            raise WitnessRefusal(why, status=403) from None
        if old_size > checkpoint.size:
            raise WitnessRefusal("old size is larger than the checkpoint", status=400)
        with self._lock:
            known_size, known_root = self._state.get(origin) or (0, b"")
            if old_size != known_size:
                raise WitnessRefusal(
                    f"witness knows tree size {known_size} of {origin}, not {old_size}",
                    status=409,
                    known_size=known_size,
                )
            if old_size == checkpoint.size and known_size and known_root != checkpoint.root_hash:
                raise WitnessRefusal(
                    f"fork: tree size {checkpoint.size} of {origin} has another root than the "
                    "one this witness cosigned",
                    status=409,
                    known_size=known_size,
                )
            if known_size:
                try:
                    verify_consistency(
                        hasher(config.hash_name),
                        known_size,
                        checkpoint.size,
                        known_root,
                        checkpoint.root_hash,
                        proof,
                    )
                except ProofError as exc:
                    raise WitnessRefusal(
                        f"fork or rewrite: tree size {checkpoint.size} of {origin} is not "
                        f"consistent with the cosigned size {known_size} ({exc.detail})",
                        status=422,
                        known_size=known_size,
                    ) from None
            self._state.put(origin, checkpoint.size, checkpoint.root_hash)
            timestamp = int(self._clock())
        return self.signer.cosign(opened, timestamp)


class _Handler(BaseHTTPRequestHandler):
    witness: Witness

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path.rstrip("/") != "/add-checkpoint":
            self._answer(404, "text/plain", "not found\n")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            self._answer(400, "text/plain", "request too large\n")
            return
        try:
            line = self.witness.add_checkpoint(self.rfile.read(length))
        except WitnessRefusal as exc:
            if exc.status == 409 and exc.known_size is not None:
                # tlog-witness: 409 carries the witness's size so the log can retry.
                self._answer(409, "text/x.tlog.size", f"{exc.known_size}\n", exc.detail)
            else:
                self._answer(exc.status, "text/plain", exc.detail + "\n")
            return
        self._answer(200, "text/plain; charset=utf-8", line)

    def _answer(self, status: int, ctype: str, body: str, reason: str | None = None) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        if reason:
            self.send_header("X-Witness-Refusal", reason.encode("ascii", "replace").decode())
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        log.info("witness http: " + format, *args)


def serve_witness(witness: Witness, host: str, port: int) -> ThreadingHTTPServer:
    """A tlog-witness HTTP server (POST /add-checkpoint); call `serve_forever()` on it."""
    handler = type("WitnessHandler", (_Handler,), {"witness": witness})
    return ThreadingHTTPServer((host, port), handler)

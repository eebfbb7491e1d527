"""Witness cosigning and chain anchoring beside the sealer (issue 19), built with the platform."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import crypto
from gateway.settings import Settings, SettingsError, witness_spec
from ledger import LedgerError
from ledger.anchor import Anchorer, AnchorSchedule, open_writer
from ledger.note import parse_verifier_key
from ledger.publish import Publisher, SqlCosignatures, WitnessEndpoint, cosigned_sizes
from ledger.witness import CosignatureV1Verifier

if TYPE_CHECKING:
    from gateway.platform import Platform

log = logging.getLogger("pdx.publishing")


class LedgerPublishing:
    """Witness cosigning and chain anchoring beside the sealer (PDX_WITNESSES, PDX_ANCHOR).

    Built with the platform at no cost; the app's lifespan starts it (the chain key from
    the KMS in its own short transaction, then the chain and the publisher thread with
    no transaction open) and stops it after the sealer's final seal.
    """

    def __init__(self, platform: Platform) -> None:
        self._platform = platform
        self.publisher: Publisher | None = None
        platform.sealer.on_seal(self._sealed)

    @property
    def enabled(self) -> bool:
        settings = self._platform.settings
        return bool(settings.witnesses) or settings.anchor != "off"

    @property
    def anchorer(self) -> Anchorer | None:
        return self.publisher.anchorer if self.publisher is not None else None

    def _sealed(self, blocks: int) -> None:
        if self.publisher is not None:
            self.publisher.sealed(blocks)

    def start(self) -> None:
        if not self.enabled or self.publisher is not None:
            return
        platform, settings = self._platform, self._platform.settings
        sessions = platform.sessions
        witnesses = witness_endpoints(settings)
        with platform.session() as session:
            # Each witness's last cosigned size: a restart sends the right "old" at once.
            known = cosigned_sizes(session)
        for witness in witnesses:
            witness.known_size = known.get(witness.verifier.name, 0)
        publisher = Publisher(
            platform.ledger,
            sessions,
            witnesses=witnesses,
            store=SqlCosignatures(sessions),
            anchorer=self._anchorer() if settings.anchor != "off" else None,
            timeout_s=settings.witness_timeout_ms / 1000,
            quorum=settings.witness_quorum_needed,
            on_published=self._published,
        )
        self.publisher = publisher
        publisher.start()

    def stop(self) -> None:
        if self.publisher is not None:
            self.publisher.stop()
            self.publisher = None

    def _published(self, tree_size: int) -> None:
        from exchange.backup import record_published

        record_published(self._platform.settings.published_path, tree_size)

    def _anchorer(self) -> Anchorer:
        platform, settings = self._platform, self._platform.settings
        with platform.session() as session, session.begin():
            key = crypto.unsafe_export_chain_key(platform.keystore, session, now=platform.now())
        # No transaction from here on: the chain may take seconds per call.
        url = None if settings.anchor == "embedded" else settings.anchor
        writer = open_writer(
            url, key.private_scalar, contract=settings.anchor_contract, record=settings.anchor_file
        )
        log.info("anchoring on %s as %s", settings.anchor, writer.account)

        def proof(first: int, second: int) -> list[bytes]:
            with platform.session() as session:
                return platform.ledger.consistency_proof(session, first, second)

        schedule = AnchorSchedule(settings.anchor_every_blocks, float(settings.anchor_every_s))
        return Anchorer(writer, settings.ledger_origin, proof, schedule)


def witness_endpoints(settings: Settings) -> list[WitnessEndpoint]:
    """PDX_WITNESSES as endpoints: each URL prefix's add-checkpoint and its verifier."""
    endpoints = []
    for spec in settings.witnesses:
        name, url, key = witness_spec(spec)
        try:
            verifier = parse_verifier_key(key)
        except (LedgerError, ValueError) as exc:
            raise SettingsError(f"PDX_WITNESSES: the key of {name!r} does not parse") from exc
        if not isinstance(verifier, CosignatureV1Verifier):
            raise SettingsError(f"PDX_WITNESSES: the key of {name!r} is not a cosignature/v1 key")
        url = url.rstrip("/")
        if not url.endswith("/add-checkpoint"):
            url += "/add-checkpoint"
        endpoints.append(WitnessEndpoint(url, verifier))
    return endpoints

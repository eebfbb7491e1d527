"""The running platform asks `pdx witness` processes to cosign and serves checkpoints cosigned."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from audit.verify import WitnessPolicy, verify_export
from gateway.app import create_app
from gateway.platform import Platform, build_platform, initialise
from gateway.settings import Settings, SettingsError
from ledger import export, open_note, parse_verifier_key
from ledger.publish import SqlCosignatures, cosignature_lines, cosigned_notes
from tests.helpers.i19_wiring import pdx_witness, wait_for, witness_log
from tests.helpers.net import free_port
from tests.test_ledger_log import append, verifier_key

W1 = "w1.example/witness"


def _started(settings: Settings) -> Platform:
    platform = build_platform(settings)
    initialise(platform)
    return platform


def _log_key(settings: Settings) -> str:
    first = _started(settings)
    try:
        return verifier_key(first)
    finally:
        first.engine.dispose()


def _served(client: TestClient, verifiers: list[object]) -> tuple[int, list[str], bytes]:
    """GET the checkpoint with no token: (tree size, names whose signatures verify, note)."""
    r = client.get("/v1/ledger/checkpoint")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    text, names = open_note(r.content, verifiers)  # type: ignore[arg-type]
    return int(text.split("\n")[1]), names, r.content


def test_platform_publishes_to_a_pdx_witness_process_and_serves_it_cosigned(
    settings: Settings, tmp_path: Path
) -> None:
    base = settings.replace(seed_demo=False)
    log_key = _log_key(base)
    with pdx_witness(tmp_path, W1, log_key, dict(os.environ)) as (url, witness_key):
        platform = _started(base.replace(witnesses=(f"{W1}={url}={witness_key}",)))
        verifiers = [parse_verifier_key(log_key), parse_verifier_key(witness_key)]
        try:
            with TestClient(create_app(platform)) as client:
                # The key is public too, and it is the one the witness follows.
                assert client.get("/v1/ledger/verifier-key").text.strip() == log_key
                # The publisher's thread cosigns the checkpoint there is at start...
                first = wait_for(
                    "the first cosignature",
                    lambda: (s := _served(client, verifiers))[1] == [base.ledger_origin, W1] and s,
                )
                # ...and, woken by the sealer, each newly sealed one, with a proof from it.
                append(platform, 40)
                platform.sealer.seal_now()
                second = wait_for(
                    "the cosigned second checkpoint",
                    lambda: (
                        (s := _served(client, verifiers))[0] == first[0] + 40
                        and s[1] == [base.ledger_origin, W1]
                        and s
                    ),
                )
                publishing = platform.publishing
                assert publishing is not None and publishing.publisher is not None
                assert publishing.publisher.refusals == []
            # A restart resumes from the stored cosignatures: its first request names the
            # witness's size, so the witness has nothing to refuse (no 409 in its log).
            with TestClient(create_app(platform)) as client:
                append(platform, 3)
                platform.sealer.seal_now()
                wait_for(
                    "a cosignature after the restart",
                    lambda: (
                        _served(client, verifiers)[0:2] == (second[0] + 3, [base.ledger_origin, W1])
                    ),
                )
            assert "refused" not in witness_log(tmp_path, W1).read_text()
            # What it stored (ledger_cosignatures on this backend) rides on the export.
            with platform.session() as session:
                stored = cosigned_notes(session)
                assert cosignature_lines(session, second[0]) == stored[second[0]]
            assert {first[0], second[0]} <= set(stored)
            assert second[2].decode().endswith(stored[second[0]][0])
            out = tmp_path / "export"
            with platform.session() as session:
                export(session, platform.ledger, out)
            policy = WitnessPolicy.parse([witness_key], 1)
            report = verify_export(out, [log_key], witnesses=policy)
            assert report.ok, report.problem
            assert report.witnessed_size == second[0] + 3
            # A served checkpoint is published: a restore must not go below it.
            assert f'"tree_size": {second[0] + 3}' in base.published_path.read_text()
        finally:
            platform.engine.dispose()


def test_an_unreachable_witness_delays_nothing_and_is_asked_again(
    settings: Settings, tmp_path: Path
) -> None:
    base = settings.replace(seed_demo=False, witness_timeout_ms=500)
    log_key = _log_key(base)
    # The witness's key first (its process, briefly), then nothing listens on its port.
    with pdx_witness(tmp_path, W1, log_key, dict(os.environ)) as (url, witness_key):
        pass
    port = int(url.rsplit(":", 1)[1])
    platform = _started(base.replace(witnesses=(f"{W1}={url}={witness_key}",)))
    verifiers = [parse_verifier_key(log_key), parse_verifier_key(witness_key)]
    try:
        with TestClient(create_app(platform)) as client:
            publisher = platform.publishing.publisher  # type: ignore[union-attr]
            assert publisher is not None
            size, names, _ = _served(client, verifiers)
            assert names == [base.ledger_origin]  # served, not held up by the witness
            append(platform, 5)
            assert platform.sealer.seal_now()  # sealing never waits for witnesses
            # Offered to a witness is published, even unanswered: a restore must not go
            # below it (recorded by the publisher's thread; nobody GETs it here).
            wait_for(
                "the offered size recorded as published",
                lambda: f'"tree_size": {size + 5}' in base.published_path.read_text(),
            )
            # The witness comes back (same key and state, same port): the next seal's
            # round reaches it and it cosigns the newest checkpoint.
            with pdx_witness(tmp_path, W1, log_key, dict(os.environ), port=port) as (_, again):
                assert again == witness_key
                append(platform, 5)
                platform.sealer.seal_now()
                wait_for(
                    "a cosignature after the witness came back",
                    lambda: _served(client, verifiers)[1:2] == ([base.ledger_origin, W1],),
                )
            assert publisher.refusals == []
    finally:
        platform.engine.dispose()


def test_sql_cosignatures_keep_one_line_per_witness_and_size(settings: Settings) -> None:
    platform = _started(settings.replace(seed_demo=False))
    try:
        store = SqlCosignatures(platform.sessions)
        store.save(7, {"b.example/w": ("— b.example/w AAAA\n", 10)})
        store.save(7, {"a.example/w": ("— a.example/w BBBB\n", 11)})
        store.save(7, {"b.example/w": ("— b.example/w CCCC\n", 12)})  # a re-cosignature
        store.save(9, {"a.example/w": ("— a.example/w DDDD\n", 13)})
        with platform.session() as session:
            assert cosigned_notes(session) == {
                7: ["— a.example/w BBBB\n", "— b.example/w CCCC\n"],
                9: ["— a.example/w DDDD\n"],
            }
            assert cosignature_lines(session, 8) == []
    finally:
        platform.engine.dispose()


@pytest.mark.parametrize(
    ("witnesses", "quorum", "message"),
    [
        (("w=ftp://x=k",), 0, "is not name=http"),
        (("w=http://127.0.0.1:1",), 0, "is not name=http"),
        (("w=http://127.0.0.1:1=other+01020304+AAAA",), 0, "names another witness"),
        ((), 1, "PDX_WITNESS_QUORUM"),
    ],
)
def test_witness_settings_are_refused_with_the_variable_named(
    tmp_path: Path, witnesses: tuple[str, ...], quorum: int, message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings(
            home=tmp_path, database_url="sqlite://", witnesses=witnesses, witness_quorum=quorum
        )


def test_from_env_reads_the_publishing_block(tmp_path: Path) -> None:
    port = free_port()
    key = "w+01020304+BAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
    env = {
        "PDX_HOME": str(tmp_path),
        "PDX_WITNESSES": f"w=http://127.0.0.1:{port}={key}, ",
        "PDX_WITNESS_QUORUM": "1",
        "PDX_ANCHOR_EVERY_BLOCKS": "3",
    }
    settings = Settings.from_env(env)
    assert settings.witnesses == (f"w=http://127.0.0.1:{port}={key}",)
    assert settings.witness_quorum_needed == 1 and settings.anchor_every_blocks == 3
    assert settings.anchor == "embedded"  # `make run` anchors on the embedded chain
    assert Settings.from_env({**env, "PDX_ANCHOR": "off"}).anchor == "off"
    with pytest.raises(SettingsError, match="PDX_ANCHOR must"):
        Settings.from_env({**env, "PDX_ANCHOR": "besu"})

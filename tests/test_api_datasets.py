"""Dataset registration through the API, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

import audit
import crypto
import exchange
from gateway.platform import Platform
from tests.conftest import EXAMPLE_CSV, login
from tests.helpers.api import assert_problem


def metadata(name: str = "transit trips", level: str = "general-4", **over: Any) -> str:
    doc: dict[str, Any] = {
        "name": name,
        "classification_path": ["transport", "public transit", "card trips"],
        "level": level,
        "impact_object": "individual-rights",
        "impact_degree": "serious",
        "source_agency": "Municipal Transport Bureau",
        "accountable_department": "Transit Data Office",
        "pi": True,
        "sensitive_pi": True,
        "share_attribute": "conditional",
        "open_attribute": "conditional",
    }
    doc.update(over)
    return json.dumps(doc, ensure_ascii=False)


def register(
    api: TestClient, headers: dict[str, str], content: bytes, meta: str | None = None
) -> Any:
    files: dict[str, Any] = {"file": ("data.csv", content, "text/csv")}
    if meta is not None:
        files = {"metadata": (None, meta, "application/json"), **files}
    return api.post("/v1/datasets", headers=headers, files=files)


def example_rows() -> list[dict[str, str]]:
    with open(EXAMPLE_CSV, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def counts(platform: Platform) -> tuple[int, int, int]:
    """(datasets, data keys, objects on disk); also checks each dataset has its ledger entry."""
    with platform.session() as s:
        datasets = s.scalar(select(func.count()).select_from(exchange.Dataset)) or 0
        # Dataset content keys only: seeding seals other secrets (people's TOTP) too.
        keys = (
            s.scalar(
                select(func.count())
                .select_from(crypto.models.DataKeyRecord)
                .where(crypto.models.DataKeyRecord.object_ref.like("dataset:%"))
            )
            or 0
        )
        entries = platform.ledger.entries(s, type="dataset.registered")
        # No operation without its entry, no entry without its operation; indexes dense.
        assert sorted(e.index for e in entries) == [e.index for e in entries]
        assert len(entries) == datasets
        assert platform.ledger.size(s) == len(platform.ledger.entries(s))
    objects = len(list(platform.catalog.objects.root.iterdir()))
    return datasets, keys, objects


@pytest.fixture
def provider(api: TestClient, creds: dict[str, Any]) -> dict[str, str]:
    return login(api, creds, "provider-transport")


def test_declared_level_below_content_is_refused_naming_the_field(
    api: TestClient, provider: dict[str, str], platform: Platform
) -> None:
    r = register(api, provider, EXAMPLE_CSV.read_bytes(), metadata(level="general-1"))
    body = assert_problem(r, 422, "level-below-content")
    assert body["field"] in ("id_number", "bank_card")
    assert body["required_level"] == "general-4"
    assert body["field"] in body["detail"]
    assert counts(platform) == (0, 0, 0)
    with platform.session() as s:
        rec = s.scalars(
            select(audit.AuditRecord).where(audit.AuditRecord.event_type.like("dataset.%"))
        ).one()
    assert rec.result == "failure"
    assert rec.request_id == r.headers["x-request-id"]


def test_registration_at_suggested_level_shows_detections(
    api: TestClient, provider: dict[str, str], platform: Platform, creds: dict[str, Any]
) -> None:
    raw = EXAMPLE_CSV.read_bytes()
    r = register(api, provider, raw, metadata(level="general-4"))
    assert r.status_code == 201, r.text
    ds = r.json()
    assert ds["rows"] == len(example_rows())
    assert ds["level"] == ds["suggested_level"] == "general-4"
    fields = {f["name"]: f for f in ds["fields"]}
    assert "id_number" in fields["id_number"]["detections"]
    assert fields["id_number"]["detections"]["id_number"]["ratio"] > 0.9
    assert fields["id_number"]["sensitive_pi"] is True
    assert "mobile" in fields["mobile"]["detections"]
    assert fields["board_station"]["detections"] == {}

    got = api.get(f"/v1/datasets/{ds['id']}", headers=provider).json()
    # Only the registration response names its ledger entry; detail is otherwise equal.
    assert isinstance(ds["ledger_index"], int)
    assert got == {**ds, "ledger_index": None}
    enterprise = login(api, creds, "enterprise-fintech")
    seen = api.get(f"/v1/datasets/{ds['id']}", headers=enterprise).json()
    assert seen["digests"] is None and seen["fields"] == ds["fields"]
    auditor = api.get(f"/v1/datasets/{ds['id']}", headers=login(api, creds, "auditor")).json()
    assert auditor["digests"] == ds["digests"]
    listed = api.get("/v1/datasets", headers=provider).json()
    assert [d["id"] for d in listed["items"]] == [ds["id"]] and listed["total"] == 1

    # Content digests are those of the plaintext; decryption round-trips exactly.
    assert ds["digests"]["sha256"] == "sha256:" + crypto.sha256(raw).hex()
    assert ds["digests"]["sm3"] == "sm3:" + crypto.sm3(raw).hex()
    with platform.session() as s:
        plain = b"".join(exchange.iter_plaintext(platform.catalog, s, ds["id"]))
    assert plain == raw

    # Audited in the same transaction, with the docs/compliance.md AUD-01 fields.
    with platform.session() as s:
        rec = s.scalars(
            select(audit.AuditRecord).where(audit.AuditRecord.event_type == "dataset.registered")
        ).one()
    assert rec.object_id == ds["id"] and rec.result == "success"
    assert rec.data_level == "general-4" and rec.subject_ip and rec.decision_id


def test_no_plaintext_value_anywhere_under_pdx_home(
    api: TestClient, provider: dict[str, str], platform: Platform
) -> None:
    r = register(api, provider, EXAMPLE_CSV.read_bytes(), metadata())
    assert r.status_code == 201
    rows = example_rows()
    needles = [rows[0]["id_number"], rows[1]["id_number"], rows[0]["mobile"] or rows[2]["mobile"]]
    needles = [n.encode() for n in needles if n]
    files = [p for p in platform.settings.home.rglob("*") if p.is_file()]
    assert any(p.suffix == ".pdxs" for p in files)
    for path in files:
        blob = path.read_bytes()
        for needle in needles:
            assert needle not in blob, f"{needle!r} found in {path}"


def test_preview_is_synthetic(api: TestClient, provider: dict[str, str]) -> None:
    ds = register(api, provider, EXAMPLE_CSV.read_bytes(), metadata()).json()
    r = api.get(f"/v1/datasets/{ds['id']}/preview", params={"rows": 50}, headers=provider)
    assert r.status_code == 200
    preview = r.json()
    assert preview["synthetic"] is True
    assert preview["columns"] == [f["name"] for f in ds["fields"]]
    real = {v for row in example_rows() for k, v in row.items() if k != "remarks" and len(v) > 6}
    for row in preview["rows"]:
        assert list(row) == preview["columns"]
        for value in row.values():
            assert value not in real


def test_duplicate_name_for_same_provider_conflicts(
    api: TestClient, provider: dict[str, str], creds: dict[str, Any], platform: Platform
) -> None:
    raw = EXAMPLE_CSV.read_bytes()
    assert register(api, provider, raw, metadata(name="trips")).status_code == 201
    assert_problem(register(api, provider, raw, metadata(name="trips")), 409, "dataset-name-taken")
    other = login(api, creds, "provider-health")
    assert register(api, other, raw, metadata(name="trips")).status_code == 201
    assert counts(platform) == (2, 2, 2)


@pytest.mark.parametrize(
    ("content", "code", "extra"),
    [
        (b"a,b\n1,2\n3,4,5\n", "csv-column-count", {"row": 2, "expected": 2, "found": 3}),
        (b"a,b\n1,2\n\xff\xfe,3\n", "csv-not-utf8", {}),
        (b"", "csv-empty", {}),
        (b"a,b\n", "csv-empty", {}),
        (b"a,a\n1,2\n", "csv-header-invalid", {}),
        (b'a,b\n1,"2\n', "csv-malformed", {}),
    ],
)
def test_bad_csv_is_refused_and_leaves_nothing(
    api: TestClient,
    provider: dict[str, str],
    platform: Platform,
    content: bytes,
    code: str,
    extra: dict[str, Any],
) -> None:
    body = assert_problem(
        register(api, provider, content, metadata(pi=False, sensitive_pi=False)), 422, code
    )
    for k, v in extra.items():
        assert body[k] == v
    assert counts(platform) == (0, 0, 0)


def test_failure_deep_in_a_large_file_leaves_nothing(
    api: TestClient, provider: dict[str, str], platform: Platform
) -> None:
    # ~6 MB of valid rows, then one bad row: the failure comes after many chunks were
    # already hashed, encrypted and written.
    good = EXAMPLE_CSV.read_bytes()
    header, _, body = good.partition(b"\n")
    content = header + b"\n" + body * 4 + b"only,three,fields\n"
    r = register(api, provider, content, metadata())
    body_ = assert_problem(r, 422, "csv-column-count")
    assert body_["row"] == 4 * len(example_rows()) + 1
    assert counts(platform) == (0, 0, 0)


def test_failure_at_commit_leaves_no_row_file_or_key(
    api: TestClient, provider: dict[str, str], platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_record = audit.record

    def failing_record(session: Any, subject: Any, event: Any, *, now: Any) -> Any:
        if event.event_type == "dataset.registered":
            raise RuntimeError("audit store unavailable")
        return real_record(session, subject, event, now=now)

    monkeypatch.setattr(audit, "record", failing_record)
    monkeypatch.setattr("exchange.catalog.audit.record", failing_record)
    api_raise = TestClient(api.app, raise_server_exceptions=False)
    r = register(api_raise, provider, EXAMPLE_CSV.read_bytes(), metadata())
    assert_problem(r, 500, "internal-error")
    assert counts(platform) == (0, 0, 0)


def test_oversized_upload_is_refused(
    api: TestClient, provider: dict[str, str], platform: Platform
) -> None:
    platform.catalog = dataclasses.replace(platform.catalog, max_upload_bytes=100_000)
    platform.settings = platform.settings.replace(max_upload_bytes=100_000)
    body = assert_problem(
        register(api, provider, EXAMPLE_CSV.read_bytes(), metadata()), 413, "upload-too-large"
    )
    assert body["limit_bytes"] == 100_000
    assert counts(platform) == (0, 0, 0)


@pytest.mark.parametrize(
    ("meta", "code"),
    [
        (metadata(level="general-9"), "invalid-metadata"),
        (metadata(open_attribute="sometimes"), "invalid-metadata"),
        (metadata(level="important", open_attribute="open"), "invalid-metadata"),
        (metadata(sensitive_pi=True, pi=False), "invalid-metadata"),
        ("{not json", "invalid-metadata"),
        (None, "invalid-metadata"),
    ],
)
def test_bad_metadata_is_refused(
    api: TestClient, provider: dict[str, str], platform: Platform, meta: str | None, code: str
) -> None:
    assert_problem(register(api, provider, EXAMPLE_CSV.read_bytes(), meta), 422, code)
    assert counts(platform) == (0, 0, 0)


def test_pi_flag_must_match_content(
    api: TestClient, provider: dict[str, str], platform: Platform
) -> None:
    r = register(api, provider, EXAMPLE_CSV.read_bytes(), metadata(pi=False, sensitive_pi=False))
    body = assert_problem(r, 422, "invalid-metadata")
    assert body["field"]


def test_transport_errors(api: TestClient, provider: dict[str, str]) -> None:
    r = api.post("/v1/datasets", headers=provider, content=b"a,b\n1,2\n")
    assert_problem(r, 415, "unsupported-media-type")
    r = api.post(
        "/v1/datasets",
        headers=provider,
        files={"metadata": (None, metadata()), "extra": (None, "x"), "file": ("a.csv", b"a\n1\n")},
    )
    assert_problem(r, 422, "invalid-input")
    r = register(api, provider, b"", metadata())
    assert r.status_code == 422


def test_only_providers_register_and_denials_are_audited(
    api: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    enterprise = login(api, creds, "enterprise-fintech")
    r = register(api, enterprise, EXAMPLE_CSV.read_bytes(), metadata())
    assert_problem(r, 403, "forbidden")
    r = register(api, {}, EXAMPLE_CSV.read_bytes(), metadata())
    assert_problem(r, 401, "unauthenticated")
    with platform.session() as s:
        results = sorted(
            s.scalars(select(audit.AuditRecord.result).where(audit.AuditRecord.result == "deny"))
        )
    assert results == ["deny", "deny"]
    assert counts(platform) == (0, 0, 0)


def test_unknown_dataset_is_404(api: TestClient, provider: dict[str, str]) -> None:
    assert_problem(api.get("/v1/datasets/nope", headers=provider), 404, "not-found")
    assert_problem(api.get("/v1/datasets/nope/preview", headers=provider), 404, "not-found")


def test_large_file_streams_in_many_chunks(
    api: TestClient, provider: dict[str, str], tmp_path: Path
) -> None:
    good = EXAMPLE_CSV.read_bytes()
    header, _, body = good.partition(b"\n")
    content = header + b"\n" + body * 8  # ~12+ MB: many 1 MiB feeds, several scan blocks
    r = register(api, provider, content, metadata())
    assert r.status_code == 201, r.text
    assert r.json()["rows"] == 8 * len(example_rows())
    assert r.json()["size_bytes"] == len(content)


def test_metadata_text_with_control_characters_is_refused(
    api: TestClient, provider: dict[str, str], platform: Platform
) -> None:
    r = register(api, provider, EXAMPLE_CSV.read_bytes(), metadata(name="bad\x00name"))
    assert_problem(r, 422, "invalid-metadata")
    assert counts(platform) == (0, 0, 0)


def test_headerless_csv_is_refused_without_echoing_the_first_record(
    api: TestClient, provider: dict[str, str], platform: Platform
) -> None:
    rows = EXAMPLE_CSV.read_bytes().split(b"\n", 1)[1]  # drop the header line
    r = register(api, provider, rows, metadata())
    body = assert_problem(r, 422, "csv-header-invalid")
    first_id = example_rows()[0]["id_number"]
    assert first_id not in r.text
    assert body["position"] >= 1
    with platform.session() as s:
        details = [d or "" for d in s.scalars(select(audit.AuditRecord.detail))]
    assert not any(first_id in d for d in details)
    assert counts(platform) == (0, 0, 0)


def test_oversized_part_headers_are_refused(api: TestClient, provider: dict[str, str]) -> None:
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"\r\n'
        f"X-Padding: {'p' * 10000}\r\n\r\na,b\n1,2\n\r\n--{boundary}--\r\n"
    ).encode()
    r = api.post(
        "/v1/datasets",
        content=body,
        headers={**provider, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert_problem(r, 422, "invalid-input")

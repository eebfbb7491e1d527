"""The event catalogue: one enum of dotted names, documented, and no literals elsewhere."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import audit
from audit.catalogue import Event, RecordType
from crypto.events import KeyOperation

REPO = Path(__file__).resolve().parents[1]
# Where event names may be written as strings: the catalogue itself, crypto's own
# KeyOperation table (crypto imports no other package), and exchange/computations.py,
# which another change is splitting into a package (its literals follow after the merge),
# and the demos: HTTP clients reading JSON, bound for the SDK that imports no server code.
ALLOWED = (
    "audit/catalogue.py",
    "crypto/events.py",
    "exchange/computations",
    "gateway/demo_compute.py",
)
SCANNED = ("gateway", "exchange", "crypto", "audit", "ledger")

# Ledger record types as existing ledgers carry them: never renamed, never removed.
FROZEN_RECORD_TYPES = {
    "organisation.created", "client.created", "client.deactivated", "client.secret_rotated",
    "person.invited", "person.enrolled", "person.activated", "certificate.issued",
    "dataset.registered", "node.registered", "contract.proposed", "contract.active",
    "contract.terminated", "computation.requested", "computation.awaiting_approval",
    "computation.provider_approved", "computation.approved", "computation.running",
    "computation.review", "computation.release_approved", "computation.released",
    "computation.rejected", "computation.failed", "computation.result_delivered",
    "computation.result_destroyed", "policy.activated", "key.generated", "key.distributed",
    "key.stored", "key.used", "key.rotated", "key.archived", "key.revoked", "key.backed_up",
    "key.restored", "key.destroyed", "key.activated", "key.suspended", "key.resumed",
    "key.destroy_requested", "key.destroy_cancelled",
}  # fmt: skip


def _documented() -> set[str]:
    """Dotted names in docs/compliance.md's "Event names in use" table (not the PEP row)."""
    text = (REPO / "docs" / "compliance.md").read_text(encoding="utf-8")
    section = text.split("### Event names in use", 1)[1].split("\n#", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if not line.startswith("| ") or line.startswith("| enforcement point"):
            continue
        names |= set(re.findall(r"`([a-z]+\.[a-z_]+)`", line))
    return names


def test_every_event_is_documented_and_every_documented_name_is_an_event() -> None:
    documented = _documented()
    values = {e.value for e in Event}
    assert values - documented == set(), "add these to docs/compliance.md"
    assert documented - values == set(), "add these to audit/catalogue.py"


def test_names_are_dotted_and_grouped_by_area() -> None:
    for event in Event:
        area, _, name = event.value.partition(".")
        assert re.fullmatch(r"[a-z]+", area) and re.fullmatch(r"[a-z_]+", name), event
        assert event.name == event.value.upper().replace(".", "_"), event


def test_key_operations_and_record_types_are_in_the_catalogue() -> None:
    values = {e.value for e in Event}
    assert {op.event_type for op in KeyOperation} <= values
    assert {t.value for t in RecordType} <= values
    for t in RecordType:
        assert Event[t.name].value == t.value


def test_ledger_record_types_are_frozen() -> None:
    types = {t.value for t in RecordType}
    assert FROZEN_RECORD_TYPES - types == set(), "a ledger record type was renamed or removed"


def test_an_event_member_is_stored_as_the_plain_string() -> None:
    event = audit.AuditEvent(Event.DATASET_REGISTERED, "register", audit.Result.SUCCESS)
    assert type(event.event_type) is str and event.event_type == "dataset.registered"


def test_no_event_name_is_written_as_a_string_literal_outside_the_catalogue() -> None:
    values = {e.value for e in Event}
    found: list[str] = []
    for package in SCANNED:
        for path in sorted((REPO / package).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if rel.startswith(ALLOWED):
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant) and node.value in values:
                    found.append(f"{rel}:{node.lineno}: {node.value!r}")
    assert found == [], "use audit.Event members:\n" + "\n".join(found)


def test_record_types_are_documented() -> None:
    """docs/ledger-records.md lists exactly the frozen record types (issue 12)."""
    from pathlib import Path

    from audit.records_doc import render_record_types_md

    doc = Path(__file__).resolve().parents[1] / "docs" / "ledger-records.md"
    assert doc.read_text(encoding="utf-8") == render_record_types_md(), "regenerate it"

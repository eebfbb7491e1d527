"""docs/ledger-records.md, generated from the frozen `audit.catalogue.RecordType` enum."""

from __future__ import annotations

from itertools import groupby

from audit.catalogue import RecordType

__all__ = ["render_record_types_md"]


def render_record_types_md() -> str:
    """Every ledger record `type`, grouped by area, with the rule that freezes them."""
    lines = [
        "# Ledger record types",
        "",
        "<!-- Generated from audit/catalogue.py `RecordType`: do not edit. Regenerate with",
        "     python -c 'from audit.records_doc import render_record_types_md as r;"
        ' open("docs/ledger-records.md", "w").write(r())\' -->',
        "",
        "Each ledger leaf is a canonical JSON (RFC 8785) record whose `type` is one of these",
        "stable dotted names, snake_case after the area: the audit event of the operation",
        "the entry records (exchange/trail.py). The list is frozen: later releases add types,",
        "they never rename or remove one, because ledgers already written are verified",
        "against these values forever (tests/test_event_catalogue.py keeps the old ones).",
        "",
    ]
    values = sorted(t.value for t in RecordType)
    for area, names in groupby(values, key=lambda v: v.split(".", 1)[0]):
        lines += [f"## {area}", "", "| type |", "|---|"]
        lines += [f"| `{name}` |" for name in names]
        lines.append("")
    return "\n".join(lines)

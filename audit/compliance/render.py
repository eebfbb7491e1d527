"""Compliance reports for people: HTML from a Jinja2 template, PDF through WeasyPrint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

_ENV = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html", "j2"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def to_html(report: dict[str, Any], trend: list[dict[str, Any]] | None = None) -> str:
    """The report as a standalone HTML page (figures straight from the JSON)."""
    return _ENV.get_template("report.html.j2").render(report=report, trend=trend or [])


def to_pdf(report: dict[str, Any], trend: list[dict[str, Any]] | None = None) -> bytes:
    """The same page as PDF (WeasyPrint renders the HTML; needs pango from Debian)."""
    from weasyprint import HTML  # type: ignore[import-untyped]

    pdf: bytes = HTML(string=to_html(report, trend)).write_pdf()
    return pdf

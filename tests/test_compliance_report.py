"""The compliance report for people: HTML and PDF render, with the JSON's figures."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from exchange.models import Dataset
from gateway.platform import Platform
from tests.conftest import login
from tests.helpers.i16_compliance import KNOWN_GAPS, failing, register_dataset, run_check

FIGURES = re.compile(
    r"Figures: pass=(\d+) fail=(\d+) not-applicable=(\d+) not-automated=(\d+) requirements=(\d+)"
)


def _figures(report: dict[str, Any]) -> tuple[int, ...]:
    s = report["summary"]
    return (s["pass"], s["fail"], s["not-applicable"], s["not-automated"], report["requirements"])


def test_html_and_pdf_render_with_the_json_figures(
    api: TestClient, creds: dict[str, dict[str, Any]], platform: Platform, tmp_path: Path
) -> None:
    if shutil.which("pdftoppm") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must render the PDF: poppler-utils is not installed (.ci/run)")
        pytest.skip("poppler-utils not installed")
    dataset = register_dataset(api, creds)["id"]
    run_check(api, creds)
    with platform.session() as s, s.begin():  # a failure, so the figures are not all zero
        s.execute(update(Dataset).where(Dataset.id == dataset).values(level="general-1"))
    report = run_check(api, creds)
    assert report["summary"]["fail"] == 1 + len(set(failing(report)) & set(KNOWN_GAPS))
    security = login(api, creds, "security-admin")
    html = api.get(f"/v1/compliance/runs/{report['id']}?format=html", headers=security)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    m = FIGURES.search(html.text)
    assert m is not None and tuple(int(x) for x in m.groups()) == _figures(report)
    for finding in report["findings"]:
        assert f"<td>{finding['id']}</td>" in html.text
    assert html.text.count('<td class="fail">fail') == report["summary"]["fail"]
    assert "trust: operator" in html.text  # PCE-06 says anchoring rests on the operator

    pdf = api.get(f"/v1/compliance/runs/{report['id']}?format=pdf", headers=security)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    path = tmp_path / "report.pdf"
    path.write_bytes(pdf.content)
    subprocess.run(
        ["pdftoppm", "-png", "-r", "50", str(path), str(tmp_path / "page")], check=True, timeout=120
    )
    pages = sorted(tmp_path.glob("page*.png"))
    assert len(pages) >= 2
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pages)
    text = subprocess.run(
        ["pdftotext", str(path), "-"], check=True, capture_output=True, text=True, timeout=120
    ).stdout
    flat = " ".join(text.split())
    m = FIGURES.search(flat)
    assert m is not None and tuple(int(x) for x in m.groups()) == _figures(report)
    assert report["id"] in flat
    for finding in report["findings"]:
        assert finding["id"] in flat
    # GRD-03's evidence names the dataset (pdftotext drops a hyphen where a line broke).
    assert dataset.replace("-", "") in "".join(text.split()).replace("-", "")

"""Writes benchmark results in the shared format (docs/benchmarks.md)."""

from __future__ import annotations

import json
import os
import platform
import statistics
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
WORK = Path(__file__).resolve().parent / "work"


@dataclass(frozen=True)
class Metric:
    value: float
    unit: str
    target: str | None = None
    met: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "unit": self.unit, "target": self.target, "met": self.met}


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def write(area: str, params: dict[str, Any], metrics: dict[str, Metric]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    doc = {
        "area": area,
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "params": params,
        "metrics": {k: m.as_dict() for k, m in metrics.items()},
    }
    path = RESULTS / f"{area}.json"
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    for name, m in metrics.items():
        verdict = "" if m.met is None else (" met" if m.met else " NOT MET")
        target = f" (target {m.target}{verdict})" if m.target else ""
        print(f"{area}.{name} = {m.value:g} {m.unit}{target}")
    return path

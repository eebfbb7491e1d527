"""Charts of a released result, drawn on the server: histogram bars, FL loss and accuracy.

Read from the output's own shape (`sandbox.stats.StatsResult` and `sandbox.fl.FlModel`
as JSON): a histogram's counts per group with its bin edges; a model's per-round loss
and accuracy. A suppressed cell (None) is drawn as an empty bar and named so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from markupsafe import Markup

from gateway.console import plots

MAX_GROUPS = 6


def _bin_labels(edges: list[float], count: int) -> list[str]:
    """Under, each [lo, hi), over: as many labels as the histogram has cells."""
    inner = [f"[{a:g}, {b:g})" for a, b in zip(edges, edges[1:], strict=False)]
    labels = [f"< {edges[0]:g}", *inner, f"> {edges[-1]:g}"] if edges else []
    return labels if len(labels) == count else [str(i) for i in range(count)]


def _histograms(output: dict[str, Any], t: Callable[..., str]) -> list[Markup]:
    edges = [float(e) for e in output.get("bin_edges") or [] if isinstance(e, int | float)]
    charts = []
    for group in (output.get("groups") or [])[:MAX_GROUPS]:
        cells = group.get("histogram") if isinstance(group, dict) else None
        if not isinstance(cells, list) or not cells:
            continue
        labels = _bin_labels(edges, len(cells))
        bins = [
            (label if isinstance(v, int | float) else f"{label} ({t('suppressed')})", float(v or 0))
            for label, v in zip(labels, cells, strict=True)
        ]
        name = t("plot_histogram", group=group.get("group", ""))
        charts.append(plots.histogram(name, bins))
    return charts


def _curves(output: dict[str, Any], t: Callable[..., str]) -> list[Markup]:
    rounds = [r for r in output.get("rounds") or [] if isinstance(r, dict)]
    charts = []
    for key in ("loss", "accuracy"):
        points = [
            (float(r.get("round", i)), float(r[key]))
            for i, r in enumerate(rounds)
            if isinstance(r.get(key), int | float)
        ]
        if len(points) >= 1:
            first, last = f"{points[0][0]:g}", f"{points[-1][0]:g}"
            label = t(f"plot_{key}")
            charts.append(plots.line(label, points, (f"#{first}", f"#{last}")))
    return charts


def charts(output: Any, t: Callable[..., str]) -> list[Markup]:
    """The charts an output calls for (none for a plain table of values)."""
    if not isinstance(output, dict):
        return []
    return _histograms(output, t) + _curves(output, t)

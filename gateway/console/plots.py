"""Small inline SVG charts rendered on the server: no chart library, no script, no CDN.

Colours are presentation attributes (the console's CSP forbids inline styles); each
chart has a <title> and an aria-label so screen readers announce what it shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup

W, H, PAD = 480, 160, 32


def _frame(label: str, body: str) -> Markup:
    return Markup(
        f'<svg class="chart" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
        f'aria-label="{escape(label)}"><title>{escape(label)}</title>'
        f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - 8}" y2="{H - PAD}" stroke="#555"/>'
        f'<line x1="{PAD}" y1="8" x2="{PAD}" y2="{H - PAD}" stroke="#555"/>{body}</svg>'
    )


def _text(x: float, y: float, s: str, anchor: str = "start") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="11" fill="#222" '
        f'text-anchor="{anchor}">{escape(s)}</text>'
    )


def line(label: str, points: Sequence[tuple[float, float]], x_labels: tuple[str, str]) -> Markup:
    """A step-free polyline of (x, y) points, y from 0; first and last x labelled.

    Up to 60 points also get a dot each, with its value as the dot's title.
    """
    if not points:
        return _frame(label, _text(W / 2, H / 2, "—", "middle"))
    xs = [p[0] for p in points]
    ymax = max(max(p[1] for p in points), 1.0)
    x0, x1 = min(xs), max(xs)
    span = (x1 - x0) or 1.0

    def sx(x: float) -> float:
        return PAD + (x - x0) / span * (W - PAD - 16)

    def sy(y: float) -> float:
        return H - PAD - y / ymax * (H - PAD - 16)

    path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in points)
    dots = "".join(
        f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="#0b5cad">'
        f"<title>{y:g}</title></circle>"
        for x, y in (points if len(points) <= 60 else ())
    )
    body = (
        f'<polyline points="{path}" fill="none" stroke="#0b5cad" stroke-width="2"/>'
        + dots
        + _text(PAD - 4, 16, f"{ymax:g}", "end")
        + _text(PAD, H - PAD + 14, x_labels[0])
        + _text(W - 8, H - PAD + 14, x_labels[1], "end")
    )
    return _frame(label, body)


def bars(label: str, buckets: Sequence[tuple[str, int, int]], legend: tuple[str, str]) -> Markup:
    """Paired bars per bucket: (bucket label, allowed, denied)."""
    if not buckets:
        return _frame(label, _text(W / 2, H / 2, "—", "middle"))
    top = max(max(a, d) for _, a, d in buckets) or 1
    slot = (W - PAD - 16) / len(buckets)
    bar = max(slot / 2 - 2, 1.0)
    parts = []
    for i, (name, allowed, denied) in enumerate(buckets):
        x = PAD + 4 + i * slot
        for j, (value, colour) in enumerate(((allowed, "#1a7f37"), (denied, "#b42318"))):
            h = value / top * (H - PAD - 20)
            parts.append(
                f'<rect x="{x + j * bar:.1f}" y="{H - PAD - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{escape(name)}: {value}</title></rect>'
            )
    parts.append(_text(PAD - 4, 16, str(top), "end"))
    parts.append(_text(PAD, H - PAD + 14, buckets[0][0]))
    parts.append(_text(W - 8, H - PAD + 14, buckets[-1][0], "end"))
    parts.append(f'<rect x="{W - 150}" y="6" width="10" height="10" fill="#1a7f37"/>')
    parts.append(_text(W - 136, 15, legend[0]))
    parts.append(f'<rect x="{W - 80}" y="6" width="10" height="10" fill="#b42318"/>')
    parts.append(_text(W - 66, 15, legend[1]))
    return _frame(label, "".join(parts))


def lines(
    label: str,
    series: Sequence[tuple[str, str, Sequence[tuple[float, float]]]],
    x_labels: tuple[str, str],
) -> Markup:
    """Several polylines on one scale: (name, colour, points) each, y from 0, a legend."""
    every = [p for _, _, pts in series for p in pts]
    if not every:
        return _frame(label, _text(W / 2, H / 2, "—", "middle"))
    x0, x1 = min(p[0] for p in every), max(p[0] for p in every)
    ymax = max(max(p[1] for p in every), 1.0)
    span = (x1 - x0) or 1.0

    def sx(x: float) -> float:
        return PAD + (x - x0) / span * (W - PAD - 16)

    def sy(y: float) -> float:
        return H - PAD - y / ymax * (H - PAD - 24)

    parts = []
    for i, (name, colour, pts) in enumerate(series):
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        parts.append(
            f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2">'
            f"<title>{escape(name)}</title></polyline>"
        )
        for x, y in pts if len(pts) <= 60 else ():
            parts.append(
                f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{colour}">'
                f"<title>{escape(name)}: {y:g}</title></circle>"
            )
        lx = W - 16 - 110 * (len(series) - i)
        parts.append(f'<rect x="{lx}" y="6" width="10" height="10" fill="{colour}"/>')
        parts.append(_text(lx + 14, 15, name))
    parts.append(_text(PAD - 4, 16, f"{ymax:g}", "end"))
    parts.append(_text(PAD, H - PAD + 14, x_labels[0]))
    parts.append(_text(W - 8, H - PAD + 14, x_labels[1], "end"))
    return _frame(label, "".join(parts))


def histogram(label: str, bins: Sequence[tuple[str, float]]) -> Markup:
    """One bar per bin: (bin label, value); first and last bin labelled."""
    if not bins:
        return _frame(label, _text(W / 2, H / 2, "—", "middle"))
    top = max(max(v for _, v in bins), 1e-12)
    slot = (W - PAD - 16) / len(bins)
    parts = []
    for i, (name, value) in enumerate(bins):
        h = max(value, 0.0) / top * (H - PAD - 20)
        parts.append(
            f'<rect x="{PAD + 2 + i * slot:.1f}" y="{H - PAD - h:.1f}" '
            f'width="{max(slot - 2, 1.0):.1f}" height="{h:.1f}" fill="#0b5cad">'
            f"<title>{escape(name)}: {value:g}</title></rect>"
        )
    parts.append(_text(PAD - 4, 16, f"{top:g}", "end"))
    parts.append(_text(PAD, H - PAD + 14, bins[0][0]))
    parts.append(_text(W - 8, H - PAD + 14, bins[-1][0], "end"))
    return _frame(label, "".join(parts))

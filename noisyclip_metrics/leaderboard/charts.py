"""Line charts for the leaderboard: inline SVG (for ``index.html``, no JavaScript library) and matplotlib PNG.

Both draw the same :class:`Series` (a line with an optional confidence band; NaN points break the line; a
single-point series is drawn as a marker). Every label in the SVG is escaped.

Examples:
    >>> svg = svg_chart([Series("a <b>", [0, 0.5, 1], [0.5, 0.7, 0.8])], title="t", x_label="x", y_label="y")
    >>> "a &lt;b&gt;" in svg and "<b>" not in svg
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from markupsafe import Markup, escape

__all__ = ["PALETTE", "Series", "png_chart", "svg_chart"]

PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#8C8C8C")
"""Okabe-Ito colours (distinguishable with colour-vision deficiencies; grey instead of the pale yellow), cycled."""

_W, _H = 640, 340
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 170, 34, 44


@dataclass(frozen=True)
class Series:
    """One line: ``label``, x and y values, optional band (``low``, ``high``)."""

    label: str
    x: Sequence[float]
    y: Sequence[float | None]
    low: Sequence[float | None] = field(default_factory=tuple)
    high: Sequence[float | None] = field(default_factory=tuple)


def _f(v: float | None) -> float:
    return float("nan") if v is None else float(v)


def _range(series: Sequence[Series], reference: float | None, lo: float | None, hi: float | None) -> tuple[float, ...]:
    ys = [_f(v) for s in series for v in (*s.y, *s.low, *s.high)] + ([reference] if reference is not None else [])
    ys = [v for v in ys if math.isfinite(v)] or [0.0, 1.0]
    y0 = lo if lo is not None else math.floor(min(ys) * 10) / 10
    y1 = hi if hi is not None else math.ceil(max(ys) * 10) / 10
    if y1 - y0 < 1e-9:
        y0, y1 = y0 - 0.1, y1 + 0.1
    xs = [float(v) for s in series for v in s.x] or [0.0, 1.0]
    x0, x1 = min(0.0, min(xs)), max(1.0, max(xs))
    return x0, x1, y0, y1


def _ticks(a: float, b: float, n: int = 5) -> list[float]:
    raw = (b - a) / n
    step = min(
        (
            s * 10 ** math.floor(math.log10(raw))
            for s in (1, 2, 2.5, 5, 10)
            if s * 10 ** math.floor(math.log10(raw)) >= raw
        ),
        default=raw,
    )
    first = math.ceil(a / step - 1e-9) * step
    return [round(first + i * step, 10) for i in range(int((b - first) / step + 1e-9) + 1)]


def _segments(xs: Sequence[float], ys: Sequence[float]) -> list[list[tuple[float, float]]]:
    out: list[list[tuple[float, float]]] = [[]]
    for x, y in zip(xs, ys, strict=True):
        if math.isfinite(y):
            out[-1].append((x, y))
        elif out[-1]:
            out.append([])
    return [s for s in out if s]


def svg_chart(
    series: Sequence[Series],
    *,
    title: str,
    x_label: str,
    y_label: str,
    reference: float | None = None,
    reference_label: str = "chance",
    y_min: float | None = None,
    y_max: float | None = None,
) -> Markup:
    """A self-contained ``<svg>`` line chart (as :class:`markupsafe.Markup`, safe to insert unescaped)."""
    x0, x1, y0, y1 = _range(series, reference, y_min, y_max)
    pw, ph = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM

    def px(x: float) -> float:
        return round(_LEFT + (x - x0) / (x1 - x0) * pw, 2)

    def py(y: float) -> float:
        return round(_TOP + (1 - (min(max(y, y0), y1) - y0) / (y1 - y0)) * ph, 2)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {_W} {_H}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>',
        f'<text x="{_LEFT}" y="18" class="chart-title">{escape(title)}</text>',
    ]
    for t in _ticks(y0, y1):
        parts.append(
            f'<line x1="{_LEFT}" x2="{_LEFT + pw}" y1="{py(t)}" y2="{py(t)}" class="grid"/>'
            f'<text x="{_LEFT - 6}" y="{py(t) + 4}" text-anchor="end" class="tick">{t:g}</text>'
        )
    for t in _ticks(x0, x1, 4):
        parts.append(f'<text x="{px(t)}" y="{_TOP + ph + 16}" text-anchor="middle" class="tick">{t:g}</text>')
    parts.append(f'<rect x="{_LEFT}" y="{_TOP}" width="{pw}" height="{ph}" class="frame"/>')
    parts.append(
        f'<text x="{_LEFT + pw / 2}" y="{_H - 6}" text-anchor="middle" class="axis">{escape(x_label)}</text>'
        f'<text transform="translate(14 {_TOP + ph / 2}) rotate(-90)" text-anchor="middle" class="axis">'
        f"{escape(y_label)}</text>"
    )
    if reference is not None and y0 <= reference <= y1:
        parts.append(
            f'<line x1="{_LEFT}" x2="{_LEFT + pw}" y1="{py(reference)}" y2="{py(reference)}" '
            f'class="reference"><title>{escape(reference_label)}</title></line>'
        )
    for i, s in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        xs, ys = [float(v) for v in s.x], [_f(v) for v in s.y]
        if s.low and s.high:
            lows, highs = [_f(v) for v in s.low], [_f(v) for v in s.high]
            band = [
                (x, lo, hi)
                for x, lo, hi in zip(xs, lows, highs, strict=True)
                if math.isfinite(lo) and math.isfinite(hi)
            ]
            if len(band) > 1:
                pts = [f"{px(x)},{py(hi)}" for x, _, hi in band] + [f"{px(x)},{py(lo)}" for x, lo, _ in band[::-1]]
                parts.append(f'<polygon points="{" ".join(pts)}" fill="{colour}" class="band"/>')
        for seg in _segments(xs, ys):
            if len(seg) > 1:
                pts = " ".join(f"{px(x)},{py(y)}" for x, y in seg)
                parts.append(f'<polyline points="{pts}" stroke="{colour}" class="line"/>')
            for x, y in seg if len(seg) <= 30 else [*seg[:: math.ceil(len(seg) / 30)], seg[-1]]:
                parts.append(
                    f'<circle cx="{px(x)}" cy="{py(y)}" r="2.6" fill="{colour}">'
                    f"<title>{escape(s.label)}: {x:.2f} → {y:.3f}</title></circle>"
                )
        ly = _TOP + 8 + 18 * i
        parts.append(
            f'<rect x="{_W - _RIGHT + 12}" y="{ly}" width="12" height="12" fill="{colour}"/>'
            f'<text x="{_W - _RIGHT + 30}" y="{ly + 10}" class="legend">{escape(_short(s.label))}'
            f"<title>{escape(s.label)}</title></text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _short(label: str, n: int = 22) -> str:
    return label if len(label) <= n else label[: n - 1] + "…"


def png_chart(
    series: Sequence[Series],
    path: str | Path,
    *,
    title: str,
    x_label: str,
    y_label: str,
    reference: float | None = None,
    y_min: float | None = None,
    y_max: float | None = None,
) -> Path:
    """The same chart as :func:`svg_chart`, as a PNG drawn by matplotlib (no pyplot state, Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def plain(text: str) -> str:  # matplotlib would read $...$ as mathtext
        return text.replace("$", r"\$")

    x0, x1, y0, y1 = _range(series, reference, y_min, y_max)
    fig = Figure(figsize=(6.4, 3.4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for i, s in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        xs, ys = [float(v) for v in s.x], [_f(v) for v in s.y]
        if s.low and s.high:
            ax.fill_between(xs, [_f(v) for v in s.low], [_f(v) for v in s.high], color=colour, alpha=0.15, lw=0)
        marker = "o" if len(xs) < 2 else "."
        ax.plot(xs, ys, color=colour, marker=marker, ms=4, lw=1.6, label=plain(_short(s.label, 30)))
    if reference is not None:
        ax.axhline(reference, color="#888888", lw=1, ls="--")
    ax.set(xlim=(x0, x1), ylim=(y0, y1), title=plain(title), xlabel=plain(x_label), ylabel=plain(y_label))
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path

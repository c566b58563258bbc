"""Small inline SVG line charts for the admin's host page (usage over the kept window).

Server-side on purpose: the admin page needs no script for them, and the numbers are the
only data in the markup (no user text reaches the SVG but the escaped title).
"""

from __future__ import annotations

from collections.abc import Sequence

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT, PAD = 320, 48, 2


def line_chart(title: str, values: Sequence[float | None], *, top: float | None = None, unit: str = "") -> SafeString:
    """A chart of ``values`` (oldest first; None breaks the line) scaled to ``top`` (default: the largest),
    with its title, the last value and the top of the scale as text beside it."""
    known = [v for v in values if v is not None]
    if not known:
        return format_html('<div class="usage-chart"><b>{}</b> <span class="muted">no sample yet</span></div>', title)
    scale = max(top or 0, *known) or 1
    step = (WIDTH - 2 * PAD) / max(len(values) - 1, 1)
    runs: list[list[str]] = [[]]
    for i, value in enumerate(values):
        if value is None:
            runs.append([])
            continue
        x = PAD + i * step
        y = HEIGHT - PAD - (HEIGHT - 2 * PAD) * value / scale
        runs[-1].append(f"{x:.1f},{y:.1f}")
    lines = "".join(
        f'<polyline points="{" ".join(run)}" fill="none" stroke="#2563eb" stroke-width="1.5"/>'
        if len(run) > 1
        else f'<circle cx="{run[0].split(",")[0]}" cy="{run[0].split(",")[1]}" r="1.5" fill="#2563eb"/>'
        for run in runs
        if run
    )
    svg = mark_safe(  # noqa: S308 - numbers formatted above, nothing else
        f'<svg width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'style="background:#f8fafc;border:1px solid #e2e8f0">{lines}</svg>'
    )
    return format_html(
        '<div class="usage-chart" style="margin:4px 0">'
        "<div><b>{}</b>: {}{} now (scale 0 to {}{}, {} samples)</div>{}</div>",
        title,
        _number(known[-1]),
        unit,
        _number(scale),
        unit,
        len(values),
        svg,
    )


def _number(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 10 else f"{value:.2g}" if value else "0"

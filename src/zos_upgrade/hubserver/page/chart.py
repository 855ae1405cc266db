"""The rollout's progress over time as an inline SVG (no script, no library): one polyline per result.

Every number in it comes from the release's record; the legend carries the current counts both as
text and as ``data-count`` attributes, which is what the browser test reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape

from zos_upgrade.hubserver.rollout.record import Point

__all__ = ["SERIES", "progress_chart"]

WIDTH, HEIGHT, PAD = 640, 220, 36
# (key in the counts, label, colour, index in a Point's fields)
SERIES: tuple[tuple[str, str, str], ...] = (
    ("upgraded", "upgraded", "#1a7f37"),
    ("waiting", "waiting", "#8c959f"),
    ("failed", "failed", "#cf222e"),
    ("rolled-back", "rolled back", "#bc4c00"),
)


def _value(point: Point, key: str) -> int:
    return {"upgraded": point.upgraded, "waiting": point.waiting, "failed": point.failed,
            "rolled-back": point.rolled_back}[key]


def _clock(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%m-%d %H:%M:%S")


def progress_chart(history: Sequence[Point], counts: dict[str, int]) -> str:
    """The ``<svg>`` of ``history`` (oldest first) with a legend of ``counts``."""
    top = max([1, *(max(p.upgraded, p.waiting, p.failed, p.rolled_back) for p in history)])
    first = history[0].at if history else 0.0
    span = (history[-1].at - first) if len(history) > 1 else 1.0
    span = span or 1.0
    inner_w, inner_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD

    def xy(point: Point, key: str) -> str:
        x = PAD + inner_w * (point.at - first) / span
        y = HEIGHT - PAD - inner_h * _value(point, key) / top
        return f"{x:.1f},{y:.1f}"

    parts = [
        f'<svg id="progress" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT + 30}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT + 30}" role="img" aria-label="rollout progress">',
        f'<rect x="{PAD}" y="{PAD}" width="{inner_w}" height="{inner_h}" fill="#f6f8fa" stroke="#d0d7de"/>',
        f'<text x="{PAD - 4}" y="{PAD + 4}" text-anchor="end" font-size="11">{top}</text>',
        f'<text x="{PAD - 4}" y="{HEIGHT - PAD}" text-anchor="end" font-size="11">0</text>',
    ]
    if history:
        parts.append(f'<text x="{PAD}" y="{HEIGHT - PAD + 14}" font-size="11">{escape(_clock(first))}</text>')
        parts.append(f'<text x="{WIDTH - PAD}" y="{HEIGHT - PAD + 14}" font-size="11" text-anchor="end">'
                     f"{escape(_clock(history[-1].at))}</text>")
    for key, _label, colour in SERIES:
        if len(history) == 1:
            cx, cy = xy(history[0], key).split(",")
            parts.append(f'<circle class="series" data-series="{key}" cx="{cx}" cy="{cy}" r="3" '
                         f'fill="{colour}"/>')
        elif history:
            points = " ".join(xy(p, key) for p in history)
            parts.append(f'<polyline class="series" data-series="{key}" fill="none" stroke="{colour}" '
                         f'stroke-width="2" points="{points}"/>')
    x = PAD
    for key, label, colour in SERIES:
        n = counts.get(key, 0)
        parts.append(f'<g class="legend" data-series="{key}" data-count="{n}">'
                     f'<rect x="{x}" y="{HEIGHT + 8}" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{x + 14}" y="{HEIGHT + 17}" font-size="12">{escape(label)}: {n}</text></g>')
        x += 140
    parts.append("</svg>")
    return "".join(parts)

"""The states-over-time graph: a small hand-written SVG (no JavaScript, no library).

One line a state, a point a day.  Each state has its colour (the Okabe-Ito
palette, told apart by colour-blind readers), its own dash pattern and its
name in the legend, so the graph reads without colour too.  Text is escaped
with :func:`xml.sax.saxutils.escape`; nothing in it comes from a package.
"""

from __future__ import annotations

import time
from typing import Mapping, Sequence
from xml.sax.saxutils import escape, quoteattr

from piuparts.report.html.look import STYLE

WIDTH, PLOT_HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 28
#: The legend: entries a row, and a row's height.
LEGEND_COLUMNS, LEGEND_ROW = 2, 22


def _ticks(top: int, count: int = 4) -> list[int]:
    """Round values from 0 to at least ``top`` for the y axis."""
    step = max(1, top // count)
    magnitude = 10 ** (len(str(step)) - 1)
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= step)
    return list(range(0, top + step, step))


def _day(stamp: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(stamp))


def graph(days: Sequence[float], series: Mapping[str, Sequence[int]], title: str) -> str:
    """The SVG element (inline in a page) of ``series`` (state -> count a day) over ``days``
    (each a UTC midnight, as seconds); states that are zero on every day are left out."""
    shown = {state: values for state, values in series.items() if any(values)}
    top = max([max(v) for v in shown.values()] + [1])
    ticks = _ticks(top)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, PLOT_HEIGHT - TOP - BOTTOM
    rows = (len(shown) + LEGEND_COLUMNS - 1) // LEGEND_COLUMNS
    height = PLOT_HEIGHT + rows * LEGEND_ROW + 4

    if len(days) == 1:  # one day: a flat line across, so each state's dashes still show
        days = [days[0], days[0]]
        shown = {state: [values[0], values[0]] for state, values in shown.items()}

    def x(i: int) -> float:
        return LEFT + plot_w * i / (len(days) - 1)

    def y(value: int) -> float:
        return TOP + plot_h - plot_h * value / ticks[-1]

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="graph" viewBox="0 0 {WIDTH} {height}" '
             f'height="{height}" role="img"><title>{escape(title)}</title>']
    for tick in ticks:
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" class="grid"/>'
                     f'<text x="{LEFT - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick}</text>')
    for i in _labelled(days):
        anchor = "start" if i == 0 else "end" if i == len(days) - 1 else "middle"
        parts.append(f'<text x="{x(i):.1f}" y="{PLOT_HEIGHT - 8}" text-anchor="{anchor}">{_day(days[i])}</text>')
    for state, values in shown.items():
        look = STYLE[state]
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
        parts.append(f'<polyline points="{points}" fill="none" stroke="{look.colour}" stroke-width="2.5" '
                     f'stroke-dasharray={quoteattr(look.dash)}><title>{escape(state)}</title></polyline>')
    parts.extend(_legend(shown))
    parts.append("</svg>")
    return "".join(parts)


def _labelled(days: Sequence[float]) -> list[int]:
    """The days the x axis names: the first, the last, and about four between, none too close to the last."""
    if days[0] == days[-1]:
        return [0]
    step = max(1, len(days) // 5)
    room = (WIDTH - LEFT - RIGHT) / (len(days) - 1)  # pixels a day; a label is about 60 wide
    between = [i for i in range(step, len(days) - 1, step) if (len(days) - 1 - i) * room >= 110]
    return [0, *between, len(days) - 1]


def _legend(shown: Mapping[str, Sequence[int]]) -> list[str]:
    """A line sample (colour and dashes), the icon, the state's name and its latest count."""
    parts = []
    column_width = (WIDTH - LEFT) / LEGEND_COLUMNS
    for n, (state, values) in enumerate(shown.items()):
        look = STYLE[state]
        x = LEFT + (n % LEGEND_COLUMNS) * column_width
        y = PLOT_HEIGHT + (n // LEGEND_COLUMNS) * LEGEND_ROW + 10
        parts.append(f'<line x1="{x:.0f}" x2="{x + 28:.0f}" y1="{y}" y2="{y}" stroke="{look.colour}" '
                     f'stroke-width="2.5" stroke-dasharray={quoteattr(look.dash)}/>'
                     f'<text x="{x + 34:.0f}" y="{y + 4}">{escape(look.icon)} {escape(state)} ({values[-1]})</text>')
    return parts

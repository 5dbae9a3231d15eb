"""Chart geometry for the dashboard: numbers in, coordinates out (SVG user units).

Pure functions, no Flask and no database: ``dashboard.py`` adds the words (labels, formatted
numbers, month names) and ``templates/dashboard/_charts.html`` draws the shapes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypedDict


class FunnelRow(TypedDict):
    y: float
    bar_x: float
    bar_width: float
    text_x: float


class Funnel(TypedDict):
    width: int
    height: int
    bar_x: int
    bar_height: int
    rows: list[FunnelRow]


class Tick(TypedDict):
    y: float
    value: float


class Column(TypedDict):
    x: float
    width: float
    y: float
    height: float


class ColumnGroup(TypedDict):
    center: float
    columns: list[Column]


class Columns(TypedDict):
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    ticks: list[Tick]
    groups: list[ColumnGroup]
    label_every: int


class RateRow(TypedDict):
    y: int
    stripe: bool
    return_width: float
    on_time_width: float


class GridLine(TypedDict):
    x: float
    label: str
    anchor: str


class RateBars(TypedDict):
    width: int
    height: int
    bar_x: int
    bar_width: int
    row_height: int
    top: int
    rows: list[RateRow]
    grid: list[GridLine]
    returned_x: int
    on_time_x: int
    overdue_x: int


def funnel(values: Sequence[float]) -> Funnel:
    """Horizontal bars, one row per stage, each as long as its share of the first value."""
    label_width, bar_width, row_height, top = 170, 270, 34, 6
    whole = values[0] if values else 0
    rows: list[FunnelRow] = []
    for index, value in enumerate(values):
        width = round(bar_width * value / whole, 1) if whole else 0
        rows.append(
            {
                "y": top + index * row_height,
                "bar_x": label_width,
                "bar_width": max(width, 2 if value else 0),
                "text_x": label_width + max(width, 0) + 8,
            }
        )
    return {"width": 560, "height": top + len(rows) * row_height, "rows": rows, "bar_x": label_width, "bar_height": 22}


def nice_scale(largest: float) -> tuple[float, list[float]]:
    """An axis top and its ticks (at most six) for values up to ``largest``."""
    if largest <= 0:
        return 1, [0, 1]
    magnitude = 10 ** math.floor(math.log10(largest))
    for step in (magnitude / 10, magnitude / 5, magnitude / 2, magnitude, magnitude * 2, magnitude * 5, magnitude * 10):
        step = max(step, 1)
        if largest / step <= 5:
            top = math.ceil(largest / step) * step
            return top, [step * i for i in range(int(round(top / step)) + 1)]
    return largest, [0, largest]


def columns(groups: Sequence[Sequence[float]], series: int) -> Columns:
    """Grouped vertical columns: one group per value list (a month), ``series`` columns in each,
    on a shared axis; ``label_every`` is how many groups apart labels may go without crowding."""
    width, height, left, right, top, bottom = 560, 250, 44, 8, 14, 40
    plot_width, plot_height = width - left - right, height - top - bottom
    largest = max((value for group in groups for value in group), default=0)
    axis_top, ticks = nice_scale(largest)
    group_width = plot_width / max(len(groups), 1)
    bar = min(14, group_width * 0.8 / series)
    placed: list[ColumnGroup] = []
    for index, values in enumerate(groups):
        x = left + index * group_width
        start = x + (group_width - bar * series) / 2
        shapes: list[Column] = []
        for position, value in enumerate(values):
            bar_height = plot_height * value / axis_top
            shapes.append(
                {
                    "x": round(start + position * bar, 1),
                    "width": round(bar, 1),
                    "y": round(top + plot_height - bar_height, 1),
                    "height": round(bar_height, 1),
                }
            )
        placed.append({"center": round(x + group_width / 2, 1), "columns": shapes})
    return {
        "width": width,
        "height": height,
        "left": left,
        "right": width - right,
        "top": top,
        "bottom": top + plot_height,
        "ticks": [{"y": round(top + plot_height - plot_height * tick / axis_top, 1), "value": tick} for tick in ticks],
        "groups": placed,
        "label_every": max(1, math.ceil(34 / group_width)),  # labels at least 34 units apart
    }


def rate_bars(rates: Sequence[tuple[float | None, float | None]]) -> RateBars:
    """Rows of two rate bars (return rate, on-time rate; each 0 to 1, None for no figure) over a
    grid at 0, 25, 50, 75 and 100%, with the x of the text columns beside them."""
    bar_x, bar_width, row_height, top = 410, 370, 34, 30
    rows: list[RateRow] = [
        {
            "y": top + index * row_height,
            "stripe": index % 2 == 0,
            "return_width": round(bar_width * (return_rate or 0), 1),
            "on_time_width": round(bar_width * (on_time_rate or 0), 1),
        }
        for index, (return_rate, on_time_rate) in enumerate(rates)
    ]
    return {
        "width": 1160,
        "height": top + len(rows) * row_height + 4,
        "rows": rows,
        "bar_x": bar_x,
        "bar_width": bar_width,
        "row_height": row_height,
        "top": top,
        "grid": [
            {
                "x": bar_x + bar_width * step / 4,
                "label": f"{25 * step}%",
                "anchor": ("start", "middle", "middle", "middle", "end")[step],
            }
            for step in range(5)
        ],
        "returned_x": bar_x + bar_width + 20,
        "on_time_x": bar_x + bar_width + 180,
        "overdue_x": 1150,
    }


SHADES = ((0.2, "shade-1"), (0.4, "shade-2"), (0.6, "shade-3"), (0.8, "shade-4"), (1.01, "shade-5"))


def shade(value: float | None) -> str:
    """The colour step (a CSS class) of a share from 0 to 1."""
    if value is None:
        return "shade-none"
    return next(css for limit, css in SHADES if value < limit)

"""The dashboard's chart geometry (services/metrics/charts.py): numbers in, coordinates out."""

from __future__ import annotations

import pytest

from services.metrics import charts


@pytest.mark.parametrize(
    ("largest", "top", "ticks"),
    [
        (0, 1, [0, 1]),
        (-3, 1, [0, 1]),
        (1, 1, [0, 1]),
        (4, 4, [0, 1, 2, 3, 4]),
        (7, 8, [0, 2, 4, 6, 8]),
        (23, 25, [0, 5, 10, 15, 20, 25]),
        (99, 100, [0, 20, 40, 60, 80, 100]),
        (1234, 1500, [0, 500, 1000, 1500]),
    ],
)
def test_a_nice_scale_covers_the_largest_value_with_at_most_six_round_ticks(largest, top, ticks):
    assert charts.nice_scale(largest) == (top, ticks)


def test_funnel_bars_are_as_long_as_their_share_of_the_first_stage():
    chart = charts.funnel([4, 4, 1, 3, 0])
    assert [row["bar_width"] for row in chart["rows"]] == [270, 270, 67.5, 202.5, 0]
    assert [row["y"] for row in chart["rows"]] == [6, 40, 74, 108, 142]
    assert {row["bar_x"] for row in chart["rows"]} == {chart["bar_x"]} == {170}
    assert [row["text_x"] for row in chart["rows"]] == [448, 448, 245.5, 380.5, 178]
    assert chart["height"] == 6 + 5 * 34 and chart["width"] == 560


def test_a_tiny_funnel_stage_still_shows_a_sliver_and_nothing_sent_draws_nothing():
    tiny = charts.funnel([1000, 1])
    assert tiny["rows"][1]["bar_width"] == 2
    assert [row["bar_width"] for row in charts.funnel([0, 0, 0])["rows"]] == [0, 0, 0]


def test_columns_stand_on_the_axis_and_reach_their_value_on_the_scale():
    chart = charts.columns([[4, 3, 2], [0, 0, 0]], series=3)
    assert (chart["left"], chart["right"], chart["top"], chart["bottom"]) == (44, 552, 14, 210)
    assert [tick["value"] for tick in chart["ticks"]] == [0, 1, 2, 3, 4]
    assert chart["ticks"][0]["y"] == chart["bottom"] and chart["ticks"][-1]["y"] == chart["top"]
    first, empty = chart["groups"]
    for column, value in zip(first["columns"], (4, 3, 2), strict=True):
        assert column["y"] + column["height"] == pytest.approx(chart["bottom"])
        assert column["height"] == pytest.approx(196 * value / 4, abs=0.1)
    assert all(column["height"] == 0 for column in empty["columns"])
    # Side by side, 14 wide at most, centred in each group's half of the plot.
    assert [column["x"] for column in first["columns"]] == [150, 164, 178]
    assert {column["width"] for column in first["columns"]} == {14}
    assert (first["center"], empty["center"]) == (171, 425)


def test_many_columns_get_thinner_and_their_labels_spread_out():
    chart = charts.columns([[1, 1, 1]] * 120, series=3)
    width = chart["groups"][0]["columns"][0]["width"]
    assert width == pytest.approx(508 / 120 * 0.8 / 3, abs=0.05)
    assert chart["label_every"] == 9  # 34 units apart at 4.23 units a group
    assert charts.columns([[1, 1, 1]] * 12, series=3)["label_every"] == 1
    assert charts.columns([], series=3)["groups"] == []


def test_rate_bars_scale_each_rate_to_the_bar_width_and_stripe_every_other_row():
    chart = charts.rate_bars([(1.0, 0.5), (0.25, None), (None, None)])
    assert [(row["return_width"], row["on_time_width"]) for row in chart["rows"]] == [(370, 185), (92.5, 0), (0, 0)]
    assert [row["y"] for row in chart["rows"]] == [30, 64, 98]
    assert [row["stripe"] for row in chart["rows"]] == [True, False, True]
    assert chart["height"] == 30 + 3 * 34 + 4
    assert [(line["x"], line["label"]) for line in chart["grid"]] == [
        (410, "0%"),
        (502.5, "25%"),
        (595, "50%"),
        (687.5, "75%"),
        (780, "100%"),
    ]
    assert chart["returned_x"] == 800 and chart["on_time_x"] == 960


@pytest.mark.parametrize(
    ("share", "css"),
    [
        (None, "shade-none"),
        (0, "shade-1"),
        (0.2, "shade-2"),
        (0.5, "shade-3"),
        (0.79, "shade-4"),
        (1, "shade-5"),
    ],
)
def test_shades_step_by_fifths(share, css):
    assert charts.shade(share) == css

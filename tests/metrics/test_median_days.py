"""An organisation's median days to final return, worked out by the database from the hours
histogram (``figures.median_days_to_return``), is the one its definition gives
(``definitions.median_from_histogram``), whatever the histogram and the reader's clearance."""

from __future__ import annotations

import random
from collections import Counter

from services.metrics.definitions import median_from_histogram
from services.metrics.figures import median_days_to_return
from services.metrics.projections import write_facts
from tests.metrics.scenario import migrated_down_to

MARKINGS = ("OFFICIAL", "OFFICIAL-SENSITIVE", "SECRET")


def test_the_databases_median_is_the_definitions(metrics_app):
    rng = random.Random(7)
    histograms: dict[tuple[str, str], Counter] = {}
    for code in ("GMP", "MPS", "WMP", "KENT"):
        for marking in MARKINGS:
            hours = Counter({str(rng.choice([0, 1, 5, 30, 31, 200, 2400, 9600])): rng.randint(0, 4) for _ in range(12)})
            histograms[(code, marking)] = hours
    histograms[("KENT", "OFFICIAL")] = Counter({"48": 0, "3": 0})  # counted once, taken away since
    histograms[("KENT", "OFFICIAL-SENSITIVE")] = Counter()
    histograms[("KENT", "SECRET")] = Counter({"7": 1})
    session = metrics_app.extensions["database"].session()
    try:
        write_facts(
            session,
            {
                ("org_hours", code, hours, marking): count
                for (code, marking), histogram in histograms.items()
                for hours, count in histogram.items()
            },
        )
        session.commit()
        codes = ["GMP", "MPS", "WMP", "KENT", "NONE"]
        for cleared in (["OFFICIAL"], ["OFFICIAL", "OFFICIAL-SENSITIVE"], list(MARKINGS)):
            expected = {}
            for code in codes:
                merged: Counter = Counter()
                for marking in cleared:
                    for hours, count in histograms.get((code, marking), Counter()).items():
                        merged[hours] += count
                expected[code] = median_from_histogram(merged)
            assert median_days_to_return(session, codes, cleared) == expected, cleared
            assert median_days_to_return(session, ["MPS"], cleared) == {"MPS": expected["MPS"]}
        assert median_days_to_return(session, ["KENT"], ["OFFICIAL"]) == {"KENT": None}
        assert median_days_to_return(session, ["KENT"], list(MARKINGS)) == {"KENT": round(7.5 / 24, 2)}
    finally:
        session.close()


def test_the_histograms_move_out_of_the_facts_and_back(metrics_app):
    """Migration 0010 moves the hours histograms from the facts (scope ``org_hours``, as 0009 kept
    them) to their own table; down and up again, every count and every median is the same."""
    from sqlalchemy import func, select, text

    from services.metrics.models import Fact, HoursToReturn

    histogram = {("GMP", "OFFICIAL", 5): 2.0, ("GMP", "SECRET", 40): 1.0, ("MPS", "OFFICIAL", 9600): 3.0}
    session = metrics_app.extensions["database"].session()
    try:
        write_facts(
            session, {("org_hours", code, str(hours), marking): n for (code, marking, hours), n in histogram.items()}
        )
        write_facts(session, {("org", "GMP", "final", "OFFICIAL"): 3})
        session.commit()
        medians = median_days_to_return(session, ["GMP", "MPS"], list(MARKINGS))
        assert medians == {"GMP": round(5.5 / 24, 2), "MPS": 400.02}
        assert session.scalar(select(func.count()).select_from(Fact)) == 1  # the histograms are apart
    finally:
        session.close()
    with migrated_down_to(metrics_app, "0009") as engine, engine.connect() as connection:
        rows = connection.execute(
            text("SELECT key, classification, metric, value FROM facts WHERE scope = 'org_hours'")
        )
        assert {(code, marking, int(hours)): n for code, marking, hours, n in rows} == histogram
    session = metrics_app.extensions["database"].session()
    try:
        moved = {(h.organisation, h.classification, h.hours): h.value for h in session.scalars(select(HoursToReturn))}
        assert moved == histogram
        assert session.scalar(select(func.count()).select_from(Fact)) == 1
        assert median_days_to_return(session, ["GMP", "MPS"], list(MARKINGS)) == medians
    finally:
        session.close()

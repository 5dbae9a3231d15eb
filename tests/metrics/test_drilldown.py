"""The dashboard's drill-down pages, on the hand-worked story in story.py: a package's whole
story (its timeline per recipient, kept by the projection, the same after a rebuild), an
organisation's page agreeing with the API and the CSV, the links between them, the filters kept
in the URL, the CSV button, and the comparisons (this period against the one before, each
organisation against the national figure)."""

from __future__ import annotations

import csv
import io
import re
from datetime import date

import pytest
from sqlalchemy import select

from services.metrics import figures, rebuilding
from services.metrics.models import TimelineEntry
from tests.metrics import story
from tests.metrics.test_dashboard import card, raw, sign_in, text
from tests.metrics.test_rebuild import log_fetcher


@pytest.fixture
def told(snapshot_world):
    return snapshot_world(story.build)


def leader(token, **changes):
    return token("NCLCC", "leader", **changes)


def signed_in(metrics_client, token, **changes):
    assert sign_in(metrics_client, raw(leader(token, **changes))).status_code == 303
    return metrics_client


def timeline_of(page: str, return_id: str) -> list[str]:
    """One recipient's timeline as it reads: each entry's heading, then its lines, joined."""
    found = re.search(rf'<ol class="timeline" aria-labelledby="story-{return_id}">(.*?)</ol>', page, re.S)
    assert found, f"no timeline for {return_id}"
    entries = re.findall(r'<li class="timeline__entry[^"]*">(.*?)</li>', found[1], re.S)
    told = []
    for entry in entries:
        what = re.search(r'class="timeline__what">([^<]*)<', entry)[1]
        lines = re.findall(r'class="timeline__line">([^<]*)<', entry)
        told.append(" | ".join([what, *lines]))
    return told


def heading_of(page: str, return_id: str) -> str:
    found = re.search(rf'id="story-{return_id}">(.*?)</h3>', page, re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", found[1])).strip()


FEEDBACK = "On the intelligence: usefulness 4 of 5, confirmed, in time to act on."
TASKED = "Priority: high, set by GMP Serious Organised Crime tasking."


def test_the_package_page_tells_the_whole_story(told, metrics_client, token):
    ids = told["ids"]
    page = text(signed_in(metrics_client, token).get(f"/dashboard/packages/{told['t']['id']}"))
    assert "OFFICIAL-SENSITIVE" in page and told["t"]["reference"] in page
    # The package itself: drafted, then issued to its three recipients.
    package = re.search(r'aria-labelledby="story-package">(.*?)</ol>', page, re.S)[1]
    assert re.findall(r'class="timeline__what">([^<]*)<', package) == ["Drafted", "Issued to ROCU-NW, MPS and WMP"]

    # ROCU-NW: acknowledged, an interim return passing it on, then its final return.
    rocu = timeline_of(page, ids["ROCU-NW"])
    assert [entry.split(" | ")[0] for entry in rocu] == [
        "Sent",
        "Delivered by e-mail",
        "Acknowledged",
        "Interim return filed (version 1)",
        "Passed it on to LANCS",
        "Final return filed, after an interim one (version 2, on time)",
    ]
    assert rocu[3].split(" | ")[1:] == [
        "Action: enforcement, passed it to another organisation (passed to LANCS).",
        "Results (direct): 1 arrest.",
        TASKED,
        FEEDBACK,
    ]
    assert "Results (direct): 2 arrests." in rocu[5]
    assert heading_of(page, ids["ROCU-NW"]) == "ROCU-NW Final return in"

    # LANCS, passed it by ROCU-NW: a final return, then its amendment; results counted onward.
    lancs = timeline_of(page, ids["LANCS"])
    assert [entry.split(" | ")[0] for entry in lancs] == [
        "Passed on to it by ROCU-NW",
        "Delivered by e-mail",
        "Acknowledged",  # filing counts as acknowledgement (the dissemination service says so)
        "Final return filed (version 1, on time)",
        "Final return amended (version 2, on time)",
    ]
    assert "Results (onward): 3 arrests." in lancs[3]
    assert "Results (onward): 4 arrests, 1 weapon seized." in lancs[4]
    assert heading_of(page, ids["LANCS"]) == "LANCS Final return in passed on to it by ROCU-NW"

    # MPS: an interim return passing it on to CHESHIRE, then a final one taking no action, which
    # withdrew CHESHIRE's dissemination.
    mps = timeline_of(page, ids["MPS"])
    assert mps[-1] == (
        "Final return filed, after an interim one (version 2, on time) | No action: Already under investigation. "
        "| Priority: not prioritised. | " + FEEDBACK
    )
    assert "Passed it on to CHESHIRE" in [entry.split(" | ")[0] for entry in mps]
    cheshire = timeline_of(page, ids["CHESHIRE"])
    assert cheshire[0].startswith("Passed on to it by MPS")
    assert cheshire[-1] == (
        "Withdrawn from this organisation | Reason: MPS amended its outcome return: the package is no longer "
        "passed on to CHESHIRE."
    )
    assert heading_of(page, ids["CHESHIRE"]) == "CHESHIRE Withdrawn passed on to it by MPS"

    # WMP: its due date extended, the chase ladder's steps sent, overdue.
    wmp = [entry.split(" | ") for entry in timeline_of(page, ids["WMP"])]
    assert wmp[2][0].startswith("Due date extended to ") and wmp[2][1] == "Reason: Awaiting lab results"
    chased = [entry[0] for entry in wmp if entry[0].startswith("Chased: ")]
    # At 60 days the sweep skips the recipient's superseded reminder and due-day notices.
    assert chased == [
        "Chased: overdue (to the recipient, by e-mail)",
        "Chased: escalation (to its escalation contact, by e-mail)",
        "Chased: centre escalation (to the centre, by e-mail)",
    ], wmp
    assert "Overdue" in [entry[0] for entry in wmp]
    assert heading_of(page, ids["WMP"]) == "WMP Overdue"

    # The onward chain, and the package's figures (hand-worked in story.py).
    chain = re.search(r'<ul class="chain">(.*?)</ul>', page, re.S)[1]
    links = [
        re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", item)).strip() for item in re.findall(r"<li>(.*?)</li>", chain, re.S)
    ]
    assert [re.sub(r" \d+ \w+ \d{4}, \d\d:\d\d", "", link) for link in links] == [
        "ROCU-NW passed it to LANCS",
        "MPS passed it to CHESHIRE since withdrawn",
    ]
    assert (card(page, "return-rate"), card(page, "acknowledged"), card(page, "actioned")) == ("75%", "75%", "67%")
    assert re.search(
        r'id="result-arrests"><th scope="row">Arrests</th><td[^>]*>6</td><td>2</td><td>0</td><td>4</td>', page
    )
    assert re.search(r'id="result-weapons_seized">.*?<td[^>]*>1</td><td>0</td><td>0</td><td>1</td>', page)


def test_a_withdrawn_package_tells_its_withdrawal(told, metrics_client, token):
    page = text(signed_in(metrics_client, token).get(f"/dashboard/packages/{told['w']['id']}"))
    package = re.search(r'aria-labelledby="story-package">(.*?)</ol>', page, re.S)[1]
    assert re.findall(r'class="timeline__(?:what|line)">([^<]*)<', package)[-2:] == [
        "Withdrawn by the centre",
        "Reason: Superseded.",
    ]
    assert [entry.split(" | ")[0] for entry in timeline_of(page, told["gmp"])] == [
        "Sent",
        "Delivered by e-mail",
        "Acknowledged",
    ]
    assert heading_of(page, told["gmp"]) == "GMP Withdrawn"
    assert "Withdrawn by the centre." in page and card(page, "return-rate") == "—"


def timeline_rows(metrics_app) -> set:
    session = metrics_app.extensions["database"].session()
    try:
        return {
            (
                e.event_id,
                e.package_id,
                e.return_id,
                e.organisation,
                e.kind,
                e.occurred_at,
                repr(sorted(e.detail.items())),
            )
            for e in session.scalars(select(TimelineEntry))
        }
    finally:
        session.close()


def test_the_timeline_is_the_same_after_a_rebuild_and_in_any_order(
    told, metrics_app, metrics_client, app, outcomes_app, token
):
    import random

    live = timeline_rows(metrics_app)
    kinds = {row[4] for row in live}
    assert kinds == {
        "issued", "delivered", "acknowledged", "returned", "passed_on", "dissemination_withdrawn", "withdrawn",
        "extended", "chased", "overdue",
    }  # fmt: skip
    page = text(signed_in(metrics_client, token).get(f"/dashboard/packages/{told['t']['id']}"))
    story_of = lambda page: re.search(r'id="timeline".*?</section>', page, re.S)[0]  # noqa: E731

    session = metrics_app.extensions["database"].session()
    rebuilding.rebuild(session, log_fetcher(app, outcomes_app))
    session.close()
    assert timeline_rows(metrics_app) == live
    assert story_of(text(metrics_client.get(f"/dashboard/packages/{told['t']['id']}"))) == story_of(page)

    # The same events again (the inbox drops them) and in another order, in small batches.
    fetch = log_fetcher(app, outcomes_app)
    events = [e for source in ("dissemination", "outcomes") for e in rebuilding.event_stream(fetch, source)]
    session = metrics_app.extensions["database"].session()
    rebuilding.apply_batch(session, events[:20])
    rebuilding.rebuild(session, lambda source, after, limit: {"events": [], "next_after": 0})
    random.Random(3).shuffle(events)
    for start in range(0, len(events), 5):
        rebuilding.apply_batch(session, events[start : start + 5])
    session.close()
    assert timeline_rows(metrics_app) == live
    # Every recipient's entries read the same (its status beside its name is the read model's
    # latest state, which a shuffled history may leave otherwise: an extension applied after the
    # overdue notice it preceded clears it).
    entries = lambda page: re.findall(r'<ol class="timeline".*?</ol>', story_of(page), re.S)  # noqa: E731
    assert entries(text(metrics_client.get(f"/dashboard/packages/{told['t']['id']}"))) == entries(page)


def test_an_event_applied_twice_adds_one_timeline_row(told, metrics_app, app, outcomes_app):
    from services.metrics.projections import apply_events

    fetch = log_fetcher(app, outcomes_app)
    events = list(rebuilding.event_stream(fetch, "outcomes"))
    before = timeline_rows(metrics_app)
    session = metrics_app.extensions["database"].session()
    try:
        apply_events(session, [events[0], events[0]])  # past the inbox, twice in one batch
        apply_events(session, [events[0]])
        session.commit()
        assert len(session.scalars(select(TimelineEntry)).all()) == len(before)
    finally:
        session.close()


def api(metrics_client, token, path, **changes):
    response = metrics_client.get(path, headers=leader(token, **changes))
    assert response.status_code == 200, response.get_json()
    return response


def percent(value):
    return "—" if value is None else f"{round(value * 100)}%"


@pytest.mark.parametrize("code", ["LANCS", "MPS", "WMP", "ROCU-NW"])
def test_the_organisation_page_agrees_with_the_api_and_the_csv(told, metrics_client, token, code):
    figures_of = api(metrics_client, token, f"/api/v1/metrics/organisations/{code}").get_json()
    national = api(metrics_client, token, "/api/v1/metrics/organisations").get_json()
    page = text(signed_in(metrics_client, token).get(f"/dashboard/organisations/{code}"))
    assert card(page, "received") == str(figures_of["packages_received"])
    for card_id, name in (("return-rate", "return_rate"), ("on-time", "on_time_rate"),
                          ("acknowledged", "acknowledged_rate"), ("actioned", "actioned_rate")):  # fmt: skip
        assert card(page, card_id) == percent(figures_of[name]), name
    for kind in ("arrests", "weapons_seized"):
        row = re.search(rf'id="result-{kind}"><th scope="row">[^<]*</th>((?:<td[^>]*>[^<]*</td>){{4}})', page)[1]
        cells = re.findall(r">([^<]*)</td>", row)
        results = figures_of["results"]
        assert cells == [str(results[part][kind]) for part in ("totals", "direct", "contributed", "onward")], kind
    # The national figure: every organisation's returns together (T's: 3 of 4 final in).
    returned = sum(o["returned"] for o in national)
    expected = sum(o["packages_received"] for o in national)
    assert (returned, expected) == (3, 4)
    assert f"the national {percent(returned / expected)}" in page
    # Its packages: T only (W was sent to GMP), linking to T's page; the CSV button has the same.
    packages = re.search(r'<table class="packages" id="packages">(.*?)</table>', page, re.S)[1]
    assert told["t"]["reference"] in packages and told["w"]["reference"] not in packages
    assert f"/dashboard/packages/{told['t']['id']}?" in packages
    button = re.search(r'id="csv-button" href="([^"]+)"', page)[1].replace("&amp;", "&")
    assert f"organisation={code}" in button
    exported = metrics_client.get(button)
    assert exported.status_code == 200 and exported.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    assert [row["reference"] for row in rows] == [told["t"]["reference"]]


def test_mean_usefulness_and_accuracy_agree_with_the_api(told, metrics_client, token):
    quality = api(metrics_client, token, "/api/v1/metrics/organisations/MPS").get_json()["quality"]
    page = text(signed_in(metrics_client, token).get("/dashboard/organisations/MPS"))
    assert re.search(r'id="mean-usefulness">([^<]*)<', page)[1] == f"{quality['mean_usefulness']:g} of 5"
    accuracy = re.search(r'id="accuracy">(.*?)</table>', page, re.S)[1]
    confirmed = re.search(r"<th scope=\"row\">Confirmed</th><td>(\d+)</td>", accuracy)[1]
    assert int(confirmed) == quality["accuracy"]["confirmed"]


def test_two_clicks_from_the_headline_to_a_package_and_back_with_the_filters(told, metrics_client, token):
    client = signed_in(metrics_client, token)
    page = text(client.get("/dashboard?from=2026-01&to=2026-12&threat_area=drugs_supply"))
    links = re.findall(r'href="(/dashboard/packages/[^"]+)"', page)
    assert len(links) == 1 and told["t"]["id"] in links[0]
    assert "from=2026-01" in links[0] and "to=2026-12" in links[0] and "threat_area=drugs_supply" in links[0]
    organisation_links = re.findall(r'href="(/dashboard/organisations/[^"]+)"', page)
    assert {re.search(r"organisations/([^?]+)", link)[1] for link in organisation_links} == {
        "ROCU-NW",
        "MPS",
        "WMP",
        "LANCS",
        "GMP",
        "CHESHIRE",
    }  # CHESHIRE: its one return was withdrawn
    package = text(client.get(links[0]))
    back = re.search(r'href="([^"]+)" id="back"', package)[1]
    assert back.startswith("/dashboard?") and "threat_area=drugs_supply" in back and "from=2026-01" in back
    # From the package to a recipient's page, the filters still kept.
    lancs = re.search(r'href="(/dashboard/organisations/LANCS[^"]*)"', package)[1]
    assert "threat_area=drugs_supply" in lancs
    assert client.get(lancs).status_code == 200
    # The CSV button exports what is on screen: the same filters.
    button = re.search(r'id="csv-button" href="([^"]+)"', page)[1]
    assert "threat_area=drugs_supply" in button and "from=2026-01" in button


def test_the_dashboard_csv_is_the_api_csv_with_the_same_filters(told, metrics_client, token):
    query = "from=2026-01&to=2026-12&threat_area=drugs_supply&organisation=LANCS"
    from_api = api(metrics_client, token, f"/api/v1/metrics/export.csv?{query}")
    from_dashboard = signed_in(metrics_client, token).get(f"/dashboard/export.csv?{query}")
    assert from_dashboard.status_code == 200
    assert from_dashboard.get_data() == from_api.get_data()
    assert from_dashboard.headers["Content-Disposition"] == from_api.headers["Content-Disposition"]
    everything = metrics_client.get("/dashboard/export.csv?from=2026-01&to=2026-12")
    references = [row["reference"] for row in csv.DictReader(io.StringIO(everything.get_data(as_text=True)))]
    assert sorted(references) == sorted([told["t"]["reference"], told["w"]["reference"]])


def test_the_organisation_filter_narrows_the_dashboard(told, metrics_client, token):
    summary = api(metrics_client, token, "/api/v1/metrics/summary?organisation=LANCS").get_json()
    page = text(signed_in(metrics_client, token).get("/dashboard?organisation=lancs"))
    assert "returns of LANCS" in page
    assert card(page, "return-rate") == percent(summary["rates"]["returned"]) == "100%"
    assert card(page, "arrests") == "4"
    assert '<option value="LANCS" selected>' in page


# -- comparisons ------------------------------------------------------------------------------


def test_previous_period():
    assert figures.previous_period(date(2026, 1, 1), date(2026, 3, 1)) == (date(2025, 10, 1), date(2025, 12, 1))
    assert figures.previous_period(date(2026, 1, 1), date(2026, 1, 1)) == (date(2025, 12, 1), date(2025, 12, 1))
    assert figures.previous_period(date(2026, 1, 1), date(2026, 12, 1)) == (date(2025, 1, 1), date(2025, 12, 1))
    assert figures.previous_period(date(2026, 5, 1), date(2026, 6, 1)) == (date(2026, 3, 1), date(2026, 4, 1))


@pytest.mark.parametrize(
    ("current", "previous", "options", "words"),
    [
        (0.67, 0.62, {"is_rate": True}, "up 5 points from 62%"),
        (0.6, 0.61, {"is_rate": True}, "down 1 point from 61%"),
        (0.624, 0.62, {"is_rate": True}, "no change from 62%"),
        (0.5, None, {"is_rate": True}, "no previous figure"),
        (None, 0.5, {"is_rate": True}, "no figure now; it was 50%"),
        (12, 10, {}, "up 2 from 10"),
        (7, 10, {}, "down 3 from 10"),
        (4, 4, {}, "no change from 4"),
        (12500, 9000, {"words": lambda value: f"£{value:,.0f}"}, "up £3,500 from £9,000"),
    ],
)
def test_compare(current, previous, options, words):
    assert figures.compare(current, previous, **options).words == words


def test_compare_counts_the_points_a_leader_sees():
    # 67.5% shows as 68% (rounded half to even: 0.675 -> 68) and 62.4% as 62%: 6 points, as the cards read.
    change = figures.compare(0.675, 0.624, is_rate=True)
    assert change.words == "up 6 points from 62%" and change.direction == "up"


@pytest.mark.parametrize(
    ("value", "national", "words"),
    [
        (1.0, 0.75, "25 points above the national 75%"),
        (0.5, 0.75, "25 points below the national 75%"),
        (0.751, 0.75, "the same as the national 75%"),
        (None, 0.75, "no figure; the national is 75%"),
    ],
)
def test_compare_with_national(value, national, words):
    assert figures.compare_with_national(value, national).words == words


def month_facts(metrics_app, months: dict[str, dict[str, float]]) -> None:
    from services.metrics.projections import write_facts

    session = metrics_app.extensions["database"].session()
    deltas = {}
    for month, counts in months.items():
        for metric, value in counts.items():
            deltas[("month", f"{month}|*|*", metric, "OFFICIAL")] = value
    write_facts(session, deltas)
    session.commit()
    session.close()


def test_this_period_against_the_previous_one(metrics_app, metrics_client, token):
    """Two quarters, worked by hand:
    Q4 2025 (Oct-Dec): 10 packages, 50 returns expected, 31 final (62%), 20 on time (65% of 31),
      40 acknowledged (80%), 15 final reporting action (48%), 10 arrests, £9,000 cash.
    Q1 2026 (Jan-Mar): 12 packages, 40 expected, 26 final (65%), 13 on time (50%),
      40 acknowledged (100%), 13 final reporting action (50%), 10 arrests, £12,500 cash.
    """
    month_facts(metrics_app, {
        "2025-10": {"packages": 4, "recipients": 20, "final": 11, "on_time": 8, "acknowledged": 15,
                    "final_actioned": 5, "result:arrests": 4, "result:cash_seized_gbp": 9000},
        "2025-11": {"packages": 3, "recipients": 15, "final": 10, "on_time": 6, "acknowledged": 12,
                    "final_actioned": 5, "result:arrests": 3},
        "2025-12": {"packages": 3, "recipients": 15, "final": 10, "on_time": 6, "acknowledged": 13,
                    "final_actioned": 5, "result:arrests": 3},
        "2026-01": {"packages": 5, "recipients": 16, "final": 10, "on_time": 5, "acknowledged": 16,
                    "final_actioned": 5, "result:arrests": 6, "result:cash_seized_gbp": 12500},
        "2026-02": {"packages": 4, "recipients": 12, "final": 8, "on_time": 4, "acknowledged": 12,
                    "final_actioned": 4, "result:arrests": 4},
        "2026-03": {"packages": 3, "recipients": 12, "final": 8, "on_time": 4, "acknowledged": 12,
                    "final_actioned": 4},
    })  # fmt: skip
    page = text(signed_in(metrics_client, token).get("/dashboard?from=2026-01&to=2026-03"))
    assert "previous period of the same length: October 2025 to December 2025" in page

    def change(card_id):
        return re.search(rf'id="card-{card_id}">.*?class="card__change[^"]*">([^<]*)<', page, re.S)[1]

    assert (card(page, "packages"), change("packages")) == ("12", "Up 2 from 10")
    assert (card(page, "return-rate"), change("return-rate")) == ("65%", "Up 3 points from 62%")
    assert (card(page, "on-time"), change("on-time")) == ("50%", "Down 15 points from 65%")
    assert (card(page, "acknowledged"), change("acknowledged")) == ("100%", "Up 20 points from 80%")
    assert (card(page, "actioned"), change("actioned")) == ("50%", "Up 2 points from 48%")
    assert (card(page, "arrests"), change("arrests")) == ("10", "No change from 10")

    def result_change(kind):
        return re.search(rf'id="result-{kind}">.*?class="results__change"><span>([^<]*)<', page, re.S)[1]

    assert result_change("cash_seized_gbp") == "Up £3,500 from £9,000"
    assert result_change("arrests") == "No change from 10"
    assert result_change("weapons_seized") == "No change from 0"

"""The inspection evidence pack (services/metrics/evidence.py), on the hand-worked history of
test_definitions.py (interim-only, amended, onward, no-action, acknowledged and silent returns, and
a withdrawn package) and on scenario.py's history with an OFFICIAL package for clearance:

- its figures are the API summary's and agree with the CSV export, package by package;
- each return says whether it was delivered, acknowledged, chased and returned (on time or late),
  what action and results followed (by attribution), the priority and tasking forum, and the
  feedback on the intelligence;
- the PDF, read back with pypdf, holds the references, figures and definitions, and nothing above
  the reader's clearance; its header names the highest marking and the reader's clearance;
- the previous period and the national figure are the summary's for those windows;
- bad parameters answer 422 naming the field; the dashboard's pages give the same pack to a
  signed-in leader; every read is audited.

Worked by hand for P (from test_definitions.py): returns expected 5 (ROCU-NW, MPS, WMP, CHESHIRE,
GMP onward); final 3 (MPS, CHESHIRE, GMP); still open 2 (ROCU-NW: an interim return only; WMP:
nothing); not acknowledged 1 (WMP).
"""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import UTC, date, datetime

import pytest
from pypdf import PdfReader
from sqlalchemy import select

from services.metrics import definitions
from services.metrics.figures import previous_period
from tests.metrics import scenario
from tests.metrics.test_dashboard import raw, sign_in, text
from tests.metrics.test_definitions import RESULT_WORDS, leader
from tests.metrics.test_definitions import world as world  # noqa: F401  (the fixture)

THIS_MONTH = f"{datetime.now(UTC):%Y-%m}"
PACK = "/api/v1/metrics/evidence-pack"


def next_month(month: str) -> str:
    year, number = int(month[:4]), int(month[5:])
    return f"{year + 1}-01" if number == 12 else f"{year}-{number + 1:02d}"


def pdf_text(response) -> str:
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert response.headers["Content-Type"] == "application/pdf"
    reader = PdfReader(io.BytesIO(response.get_data()))
    return " ".join(" ".join(page.extract_text() for page in reader.pages).split())


def plain(words: str) -> str:
    """As the PDF's Latin-1 fonts print it, spaces normalised."""
    return " ".join(words.replace("—", "-").replace("−", "-").replace("“", '"').replace("”", '"').split())


def cells(page: str, row_id: str) -> list[str]:
    row = re.search(rf'<tr id="{row_id}">(.*?)</tr>', page, re.S)
    assert row, f"no row {row_id}"
    return [html.unescape(c) for c in re.findall(r"<td[^>]*>([^<]*)</td>", row[1])]


def package_block(page: str, reference: str) -> str:
    found = re.search(rf'<article class="pack-package" id="package-{reference}".*?</article>', page, re.S)
    assert found, f"no package {reference}"
    return html.unescape(re.sub(r"\s+", " ", found[0]))


def returns_row(block: str, organisation: str) -> str:
    found = re.search(rf"<tr> <th scope=\"row\">{organisation}\b.*?</tr>", block, re.S)
    assert found, f"no row for {organisation}"
    return re.sub(r"<[^>]+>", "", found[0])


def the_csv(metrics_client, token) -> dict[str, dict]:
    response = metrics_client.get(
        f"/api/v1/metrics/export.csv?from={THIS_MONTH}&to={THIS_MONTH}", headers=leader(token)
    )
    return {row["reference"]: row for row in csv.DictReader(io.StringIO(response.get_data(as_text=True)))}


def test_the_pack_agrees_with_the_summary_and_the_csv(world, metrics_client, token):  # noqa: F811
    query = f"?from={THIS_MONTH}&to={THIS_MONTH}"
    summary = metrics_client.get("/api/v1/metrics/summary" + query, headers=leader(token)).get_json()
    row = the_csv(metrics_client, token)[world["p"]["reference"]]
    response = metrics_client.get(PACK + query, headers=leader(token))
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert f'filename="nclcc-evidence-pack-{THIS_MONTH}.html"' in response.headers["Content-Disposition"]
    page = response.get_data(as_text=True)

    # The headline figures: the summary's, read as the dashboard reads them; each defined.
    assert cells(page, "figure-packages")[0] == str(summary["packages_issued"]) == "1"
    for figure, (card, key) in {
        definitions.RETURN_RATE: ("return-rate", "returned"),
        definitions.ON_TIME_RATE: ("on-time", "on_time"),
        definitions.ACKNOWLEDGED_RATE: ("acknowledged", "acknowledged"),
        definitions.ACTIONED_RATE: ("actioned", "actioned"),
    }.items():
        value = cells(page, f"figure-{card}")[0]
        assert value == f"{round(summary['rates'][key] * 100)}%", figure.name
        assert float(row[figure.name]) == summary["rates"][key], figure.name  # the CSV's, too
        assert html.escape(figure.definition) in page or figure.definition in html.unescape(page)
    assert ["60%", "100%", "80%", "67%"] == [
        cells(page, f"figure-{c}")[0] for c in ("return-rate", "on-time", "acknowledged", "actioned")
    ]
    for kind, words in RESULT_WORDS.items():
        assert cells(page, f"result-{kind}") == words, kind

    # Completeness, worked by hand, and consistent with the summary's funnel and the CSV.
    assert cells(page, "still-open") == ["2"]
    completeness = re.sub(r"<[^>]+>", " ", re.search(r'id="completeness">(.*?)</table>', page, re.S)[1])
    counts = dict(re.findall(r"\s{2,}([A-Za-z ,]+?)\s+(\d+)", completeness))
    assert counts["Returns expected"] == str(summary["funnel"]["recipients"]) == row["recipients"] == "5"
    assert counts["Final return filed"] == str(summary["funnel"]["final"]) == row["final_returns"] == "3"
    assert counts["of them, an interim return only"] == "1" and counts["Not acknowledged"] == "1"

    # Package by package, return by return.
    p = package_block(page, world["p"]["reference"])
    assert "Verdict: <strong>Actioned</strong>" in p and definitions.results_words({"result:arrests": 4}) in p
    rocu = returns_row(p, "ROCU-NW")
    assert "Interim only" in rocu and "Passed it to another organisation" in rocu and "(to GMP)" in rocu
    assert "1 arrest, 850 g of drugs seized (direct)" in rocu
    gmp = returns_row(p, "GMP")
    assert "(onward, from ROCU-NW)" in gmp and "amended (version 2)" in gmp and "Final, on time" in gmp
    assert "3 arrests, 350 g of drugs seized, drugs worth £9,000, £12,500 cash seized, 2 weapons seized" in gmp
    assert "2 weapons seized (onward)" in gmp  # passed on: onward, whatever GMP called them
    mps = returns_row(p, "MPS")
    assert "Delivered; " in mps and "No action: Already under investigation. Priority" in mps
    assert "Priority: Not prioritised" in mps and "Results None" not in mps
    cheshire = returns_row(p, "CHESHIRE")
    assert "(contributed)" in cheshire and "Final, on time" in cheshire
    assert "Priority: High, by GMP Serious Organised Crime tasking" in cheshire  # as the return said
    assert "Open, not yet due" in returns_row(p, "WMP") and "No" in returns_row(p, "WMP")

    w = package_block(page, world["w"]["reference"])
    assert "Withdrawn" in w and "nothing of it is counted" in w
    assert "LANCS" in w  # listed as sent, counted nowhere
    assert html.unescape(page).count("Highest marking in this pack") == 1
    assert "OFFICIAL-SENSITIVE" in re.search(r'id="highest-marking">([^<]*)<', page)[1]


def test_the_pdf_holds_the_references_figures_and_definitions(world, metrics_client, token):  # noqa: F811
    query = f"?from={THIS_MONTH}&to={THIS_MONTH}&format=pdf"
    response = metrics_client.get(PACK + query, headers=leader(token))
    assert f'attachment; filename="nclcc-evidence-pack-{THIS_MONTH}.pdf"' == response.headers["Content-Disposition"]
    found = pdf_text(response)
    assert world["p"]["reference"] in found and world["w"]["reference"] in found
    for words in ("60%", "100%", "80%", "67%", "£12,500", "1.2 kg", "850 g", "£9,000"):
        assert words in found, words
    for figure in definitions.RATES:
        assert plain(figure.definition) in found, figure.name
    for words in (definitions.RESULTS_DEFINITION, definitions.FUNNEL_DEFINITION, definitions.GRADING_DEFINITION):
        assert plain(words) in found
    assert "Highest marking in this pack: OFFICIAL-SENSITIVE" in found
    assert "Reader's clearance: OFFICIAL-SENSITIVE" in found
    assert "amended (version 2)" in found and "onward, from ROCU-NW" in found
    assert "Interim only" in found and "Already under investigation." in found


def test_the_previous_period_and_the_national_figure_are_the_summarys(world, metrics_client, token):  # noqa: F811
    # Asked for next month, the previous period is this month: the pack's "previous" column is
    # this month's summary.
    later = next_month(THIS_MONTH)
    page = html.unescape(
        metrics_client.get(f"{PACK}?from={later}&to={later}", headers=leader(token)).get_data(as_text=True)
    )
    assert "No packages were issued in this period." in page
    assert re.search(r'id="highest-marking">none: no packages in the period<', page)
    previous = re.search(r'id="previous">(.*?)</table>', page, re.S)[1]
    assert re.search(r"Return rate</th><td[^>]*>—</td><td[^>]*>60%</td>", previous)
    assert re.search(r"Returns expected</th><td[^>]*>0</td><td[^>]*>5</td><td>−5</td>", previous)
    assert re.search(r"Arrests</th><td[^>]*>0</td><td[^>]*>4</td><td>−4</td>", previous)

    gmp = metrics_client.get(
        f"/api/v1/metrics/summary?from={THIS_MONTH}&to={THIS_MONTH}&organisation=GMP", headers=leader(token)
    ).get_json()
    page = html.unescape(
        metrics_client.get(
            f"{PACK}?from={THIS_MONTH}&to={THIS_MONTH}&organisation=gmp", headers=leader(token)
        ).get_data(as_text=True)
    )
    national = re.search(r'id="national">(.*?)</table>', page, re.S)[1]
    assert "<dt>National figure</dt>" in page
    assert gmp["funnel"]["recipients"] == 1 and gmp["funnel"]["final"] == 1
    assert re.search(r"Returns expected</th><td[^>]*>1</td><td[^>]*>5</td><td>−4</td>", national)
    assert re.search(r"Return rate</th><td[^>]*>100%</td><td[^>]*>60%</td><td>\+40 points</td>", national)
    # Only GMP's return is listed under P; its results are the organisation's.
    p = package_block(page, world["p"]["reference"])
    assert "GMP" in p and "CHESHIRE" not in p and "WMP" not in p
    assert cells(page, "result-arrests")[0] == str(gmp["results"]["totals"]["arrests"]) == "3"


@pytest.mark.parametrize(
    ("start", "end", "before"),
    [
        (date(2026, 1, 1), date(2026, 3, 1), (date(2025, 10, 1), date(2025, 12, 1))),
        (date(2026, 3, 1), date(2026, 3, 17), (date(2026, 2, 1), date(2026, 2, 1))),
        (date(2026, 1, 1), date(2026, 12, 1), (date(2025, 1, 1), date(2025, 12, 1))),
        (date(2025, 12, 1), date(2026, 1, 1), (date(2025, 10, 1), date(2025, 11, 1))),
    ],
)
def test_the_previous_period_is_as_many_months_just_before(start, end, before):
    assert previous_period(start, end) == before


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("format=doc", "format"),
        ("from=2026-13", "from"),
        ("to=1999-01", "to"),
        ("from=2026-05&to=2026-01", "from"),
        ("organisation=G%20M%20P", "organisation"),
        ("threat_area=piracy", "threat_area"),
        ("colour=red", "colour"),
    ],
)
def test_bad_parameters_are_named(metrics_client, token, query, field):
    response = metrics_client.get(f"{PACK}?{query}", headers=leader(token))
    assert response.status_code == 422
    assert field in response.get_json()["errors"]["query"]


def test_only_leaders_read_the_pack(metrics_client, token):
    assert metrics_client.get(PACK).status_code == 401
    assert metrics_client.get(PACK, headers=token("GMP", "recipient")).status_code == 403
    assert metrics_client.get(PACK, headers=token("NCLCC", "issuer")).status_code == 403
    assert metrics_client.get(PACK + "?format=pdf", headers=token("NCLCC", "admin")).status_code == 200


@pytest.fixture
def history(snapshot_world):
    """scenario.py's A, B, C (OFFICIAL-SENSITIVE) and E (OFFICIAL)."""
    return snapshot_world(scenario.mixed_history)


def test_a_reader_sees_and_is_counted_only_what_their_clearance_allows(history, metrics_client, token):
    official = token("NCLCC", "leader", clearance="OFFICIAL", sub="deputy@nclcc")
    found = pdf_text(metrics_client.get(PACK + "?format=pdf", headers=official))
    assert history["e"]["reference"] in found and scenario.OFFICIAL_TITLE in found
    for name in ("a", "b", "c"):
        assert history[name]["reference"] not in found, name
    assert "County line" not in found
    assert "Highest marking in this pack: OFFICIAL." in found and "Reader's clearance: OFFICIAL;" in found
    summary = metrics_client.get("/api/v1/metrics/summary", headers=official).get_json()
    assert summary["packages_issued"] == 1
    page = metrics_client.get(PACK, headers=official).get_data(as_text=True)
    assert cells(page, "figure-packages")[0] == "1" and cells(page, "result-arrests")[0] == "7"
    assert cells(page, "still-open") == ["0"]

    everything = pdf_text(metrics_client.get(PACK + "?format=pdf", headers=token("NCLCC", "leader")))
    assert all(history[name]["reference"] in everything for name in ("a", "b", "c", "e"))
    assert "Highest marking in this pack: OFFICIAL-SENSITIVE." in everything


def audit_rows(metrics_app, path_part: str):
    model = metrics_app.extensions["service"].models.AuditEntry
    session = metrics_app.extensions["database"].session()
    try:
        return [row for row in session.scalars(select(model).order_by(model.id)) if path_part in (row.path or "")]
    finally:
        session.close()


def test_the_dashboard_offers_the_pack_and_gives_it_to_a_signed_in_leader(history, metrics_app, metrics_client, token):
    assert metrics_client.get("/dashboard/evidence-pack").status_code == 303  # not signed in: to sign in
    assert sign_in(metrics_client, raw(token("NCLCC", "leader", sub="chief@nclcc"))).status_code == 303
    dashboard = text(metrics_client.get(f"/dashboard?from={THIS_MONTH}&to={THIS_MONTH}&threat_area=county_lines"))
    links = dict(re.findall(r'<a href="(/dashboard/evidence-pack[^"]*)"[^>]*>([^<]+)</a>', dashboard))
    query = f"from={THIS_MONTH}&to={THIS_MONTH}&threat_area=county_lines"
    assert links == {
        f"/dashboard/evidence-pack.pdf?{query}": "Evidence pack (PDF)",
        f"/dashboard/evidence-pack?{query}": "(print view)",
    }

    page = metrics_client.get(f"/dashboard/evidence-pack?{query}")
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    body = text(page)
    assert history["a"]["reference"] in body and history["e"]["reference"] not in body  # E is firearms
    assert "Back to the dashboard" in body and "Download the PDF" in body
    pdf = metrics_client.get(f"/dashboard/evidence-pack.pdf?{query}")
    found = pdf_text(pdf)
    assert history["a"]["reference"] in found and history["c"]["reference"] in found
    assert "Scope: County lines." in found

    bad = metrics_client.get("/dashboard/evidence-pack?from=2026-13")
    assert bad.status_code == 422 and "From" in text(bad)

    rows = audit_rows(metrics_app, "/dashboard/evidence-pack")
    assert [(r.actor, r.status_code) for r in rows] == [
        (None, 303),
        ("chief@nclcc", 200),
        ("chief@nclcc", 200),
        ("chief@nclcc", 422),
    ]
    assert rows[0].outcome == "refused" and all(r.target_type == "evidence_pack" for r in rows[1:])
    assert [r.target_id for r in rows[1:]] == ["html", "pdf", "html"] and rows[-1].detail == "invalid: filters from"


def test_the_dashboards_pack_is_bounded_by_the_signed_in_leaders_clearance(history, metrics_client, token):
    official = raw(token("NCLCC", "leader", clearance="OFFICIAL", sub="deputy@nclcc"))
    assert sign_in(metrics_client, official).status_code == 303
    found = pdf_text(metrics_client.get("/dashboard/evidence-pack.pdf"))
    assert history["e"]["reference"] in found
    assert not any(history[name]["reference"] in found for name in ("a", "b", "c"))
    assert "Highest marking in this pack: OFFICIAL." in found and "Reader's clearance: OFFICIAL;" in found
    page = text(metrics_client.get("/dashboard/evidence-pack"))
    assert history["e"]["reference"] in page and history["a"]["reference"] not in page

    # Signed out, the pack is gone with the session.
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', text(metrics_client.get("/dashboard")))[1]
    assert metrics_client.post("/dashboard/sign-out", data={"csrf_token": csrf}).status_code == 303
    assert metrics_client.get("/dashboard/evidence-pack.pdf").status_code == 303


def test_the_apis_html_stands_alone_with_its_style_allowed_by_hash(metrics_client, token):
    import base64
    import hashlib

    response = metrics_client.get(PACK, headers=leader(token))
    page = response.get_data(as_text=True)
    style = re.search(r"<style>(.*?)</style>", page, re.S)[1]
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    policy = response.headers["Content-Security-Policy"]
    assert f"style-src 'sha256-{digest}'" in policy and "default-src 'none'" in policy
    assert "<script" not in page and '<link rel="stylesheet"' not in page
    assert "@media print" in style


def test_the_pdf_prints_any_title_in_its_latin_1_fonts():
    from services.metrics.evidence import latin

    assert latin("Łódź — “Dex” … café €5 中") == 'Lódz - "Dex" ... café EUR5 ?'  # ó is Latin-1, ź is not

"""Clearance bounds every read of the metrics service: an OFFICIAL reader neither sees an
OFFICIAL-SENSITIVE package (404, audited as a refusal) nor is counted it in any figure, in the API,
the CSV export or the dashboard; and the figures split by classification still rebuild to the live
ones, and a migration from the unsplit schema gives the same figures."""

from __future__ import annotations

import csv
import html
import io
import re

import pytest
from sqlalchemy import select

from services.metrics import rebuilding
from services.metrics.projections import facts_from_state
from tests.metrics import scenario
from tests.metrics.test_dashboard import card, raw, sign_in
from tests.metrics.test_rebuild import log_fetcher, snapshot

SENSITIVE_TITLE = "County line 'Dex' supplying Wigan"  # every package of scenario.py: OFFICIAL-SENSITIVE
OFFICIAL_TITLE = scenario.OFFICIAL_TITLE


@pytest.fixture
def history(snapshot_world):
    """scenario.py's history (A, B, C: OFFICIAL-SENSITIVE) and E: OFFICIAL, to GMP, graded 3C,
    a final return reporting enforcement, 7 arrests, the intelligence judged false."""
    return snapshot_world(scenario.mixed_history)


def official_leader(token):
    return token("NCLCC", "leader", clearance="OFFICIAL", sub="deputy@nclcc")


def sensitive_leader(token):
    return token("NCLCC", "leader", clearance="OFFICIAL-SENSITIVE")


def audit_rows(metrics_app, **where):
    model = metrics_app.extensions["service"].models.AuditEntry
    session = metrics_app.extensions["database"].session()
    try:
        query = select(model).order_by(model.id)
        for name, value in where.items():
            query = query.where(getattr(model, name) == value)
        return session.scalars(query).all()
    finally:
        session.close()


def test_a_package_above_clearance_is_not_found_and_the_refusal_audited(history, metrics_app, metrics_client, token):
    for name in ("a", "b", "c"):
        response = metrics_client.get(f"/api/v1/metrics/packages/{history[name]['id']}", headers=official_leader(token))
        assert response.status_code == 404, name
        assert SENSITIVE_TITLE not in response.get_data(as_text=True)
    # The refusal alone: the read's statement writes no entry for a package the caller may not read.
    refused = audit_rows(metrics_app, target_id=history["a"]["id"])
    assert len(refused) == 1 and refused[0].actor == "deputy@nclcc" and refused[0].status_code == 404
    assert refused[0].outcome == "refused"
    assert refused[0].detail == "refused: clearance OFFICIAL below OFFICIAL-SENSITIVE"

    official = metrics_client.get(f"/api/v1/metrics/packages/{history['e']['id']}", headers=official_leader(token))
    assert official.status_code == 200 and official.get_json()["title"] == OFFICIAL_TITLE
    assert (
        metrics_client.get(
            f"/api/v1/metrics/packages/{history['a']['id']}", headers=sensitive_leader(token)
        ).status_code
        == 200
    )


def test_the_package_list_and_csv_hold_only_what_clearance_allows(history, metrics_client, token):
    rows = metrics_client.get("/api/v1/metrics/packages", headers=official_leader(token))
    assert rows.status_code == 200 and rows.headers["X-Pagination"].find('"total": 1') >= 0
    assert [row["reference"] for row in rows.get_json()] == [history["e"]["reference"]]
    assert SENSITIVE_TITLE not in rows.get_data(as_text=True)
    for query in ("", "?threat_area=county_lines", "?organisation=MPS", "?verdict=actioned"):
        listed = metrics_client.get("/api/v1/metrics/packages" + query, headers=official_leader(token)).get_json()
        assert all(row["classification"] == "OFFICIAL" for row in listed), query

    exported = metrics_client.get("/api/v1/metrics/export.csv", headers=official_leader(token))
    assert exported.status_code == 200
    table = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    assert [row["reference"] for row in table] == [history["e"]["reference"]]
    assert SENSITIVE_TITLE not in exported.get_data(as_text=True)

    everything = metrics_client.get("/api/v1/metrics/export.csv", headers=sensitive_leader(token))
    assert len(list(csv.DictReader(io.StringIO(everything.get_data(as_text=True))))) == 4


def test_the_summary_counts_only_what_clearance_allows(history, metrics_client, token):
    official = metrics_client.get("/api/v1/metrics/summary", headers=official_leader(token)).get_json()
    assert official["packages_issued"] == 1
    assert official["funnel"]["recipients"] == 1 and official["funnel"]["final"] == 1
    assert official["funnel"]["actioned"] == 1 and official["results"]["totals"]["arrests"] == 7
    assert sum(month["recipients"] for month in official["trend"]) == 1
    assert sum(month["arrests"] for month in official["trend"]) == 7
    county_lines = metrics_client.get(
        "/api/v1/metrics/summary?threat_area=county_lines", headers=official_leader(token)
    ).get_json()
    assert county_lines["packages_issued"] == 0 and county_lines["funnel"]["recipients"] == 0

    everything = metrics_client.get("/api/v1/metrics/summary", headers=sensitive_leader(token)).get_json()
    assert everything["packages_issued"] == 3  # A, C and E (B was withdrawn)
    assert everything["funnel"]["recipients"] == 5 and everything["results"]["totals"]["arrests"] == 12

    # A recipient's own summary is bounded by its clearance too.
    gmp = metrics_client.get("/api/v1/metrics/summary", headers=token("GMP", "recipient", clearance="OFFICIAL"))
    assert gmp.status_code == 200
    assert gmp.get_json()["funnel"]["recipients"] == 1 and gmp.get_json()["results"]["totals"]["arrests"] == 7


def test_organisation_figures_count_only_what_clearance_allows(history, metrics_client, token):
    gmp = metrics_client.get("/api/v1/metrics/organisations/GMP", headers=official_leader(token)).get_json()
    assert gmp["packages_received"] == 1 and gmp["returned"] == 1
    assert gmp["results"]["totals"]["arrests"] == 7 and gmp["quality"]["accuracy"]["confirmed"] == 0
    assert gmp["median_days_to_return"] is not None
    mps = metrics_client.get("/api/v1/metrics/organisations/MPS", headers=official_leader(token))
    assert mps.status_code == 200  # the organisation is in the directory; nothing it received is counted
    assert mps.get_json()["packages_received"] == 0 and mps.get_json()["results"]["totals"]["children_safeguarded"] == 0
    listed = metrics_client.get("/api/v1/metrics/organisations", headers=official_leader(token)).get_json()
    assert [row["code"] for row in listed] == ["GMP"]
    own = metrics_client.get(
        "/api/v1/metrics/organisations/GMP", headers=token("GMP", "recipient", clearance="OFFICIAL")
    )
    assert own.get_json()["packages_received"] == 1

    sensitive = metrics_client.get("/api/v1/metrics/organisations/GMP", headers=sensitive_leader(token)).get_json()
    assert sensitive["packages_received"] == 2 and sensitive["results"]["totals"]["arrests"] == 12
    everyone = metrics_client.get("/api/v1/metrics/organisations", headers=sensitive_leader(token)).get_json()
    assert [row["code"] for row in everyone] == ["GMP", "MPS", "WMP"]


def test_grading_counts_only_what_clearance_allows(history, metrics_client, token):
    def cells(headers):
        body = metrics_client.get("/api/v1/metrics/grading", headers=headers).get_json()
        return {f"{c['source_evaluation']}{c['intelligence_assessment']}": c for c in body["cells"]}

    official = cells(official_leader(token))
    assert official["2B"]["judged"] == 0 and official["3C"]["judged"] == 1 and official["3C"]["false"] == 1
    assert sum(cell["judged"] for cell in official.values()) == 1
    sensitive = cells(sensitive_leader(token))
    assert sensitive["2B"]["judged"] == 3 and sensitive["3C"]["judged"] == 1


def test_the_dashboard_shows_only_what_clearance_allows(history, metrics_client, token):
    assert sign_in(metrics_client, raw(official_leader(token))).status_code == 303
    response = metrics_client.get("/dashboard")
    assert response.status_code == 200
    page = html.unescape(response.get_data(as_text=True))
    assert history["e"]["reference"] in page and OFFICIAL_TITLE in page
    for name in ("a", "b", "c"):
        assert history[name]["reference"] not in page
    assert SENSITIVE_TITLE not in page
    assert card(page, "packages") == "1" and card(page, "arrests") == "7" and card(page, "return-rate") == "100%"
    assert "Counting only packages marked OFFICIAL, as your clearance allows." in page
    compliance = re.search(r'id="compliance-title".*?</svg>', page, re.S)[0]
    assert re.findall(r'class="chart__strong" x="8"[^>]*>([A-Z-]+)<', compliance) == ["GMP"]
    assert "0 of 1 judged confirmed" in page and "2 of 3 judged" not in page

    other = metrics_client.application.test_client()
    assert sign_in(other, raw(sensitive_leader(token))).status_code == 303
    page = html.unescape(other.get("/dashboard").get_data(as_text=True))
    assert card(page, "packages") == "3" and card(page, "arrests") == "12"
    assert "Counting packages marked OFFICIAL or OFFICIAL-SENSITIVE, as your clearance allows." in page


def test_split_figures_rebuild_to_the_live_ones(history, metrics_app, app, outcomes_app):
    live = snapshot(metrics_app)
    assert {key[3] for key in live["facts"]} == {"OFFICIAL", "OFFICIAL-SENSITIVE"}
    session = metrics_app.extensions["database"].session()
    rebuilding.rebuild(session, log_fetcher(app, outcomes_app))
    session.close()
    assert snapshot(metrics_app) == live


def test_facts_recomputed_from_state_equal_the_live_ones(history, metrics_app):
    live = snapshot(metrics_app)
    session = metrics_app.extensions["database"].session()
    assert facts_from_state(session) == 6  # the returns of A, B, C and E
    session.commit()
    session.close()
    assert snapshot(metrics_app) == live


def test_the_migration_splits_existing_figures_by_classification(history, metrics_app):
    """Down to the unsplit schema (figures summed over markings), then up again: the same facts."""
    from sqlalchemy import text

    live = snapshot(metrics_app)
    with scenario.migrated_down_to(metrics_app, "0001") as engine, engine.connect() as connection:
        columns = connection.execute(text("SELECT * FROM facts LIMIT 1")).keys()
        assert "classification" not in columns
    assert snapshot(metrics_app) == live


def test_a_package_read_is_one_query_and_its_audit_entry(history, metrics_app, metrics_client, token):
    """A package's metrics come from its row (its own figures kept there) and its returns, read
    together: one SELECT, whatever the number of recipients, and the read's audit entry; on
    PostgreSQL, both in one statement (a data-modifying WITH). Each commits on its own: no
    transaction is open after it (no BEGIN, no COMMIT to wait on)."""
    from sqlalchemy import event

    statements: list[tuple[str, bool]] = []

    def keep(conn, _cursor, statement, *_args):
        statements.append((statement.split()[0].upper(), left_open(conn.connection.dbapi_connection)))

    database = metrics_app.extensions["database"]
    engines = (database.engine, database.autocommit_engine)
    for engine in engines:
        event.listen(engine, "after_cursor_execute", keep)
    try:
        response = metrics_client.get(f"/api/v1/metrics/packages/{history['a']['id']}", headers=sensitive_leader(token))
    finally:
        for engine in engines:
            event.remove(engine, "after_cursor_execute", keep)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["reach"]["recipients"] > 1
    on_postgres = metrics_app.extensions["settings"].on_postgres
    assert statements == ([("WITH", False)] if on_postgres else [("SELECT", False), ("INSERT", False)]), statements
    entries = audit_rows(metrics_app, target_id=history["a"]["id"])
    assert [(e.actor, e.method, e.path, e.status_code, e.outcome, e.detail) for e in entries] == [
        ("leader@nclcc", "GET", f"/api/v1/metrics/packages/{history['a']['id']}", 200, "allowed", None)
    ]


def test_a_package_read_refused_before_or_by_its_statement_has_one_entry_the_refusal(
    history, metrics_app, metrics_client, token
):
    """An unknown package (404) and a caller who is not leadership (403, before any read): one
    entry each, the refusal; the read's statement writes none of its own."""
    unknown = "00000000-0000-4000-8000-000000000000"
    assert metrics_client.get(f"/api/v1/metrics/packages/{unknown}", headers=sensitive_leader(token)).status_code == 404
    recipient = token("GMP", "recipient", clearance="OFFICIAL-SENSITIVE")
    assert metrics_client.get(f"/api/v1/metrics/packages/{history['a']['id']}", headers=recipient).status_code == 403
    assert [(e.status_code, e.outcome) for e in audit_rows(metrics_app, target_id=unknown)] == [(404, "refused")]
    assert [(e.actor, e.status_code, e.outcome) for e in audit_rows(metrics_app, target_id=history["a"]["id"])] == [
        ("recipient@gmp", 403, "refused")
    ]


def test_a_head_request_for_a_package_writes_no_entry_as_before(history, metrics_app, metrics_client, token):
    """The log leaves out HEAD requests: the read's statement writes no entry for one either."""
    response = metrics_client.head(f"/api/v1/metrics/packages/{history['a']['id']}", headers=sensitive_leader(token))
    assert response.status_code == 200
    assert audit_rows(metrics_app, target_id=history["a"]["id"]) == []


def test_a_package_read_that_fails_after_its_statement_is_audited_as_it_was_answered(
    history, metrics_app, metrics_client, token, monkeypatch
):
    """The read's statement writes its entry foreseeing a 200; an answer that turns out
    otherwise (here a 500 from the figures' arithmetic) corrects it: one entry, the true one."""
    from services.metrics import figures

    def broken(*_args, **_kwargs):
        raise ZeroDivisionError("a figure divided by nothing")

    monkeypatch.setattr(figures, "package_metrics", broken)
    response = metrics_client.get(f"/api/v1/metrics/packages/{history['a']['id']}", headers=sensitive_leader(token))
    assert response.status_code == 500
    entries = audit_rows(metrics_app, target_id=history["a"]["id"])
    assert [(e.status_code, e.outcome) for e in entries] == [(500, "error")]


def left_open(dbapi_connection) -> bool:
    """Whether the database connection is inside a transaction (psycopg's status, or SQLite's)."""
    info = getattr(dbapi_connection, "info", None)
    if info is not None and hasattr(info, "transaction_status"):
        return info.transaction_status.name != "IDLE"
    return dbapi_connection.in_transaction

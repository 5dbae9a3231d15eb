"""Who may open the drill-down pages and the dashboard's CSV, and what hostile input gets:
anonymous -> sign-in, a recipient -> refused (the dashboard is for leadership), a leader below a
package's marking -> 404 as the API answers, and not counted on the organisation page; bad ids
and filter values -> a clear 4xx naming what is wrong, never a 500. Every read and refusal is
audited."""

from __future__ import annotations

import re

import pytest

from tests.metrics import scenario
from tests.metrics.test_dashboard import card, raw, sign_in, text
from tests.metrics.test_dashboard_security import audit_rows


@pytest.fixture
def mixed(snapshot_world):
    return snapshot_world(scenario.mixed_history)


def pages(mixed) -> list[str]:
    return [
        f"/dashboard/packages/{mixed['a']['id']}",
        "/dashboard/organisations/GMP",
        "/dashboard/export.csv?from=2026-01",
    ]


def test_anonymous_readers_are_sent_to_sign_in(mixed, metrics_client, token):
    for path in pages(mixed):
        response = metrics_client.get(path)
        assert response.status_code == 303 and response.headers["Location"].endswith("/dashboard/sign-in"), path
        # A bearer token is no way in: the dashboard reads only its own session.
        response = metrics_client.get(path, headers=token("NCLCC", "leader"))
        assert response.status_code == 303, path


def test_a_recipient_is_refused(mixed, metrics_app, metrics_client, token):
    assert sign_in(metrics_client, raw(token("GMP", "recipient", sub="analyst@gmp"))).status_code == 403
    for path in pages(mixed):
        assert metrics_client.get(path).status_code == 303, path  # no session was made
    refused = [r for r in audit_rows(metrics_app) if r.path.startswith(("/dashboard/packages", "/dashboard/org"))]
    assert refused and all(r.outcome == "refused" for r in refused)


def test_a_leader_below_the_marking_gets_404_and_no_count(mixed, metrics_app, metrics_client, token):
    assert (
        sign_in(metrics_client, raw(token("NCLCC", "leader", clearance="OFFICIAL", sub="deputy@nclcc"))).status_code
        == 303
    )
    response = metrics_client.get(f"/dashboard/packages/{mixed['a']['id']}")
    assert response.status_code == 404
    page = text(response)
    assert mixed["a"]["reference"] not in page and "There are no figures for a package with this id" in page
    # The API answers the same.
    api = metrics_client.get(
        f"/api/v1/metrics/packages/{mixed['a']['id']}", headers=token("NCLCC", "leader", clearance="OFFICIAL")
    )
    assert api.status_code == 404
    # The OFFICIAL package opens.
    assert metrics_client.get(f"/dashboard/packages/{mixed['e']['id']}").status_code == 200
    # GMP's page counts only E (7 arrests), as the API does for this clearance; A and B are not listed.
    gmp = text(metrics_client.get("/dashboard/organisations/GMP"))
    official = metrics_client.get(
        "/api/v1/metrics/organisations/GMP", headers=token("NCLCC", "leader", clearance="OFFICIAL")
    ).get_json()
    assert official["packages_received"] == 1 and card(gmp, "received") == "1"
    assert re.search(r'id="result-arrests"><th scope="row">Arrests</th><td[^>]*>7</td>', gmp)
    for name in ("a", "b", "c"):
        assert mixed[name]["reference"] not in gmp
    assert scenario.OFFICIAL_TITLE in gmp
    # Nor in its CSV.
    exported = metrics_client.get("/dashboard/export.csv?organisation=GMP").get_data(as_text=True)
    assert mixed["e"]["reference"] in exported and mixed["a"]["reference"] not in exported
    rows = audit_rows(metrics_app)
    refusal = next(r for r in rows if r.path == f"/dashboard/packages/{mixed['a']['id']}")
    assert (refusal.status_code, refusal.actor, refusal.target_type) == (404, "deputy@nclcc", "package")
    assert refusal.detail == "refused: clearance OFFICIAL below OFFICIAL-SENSITIVE"


def test_page_reads_and_the_csv_are_audited(mixed, metrics_app, metrics_client, token):
    assert sign_in(metrics_client, raw(token("NCLCC", "leader", sub="chief@nclcc"))).status_code == 303
    for path in pages(mixed):
        assert metrics_client.get(path).status_code == 200, path
    rows = {r.path.split("?")[0]: r for r in audit_rows(metrics_app)}
    package = rows[f"/dashboard/packages/{mixed['a']['id']}"]
    assert (package.actor, package.target_type, package.target_id, package.outcome) == (
        "chief@nclcc", "package", mixed["a"]["id"], "allowed",
    )  # fmt: skip
    assert (rows["/dashboard/organisations/GMP"].target_type, rows["/dashboard/organisations/GMP"].target_id) == (
        "organisation",
        "GMP",
    )
    assert rows["/dashboard/export.csv"].target_type == "export"


@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        ("/dashboard/packages/not-a-uuid", 404, "is not a package id"),
        ("/dashboard/packages/" + "9" * 300, 404, "is not a package id"),
        ("/dashboard/packages/%3Cscript%3Ealert(1)%3C%2Fscript%3E", 404, "is not a package id"),
        ("/dashboard/packages/00000000-0000-0000-0000-000000000000", 404, "There are no figures"),
        ("/dashboard/organisations/NOPE", 404, "There is no organisation “NOPE”"),
        ("/dashboard/organisations/%3Cb%3Ex%3C%2Fb%3E", 404, "There is no organisation"),
        ("/dashboard/organisations/" + "A" * 200, 404, "There is no organisation"),
        ("/dashboard/organisations/GMP?from=2026-13", 422, "“From” must be a month"),
        ("/dashboard/organisations/GMP?threat_area=burglary", 422, "There is no such threat area."),
        ("/dashboard?organisation=%27%3B--", 422, "There is no such organisation in the directory."),
        ("/dashboard?organisation=NOPE", 422, "There is no such organisation in the directory."),
        ("/dashboard/export.csv?from=2026-13", 422, "from: Use YYYY-MM"),
        ("/dashboard/export.csv?threat_area=burglary", 422, "threat_area:"),
        ("/dashboard/export.csv?organisation=" + "X" * 40, 422, "organisation:"),
        ("/dashboard/export.csv?from=2026-05&to=2026-01", 422, "from: Must not be after 'to'."),
        ("/dashboard/export.csv?sort=password", 422, "sort:"),
        ("/dashboard/export.csv?nonsense=1", 422, "nonsense:"),
    ],
)
def test_hostile_input_gets_a_clear_4xx(mixed, metrics_client, token, path, status, words):
    assert sign_in(metrics_client, raw(token("NCLCC", "leader"))).status_code == 303
    response = metrics_client.get(path)
    assert response.status_code == status, (path, response.status_code)
    body = text(response)
    assert words in body, body[-2000:]
    escaped = response.get_data(as_text=True)  # what was asked for is shown, escaped
    assert "<script>" not in escaped and "<b>x</b>" not in escaped


def test_the_package_page_names_a_bad_filter_and_keeps_it_out_of_its_links(mixed, metrics_client, token):
    assert sign_in(metrics_client, raw(token("NCLCC", "leader"))).status_code == 303
    response = metrics_client.get(f"/dashboard/packages/{mixed['a']['id']}?from=nope&threat_area=firearms")
    assert response.status_code == 422
    page = text(response)
    assert "“From” must be a month" in page
    back = re.search(r'href="([^"]+)" id="back"', page)[1]
    assert "nope" not in back and "threat_area=firearms" in back

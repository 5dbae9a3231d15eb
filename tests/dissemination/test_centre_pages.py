"""The centre's pages: the packages it issued and, for one, who has it, what each passed on
(the onward chain) and each return's status; centre roles only, within clearance, audited."""

from __future__ import annotations

from tests.dissemination.helpers import issue_package
from tests.dissemination.page_helpers import audit_rows, location, raw, sign_in, text
from tests.onward.chain import start


def test_the_centre_follows_a_package_along_its_chain(
    app, client, token, outcomes_app, outcomes_client, pump_events, run_jobs
):
    world = start(client, token, app, outcomes_app, outcomes_client, pump_events, run_jobs)
    package, ids = world["package"], world["ids"]
    signed_in = sign_in(client, raw(token()))  # an issuer of the centre
    assert signed_in.status_code == 303 and location(signed_in) == "/packages"  # the centre starts here

    listed = text(client.get("/packages"))
    assert f'href="/packages/{package["id"]}"' in listed and package["reference"] in listed

    response = client.get(f"/packages/{package['id']}")
    assert response.status_code == 200
    page = text(response)
    assert page.count('class="app-marking"') == 2 and package["classification"] in page
    # Every dissemination has its row, addressed as the centre's chase e-mails link to it.
    for org in ("ROCU-NW", "MPS", "GMP"):
        assert f'id="return-{ids[org]}"' in page
    rocu, gmp = page.index(f'id="return-{ids["ROCU-NW"]}"'), page.index(f'id="return-{ids["GMP"]}"')
    assert rocu < gmp  # what ROCU-NW passed on comes under it
    gmp_row = page[gmp : page.index("</tr>", gmp)]
    assert (
        "Greater Manchester Police" in gmp_row
        and "Passed on by North West Regional Organised Crime Unit (TITAN)" in gmp_row
    )
    assert "app-chain-depth-1" in gmp_row and ">None<" in gmp_row  # no return from GMP yet
    rocu_row = page[rocu : page.index("</tr>", rocu)]
    assert ">Interim<" in rocu_row  # ROCU-NW's return passing it on
    # Names, never the intelligence's summary on this page.
    assert package["summary"] not in page
    reads = [r for r in audit_rows(app) if r.action == "GET /packages/<uuid:package_id>"]
    assert reads and reads[-1].outcome == "allowed"


def test_only_the_centre_sees_its_pages(app, client, token, outcomes_app, outcomes_client, pump_events, run_jobs):
    package = issue_package(client, token(), recipients=["GMP"])
    sign_in(client, raw(token("GMP", "recipient")))
    assert client.get("/packages").status_code == 404
    assert client.get(f"/packages/{package['id']}").status_code == 404
    refused = [r for r in audit_rows(app) if r.action == "GET /packages/<uuid:package_id>"]
    assert refused and refused[-1].outcome == "refused"


def test_a_package_above_the_centre_users_clearance_is_not_found(app, token):
    client = app.test_client()
    package = issue_package(client, token(), recipients=["GMP"], classification="OFFICIAL-SENSITIVE")
    sign_in(client, raw(token(clearance="OFFICIAL")))
    assert package["reference"] not in text(client.get("/packages"))
    assert client.get(f"/packages/{package['id']}").status_code == 404

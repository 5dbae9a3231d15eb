"""The authorisation matrix: every endpoint of the three services' APIs, asked by every kind of
caller, with the answer each must get, on PostgreSQL and Redis in CI (and on the embedded
defaults locally). Every refusal must be in the audit log and must change nothing.

The callers (columns of each row, in this order):

  anon          no token
  issuer        NCLCC issuer, OFFICIAL-SENSITIVE
  admin         NCLCC admin, OFFICIAL-SENSITIVE
  leader        NCLCC leader, OFFICIAL-SENSITIVE
  centre_low    NCLCC issuer+admin+leader cleared only to OFFICIAL
  own           GMP recipient (the resources belong to GMP), OFFICIAL-SENSITIVE
  own_low       GMP recipient cleared only to OFFICIAL
  other         WMP recipient (received nothing), OFFICIAL-SENSITIVE
  own_claims    GMP recipient whose token also claims issuer, admin and leader
  other_claims  WMP token claiming only issuer, admin and leader (no role counts)

The world each row meets: GMP has a webhook; package P (OFFICIAL-SENSITIVE) issued to GMP and MPS, with GMP's
dissemination and expected return; draft D (OFFICIAL); MPS has filed an interim return; the
metrics service has every event. Endpoints that change state are asked by each allowed caller
in a fresh world, after every refused caller has been turned away in the same world.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
from sqlalchemy import func, select

from tests.dissemination.helpers import create_package, issue_package, package_body
from tests.outcomes.helpers import outcome_body

CALLERS = {
    "anon": None,
    "issuer": ("NCLCC", "issuer", "OFFICIAL-SENSITIVE"),
    "admin": ("NCLCC", "admin", "OFFICIAL-SENSITIVE"),
    "leader": ("NCLCC", "leader", "OFFICIAL-SENSITIVE"),
    "centre_low": ("NCLCC", "issuer,admin,leader", "OFFICIAL"),
    "own": ("GMP", "recipient", "OFFICIAL-SENSITIVE"),
    "own_low": ("GMP", "recipient", "OFFICIAL"),
    "other": ("WMP", "recipient", "OFFICIAL-SENSITIVE"),
    "own_claims": ("GMP", "recipient,issuer,admin,leader", "OFFICIAL-SENSITIVE"),
    "other_claims": ("WMP", "issuer,admin,leader", "OFFICIAL-SENSITIVE"),
}


@dataclass
class Row:
    service: str
    method: str
    path: str
    statuses: dict[str, int]
    body: object = None

    @property
    def writes(self) -> bool:
        return self.method != "GET"

    @property
    def id(self) -> str:
        return f"{self.service} {self.method} {self.path}"


def row(service: str, method: str, path: str, table: str, body=None) -> Row:
    codes = [int(code) for code in table.split()]
    assert len(codes) == len(CALLERS), path
    return Row(service, method, path, dict(zip(CALLERS, codes, strict=True)), body)


#               anon iss adm lead low own olow oth ocl xcl
ADMIN_ONLY = "  401 403 200 403 200 403 403 403 403 403"
ANY_TOKEN = "   401 200 200 200 200 200 200 200 200 200"
GMP_OS_READ = " 401 200 200 200 404 200 404 404 200 404"
LEADERS = "     401 403 200 200 200 403 403 403 403 403"
# /metrics answers Prometheus's scrape token only (tests/test_monitoring.py): no person's token opens it.
SCRAPE_TOKEN_ONLY = "401 401 401 401 401 401 401 401 401 401"

ROWS = [
    # -- dissemination ------------------------------------------------------------------------
    row("dissemination", "GET", "/api/v1/audit", ADMIN_ONLY),
    row("dissemination", "GET", "/metrics", SCRAPE_TOKEN_ONLY),
    row("dissemination", "GET", "/api/v1/disseminations/{dissemination}", GMP_OS_READ),
    row(
        "dissemination",
        "POST",
        "/api/v1/disseminations/{dissemination}/acknowledge",
        "401 403 403 403 403 200 404 404 200 403",
    ),
    row("dissemination", "GET", "/api/v1/inbox", ANY_TOKEN),
    row("dissemination", "GET", "/api/v1/organisations", ANY_TOKEN),
    row(
        "dissemination",
        "POST",
        "/api/v1/organisations",
        ADMIN_ONLY.replace("200", "201"),
        body={
            "code": "TESTORG",
            "name": "Test Organisation",
            "kind": "territorial_force",
            "email": "duty@test.invalid",
        },
    ),
    row("dissemination", "GET", "/api/v1/organisations/GMP", ANY_TOKEN),
    row("dissemination", "PATCH", "/api/v1/organisations/GMP", ADMIN_ONLY, body={"region": "North West"}),
    row("dissemination", "POST", "/api/v1/organisations/GMP/webhook-secret", ADMIN_ONLY.replace("200", "201")),
    row("dissemination", "GET", "/api/v1/outbox", ADMIN_ONLY),
    row("dissemination", "POST", "/api/v1/outbox/{dissemination_delivery}/redeliver", ADMIN_ONLY),
    row("dissemination", "GET", "/api/v1/packages", ANY_TOKEN),
    row(
        "dissemination",
        "POST",
        "/api/v1/packages",
        "401 201 403 403 201 403 403 403 403 403",
        body=package_body(classification="OFFICIAL", recipients=["GMP"]),
    ),
    row("dissemination", "GET", "/api/v1/packages/{package}", GMP_OS_READ),
    row(
        "dissemination",
        "PATCH",
        "/api/v1/packages/{draft}",
        "401 200 403 403 200 403 403 403 403 403",
        body={"title": "Retitled draft"},
    ),
    row("dissemination", "GET", "/api/v1/packages/{package}/disseminations", "401 200 200 200 404 403 403 403 403 403"),
    # Where the package went, passed on included: the centre's business, as its disseminations are.
    row("dissemination", "GET", "/api/v1/packages/{package}/chain", "401 200 200 200 404 403 403 403 403 403"),
    row("dissemination", "POST", "/api/v1/packages/{draft}/issue", "401 200 403 403 200 403 403 403 403 403"),
    row(
        "dissemination",
        "POST",
        "/api/v1/packages/{package}/withdraw",
        "401 200 403 403 404 403 403 403 403 403",
        body={"reason": "Superseded by a newer package."},
    ),
    # -- outcomes -----------------------------------------------------------------------------
    row("outcomes", "GET", "/api/v1/audit", ADMIN_ONLY),
    row("outcomes", "GET", "/metrics", SCRAPE_TOKEN_ONLY),
    row("outcomes", "GET", "/api/v1/chase-policy", "401 200 200 403 200 403 403 403 403 403"),
    row("outcomes", "PUT", "/api/v1/chase-policy", ADMIN_ONLY, body="{chase_policy}"),
    row("outcomes", "GET", "/api/v1/outbox", ADMIN_ONLY),
    row("outcomes", "POST", "/api/v1/outbox/{outcomes_delivery}/redeliver", ADMIN_ONLY),
    row("outcomes", "GET", "/api/v1/returns", ANY_TOKEN),
    row("outcomes", "GET", "/api/v1/returns/{return}", GMP_OS_READ),
    row("outcomes", "GET", "/api/v1/returns/{return}/chases", GMP_OS_READ),
    row(
        "outcomes",
        "POST",
        "/api/v1/returns/{return}/extend",
        "401 200 403 403 404 403 403 403 403 403",
        body={"working_days": 5, "reason": "Operation still running."},
    ),
    row("outcomes", "GET", "/api/v1/returns/{return}/outcomes", GMP_OS_READ),
    row(
        "outcomes",
        "POST",
        "/api/v1/returns/{return}/outcomes",
        "401 403 403 403 403 201 404 404 201 403",
        body=outcome_body(),
    ),
    # -- metrics ------------------------------------------------------------------------------
    row("metrics", "GET", "/api/v1/audit", ADMIN_ONLY),
    row("metrics", "GET", "/metrics", SCRAPE_TOKEN_ONLY),
    row("metrics", "GET", "/api/v1/metrics/evidence-pack", LEADERS),
    row("metrics", "GET", "/api/v1/metrics/evidence-pack?format=pdf", LEADERS),
    row("metrics", "GET", "/api/v1/metrics/export.csv", LEADERS),
    row("metrics", "GET", "/api/v1/metrics/grading", LEADERS),
    row("metrics", "GET", "/api/v1/metrics/organisations", LEADERS),
    row("metrics", "GET", "/api/v1/metrics/organisations/GMP", "401 403 200 200 200 200 200 403 200 403"),
    row("metrics", "GET", "/api/v1/metrics/packages", LEADERS),
    row("metrics", "GET", "/api/v1/metrics/packages/{package}", "401 403 200 200 404 403 403 403 403 403"),
    row("metrics", "GET", "/api/v1/metrics/summary", "401 403 200 200 200 200 200 200 200 403"),
    row("metrics", "GET", "/api/v1/outbox", ADMIN_ONLY),
    # The metrics service emits no events, so an admin's redelivery finds nothing.
    row("metrics", "POST", "/api/v1/outbox/999999/redeliver", ADMIN_ONLY.replace("200", "404")),
]

# Routes outside the bearer-token API, and how each is guarded instead. /metrics is not in the
# OpenAPI document either (it is Prometheus's, not the API's: `make fuzz` does not reach it), but
# it is in the matrix above: every person's token is refused, only the scrape token opens it.
NOT_IN_THE_MATRIX = {
    "/docs": "the API's documentation, public",
    "/docs/assets/<path:filename>": "Swagger UI's files, public",
    "/openapi.json": "the API's description, public",
    "/healthz": "liveness, public, says nothing",
    "/readyz": "readiness, public, names each check and whether it holds; no host, no secret",
    "/internal/events": "between services: HMAC-signed with EVENT_SECRET (tests/dissemination/test_events.py)",
    "/internal/events/log": "between services: HMAC-signed with EVENT_SECRET (tests/metrics/test_rebuild.py)",
    "/internal/events/batch": "between services: HMAC-signed with EVENT_SECRET (tests/dissemination/test_events.py)",
    "/form/<token>": "the recipients' form: the signed link is the credential (tests/outcomes/test_form.py)",
    "/form/<token>/change": "the recipients' form: link, CSRF token, signed answers (tests/outcomes/test_form.py)",
    "/form/<token>/send": "the recipients' form: link, CSRF token, signed answers (tests/outcomes/test_form.py)",
    "/form/<token>/done": "the recipients' form (tests/outcomes/test_form.py)",
    "/form-assets/<path:filename>": "the form's stylesheet and script, public",
    "/dashboard": "leadership dashboard: signed-in session (tests/metrics/test_dashboard.py)",
    "/dashboard/sign-in": "leadership dashboard sign-in (tests/metrics/test_dashboard.py)",
    "/dashboard/sign-out": "leadership dashboard sign-out (tests/metrics/test_dashboard.py)",
    "/dashboard/static/<path:filename>": "the dashboard's stylesheet, public",
    "/dashboard/packages/<path:package_id>": "a package's page: signed-in leader, cleared for its marking "
    "(tests/metrics/test_drilldown_security.py)",
    "/dashboard/organisations/<path:code>": "an organisation's page: signed-in leader, counting what the clearance "
    "allows (tests/metrics/test_drilldown_security.py)",
    "/dashboard/export.csv": "the dashboard's CSV button: signed-in leader, clearance as the API's export "
    "(tests/metrics/test_drilldown_security.py)",
    "/dashboard/evidence-pack": "leadership dashboard: signed-in session (tests/metrics/test_evidence_pack.py)",
    "/dashboard/evidence-pack.pdf": "leadership dashboard: signed-in session (tests/metrics/test_evidence_pack.py)",
    "/dashboard/sign-in/oidc": "leadership dashboard sign-in (tests/security/test_oidc_sign_in.py)",
    "/dashboard/sign-in/callback": "leadership dashboard sign-in (tests/security/test_oidc_sign_in.py)",
    # The recipients' pages authenticate by session, not bearer token: their own matrix below
    # (PAGE_ROWS), their sign-in in tests/dissemination/test_pages.py and test_oidc_sign_in.py.
    "/sign-in": "recipients' pages sign-in (tests/dissemination/test_pages.py)",
    "/sign-in/oidc": "recipients' pages sign-in (tests/security/test_oidc_sign_in.py)",
    "/sign-in/callback": "recipients' pages sign-in (tests/security/test_oidc_sign_in.py)",
    "/sign-out": "recipients' pages sign-out (tests/dissemination/test_pages.py)",
    "/inbox": "recipients' pages: PAGE_ROWS",
    "/disseminations/<uuid:dissemination_id>": "recipients' pages: PAGE_ROWS",
    "/disseminations/<uuid:dissemination_id>/acknowledge": "recipients' pages: PAGE_ROWS",
    "/disseminations/<uuid:dissemination_id>/return": "recipients' pages: PAGE_ROWS",
    "/packages": "the centre's pages: PAGE_ROWS",
    "/packages/<uuid:package_id>": "the centre's pages: PAGE_ROWS",
    "/pages-assets/govuk/<path:filename>": "GOV.UK Frontend's stylesheet, public",
    "/pages-assets/pages/<path:filename>": "the recipients' pages' stylesheet, public",
    "/form-assets/govuk/<path:filename>": "GOV.UK Frontend's stylesheet, public",
}


@dataclass
class World:
    ids: dict[str, str] = field(default_factory=dict)


class Harness:
    """The three services on empty tables, and a way to build the world again."""

    def __init__(self, app, outcomes_app, metrics_app, token, pump_events, redis_conn):
        self.apps = {"dissemination": app, "outcomes": outcomes_app, "metrics": metrics_app}
        self.clients = {name: application.test_client() for name, application in self.apps.items()}
        self.token = token
        self.pump_events = pump_events
        self.redis_conn = redis_conn
        self.sent_events: set = set()

    def headers(self, caller: str) -> dict[str, str]:
        spec = CALLERS[caller]
        if spec is None:
            return {}
        org, roles, clearance = spec
        return self.token(org, roles, clearance=clearance, sub=f"{caller}@{org.lower()}")

    def fresh(self) -> World:
        from services.dissemination.directory import seed_directory
        from tests.conftest import _empty_tables

        for application in self.apps.values():
            _empty_tables(application.extensions["database"], application.extensions["service"])
        self.redis_conn.flushdb()
        with self.apps["dissemination"].app_context():
            from shared.db import get_session

            seed_directory(get_session(), self.apps["dissemination"].extensions["settings"])
        return self.build()

    def build(self) -> World:
        client, outcomes = self.clients["dissemination"], self.clients["outcomes"]
        centre = self.token()
        webhook = client.patch(
            "/api/v1/organisations/GMP",
            json={"webhook_url": "https://hooks.gmp.example/nclcc"},
            headers=self.token("NCLCC", "admin"),
        )
        assert webhook.status_code == 200, webhook.get_json()
        package = issue_package(client, centre, recipients=["GMP", "MPS"], classification="OFFICIAL-SENSITIVE")
        draft = create_package(client, centre, classification="OFFICIAL", recipients=["GMP"])
        rows = client.get(f"/api/v1/packages/{package['id']}/disseminations", headers=centre).get_json()
        disseminations = {r["organisation"]: r["id"] for r in rows}
        self.pump_events()
        filed = outcomes.post(
            f"/api/v1/returns/{disseminations['MPS']}/outcomes",
            json=outcome_body(),
            headers=self.token("MPS", "recipient"),
        )
        assert filed.status_code == 201, filed.get_json()
        policy = outcomes.get("/api/v1/chase-policy", headers=self.token("NCLCC", "admin")).get_json()
        self.pump_events(source=self.apps["dissemination"], target=self.apps["metrics"])
        self.pump_events(source=self.apps["outcomes"], target=self.apps["metrics"])
        world = World(
            {
                "package": package["id"],
                "draft": draft["id"],
                "dissemination": disseminations["GMP"],
                "return": disseminations["GMP"],
                "dissemination_delivery": str(self.first_delivery("dissemination")),
                "outcomes_delivery": str(self.first_delivery("outcomes")),
            }
        )
        world.ids["chase_policy"] = {"steps": policy["steps"]}
        return world

    def first_delivery(self, service: str) -> int:
        application = self.apps[service]
        models = application.extensions["service"].models
        session = application.extensions["database"].session()
        try:
            delivery_id = session.scalar(select(func.min(models.OutboxDelivery.id)))
        finally:
            session.close()
        assert delivery_id is not None, f"{service} has no outbox delivery to redeliver"
        return delivery_id

    def count(self, service: str, model_name: str) -> int:
        application = self.apps[service]
        model = getattr(application.extensions["service"].models, model_name)
        session = application.extensions["database"].session()
        try:
            return session.scalar(select(func.count()).select_from(model))
        finally:
            session.close()

    def last_audit(self, service: str):
        application = self.apps[service]
        model = application.extensions["service"].models.AuditEntry
        session = application.extensions["database"].session()
        try:
            return session.scalars(select(model).order_by(model.id.desc()).limit(1)).first()
        finally:
            session.close()

    def ask(self, row: Row, caller: str, world: World):
        path = row.path.format(**world.ids) if "{" in row.path else row.path
        body = world.ids["chase_policy"] if row.body == "{chase_policy}" else row.body
        kwargs = {"headers": self.headers(caller)}
        if body is not None:
            kwargs["data"] = json.dumps(body)
            kwargs["content_type"] = "application/json"
        return self.clients[row.service].open(path, method=row.method, **kwargs)


@pytest.fixture
def harness(app, outcomes_app, metrics_app, token, pump_events, redis_conn):
    return Harness(app, outcomes_app, metrics_app, token, pump_events, redis_conn)


def check_refusal(harness: Harness, row: Row, caller: str, response) -> None:
    entry = harness.last_audit(row.service)
    assert entry is not None and entry.status_code == response.status_code, f"{caller}: refusal not audited"
    assert entry.outcome == "refused" and entry.method == row.method
    spec = CALLERS[caller]
    assert entry.actor == (None if spec is None else f"{caller}@{spec[0].lower()}")


@pytest.mark.parametrize("matrix_row", ROWS, ids=lambda r: r.id)
def test_authorisation_matrix(harness, matrix_row):
    row = matrix_row
    world = harness.build()
    refused = [c for c, status in row.statuses.items() if status in (401, 403, 404)]
    allowed = [c for c in CALLERS if c not in refused]
    events_before = {name: harness.count(name, "OutboxEvent") for name in harness.apps}
    for caller in refused:
        response = harness.ask(row, caller, world)
        assert response.status_code == row.statuses[caller], (caller, response.get_json(silent=True))
        body = response.get_json(silent=True) or {}
        assert body.get("code") == response.status_code and body.get("message"), "the one error shape"
        check_refusal(harness, row, caller, response)
    assert {name: harness.count(name, "OutboxEvent") for name in harness.apps} == events_before, (
        "a refused request changed something"
    )
    for index, caller in enumerate(allowed):
        if row.writes and index:
            world = harness.fresh()
        response = harness.ask(row, caller, world)
        assert response.status_code == row.statuses[caller], (caller, response.get_json(silent=True))


def test_every_api_route_has_its_row(app, outcomes_app, metrics_app):
    """A new endpoint cannot ship without a row in the matrix (or a reason it is not in it)."""
    import re

    covered = {(r.service, r.method, re.sub(r"\{[a-z_]+\}|GMP|999999", "*", r.path)) for r in ROWS}
    missing = []
    for name, application in (("dissemination", app), ("outcomes", outcomes_app), ("metrics", metrics_app)):
        for rule in application.url_map.iter_rules():
            if rule.rule in NOT_IN_THE_MATRIX:
                continue
            path = re.sub(r"<[^>]+>", "*", rule.rule)
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                if (name, method, path) not in covered:
                    missing.append(f"{name} {method} {rule.rule}")
    assert missing == []


# -- the recipients' pages -------------------------------------------------------------------------
# Each caller signs in to the pages with its token (the development sign-in) and then asks with
# the session. "in": sent to sign in (no session: the token has neither a recipient role nor a
# centre role, or none was given); "form": sent on to the outcomes form; "ack": acknowledged,
# back to the package page. The centre's staff read every package page, but file and
# acknowledge nothing for a recipient.
#                anon iss adm lead low  own  olow oth  ocl  xcl
PAGE_ROWS = [
    ("GET", "/inbox", "in 200 200 200 200 200 200 200 200 in"),
    ("GET", "/disseminations/{dissemination}", "in 200 200 200 404 200 404 404 200 in"),
    ("GET", "/disseminations/{dissemination}/return", "in 403 403 403 404 form 404 404 form in"),
    ("POST", "/disseminations/{dissemination}/acknowledge", "in 403 403 403 404 ack 404 404 ack in"),
    # The centre's pages: its staff only, within clearance.
    ("GET", "/packages", "in 200 200 200 200 404 404 404 404 in"),
    ("GET", "/packages/{package}", "in 200 200 200 404 404 404 404 404 in"),
]


def page_session(harness: Harness, caller: str):
    """A browser signed in to the recipients' pages as ``caller`` (if its token may sign in)."""
    import re

    browser = harness.apps["dissemination"].test_client()
    if CALLERS[caller] is not None:
        page = browser.get("/sign-in").get_data(as_text=True)
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)[1]
        token = harness.headers(caller)["Authorization"].removeprefix("Bearer ")
        browser.post("/sign-in", data={"csrf_token": csrf, "token": token})
    return browser


def page_answer(response) -> str:
    if response.status_code != 303:
        return str(response.status_code)
    where = response.headers["Location"]
    if where.startswith("/sign-in"):
        return "in"
    if "/form/" in where:
        return "form"
    return "ack" if where.endswith("?acknowledged=1") else where


@pytest.mark.parametrize(("method", "path", "table"), PAGE_ROWS, ids=[f"{m} {p}" for m, p, _ in PAGE_ROWS])
def test_recipient_pages_matrix(harness, method, path, table):
    import re

    world = harness.build()
    expected = dict(zip(CALLERS, table.split(), strict=True))
    url = path.format(**world.ids)
    order = sorted(CALLERS, key=lambda caller: expected[caller] in ("200", "form", "ack"))  # refusals first
    for caller in order:
        browser = page_session(harness, caller)
        data = None
        if method == "POST":
            page = browser.get("/inbox")
            found = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))
            data = {"csrf_token": found[1] if found else ""}
        events_before = harness.count("dissemination", "OutboxEvent")
        response = browser.open(url, method=method, data=data)
        answer = page_answer(response)
        assert answer == expected[caller], (caller, answer)
        entry = harness.last_audit("dissemination")
        assert entry.method == method and entry.status_code == response.status_code, f"{caller}: not audited"
        if expected[caller] not in ("200", "form", "ack"):
            assert entry.outcome == "refused", caller
            assert harness.count("dissemination", "OutboxEvent") == events_before, (
                f"{caller}: a refusal changed something"
            )
            assert "Traceback" not in response.get_data(as_text=True)

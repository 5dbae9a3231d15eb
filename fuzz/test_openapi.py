"""`make fuzz`: schemathesis against each service's OpenAPI document, with every check.

The three services run in this process (WSGI, no sockets) on the real databases that
`make test` uses: PostgreSQL and Redis when DATABASE_URL / REDIS_URL are set, else SQLite files
and an embedded redis-server (tests/conftest.py, loaded with `-p tests.conftest`, sets that up).
Each operation is called with a centre token (NCLCC: issuer, admin, leader) and with a recipient
token (GMP: recipient), on a directory with an issued package, its disseminations, returns,
an outcome and the metrics they make.

Bounded: FUZZ_EXAMPLES examples per operation (default 25, valid and invalid mixed) and a
deadline per request; the examples are derandomized so that CI sees the same run every time
(set FUZZ_SEED to explore others). Nothing leaves this process: the schema is read from the app and
every case is sent to the app; jobs that would send anything are left queued in Redis (no worker
runs) and Redis is emptied afterwards.
"""

from __future__ import annotations

import ipaddress
import json
import os
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import schemathesis
from hypothesis import HealthCheck, seed, settings
from schemathesis.checks import CHECKS, load_all_checks
from sqlalchemy import select

from services.dissemination import create_app as create_dissemination
from services.metrics import create_app as create_metrics
from services.outcomes import create_app as create_outcomes
from shared import signing
from shared.auth import mint_token

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
SEED = os.environ.get("FUZZ_SEED")

load_all_checks()
ALL_CHECKS = CHECKS.get_all()  # the Python API's `--checks all`
CHECK_BY_NAME = {check.__name__: check for check in ALL_CHECKS}

# Checks left out for one operation, one check at a time, each with the reason the check is
# wrong there. Real findings are fixed in the code, never listed here.
EXCLUDED: dict[str, dict[str, str]] = {
    "POST /api/v1/packages": {
        "positive_data_acceptance": "a schema-valid package can still break a rule the schema cannot state: "
        "handling code C needs handling_conditions, the due date must be far enough after issue, recipients "
        "must be active organisations in the directory, and the classification at most MAX_CLASSIFICATION "
        "(any is accepted by the schema so that SECRET gets a clear 'above the maximum' answer)",
    },
    "PATCH /api/v1/packages/{package_id}": {
        "positive_data_acceptance": "the same package rules as POST /api/v1/packages, on the merged draft",
    },
    "POST /api/v1/returns/{return_id}/outcomes": {
        "positive_data_acceptance": "cross-field rules: no_action needs no_action_reason and stands alone, "
        "passed_on needs passed_to, a priority needs tasking_forum, results need attribution, children "
        "safeguarded cannot exceed people safeguarded; and an interim return cannot follow a final one",
    },
    "POST /api/v1/returns/{return_id}/extend": {
        "positive_data_acceptance": "exactly one of due_at and working_days (the schema cannot say 'one of'), "
        "and a new due date must be later than the return's current one",
    },
    "PUT /api/v1/chase-policy": {
        "positive_data_acceptance": "each step needs its own name: uniqueness of one property across the "
        "items of a list cannot be said in the schema",
    },
    "POST /api/v1/organisations": {
        "positive_data_acceptance": "webhook_url must be https and resolve only to public addresses (the SSRF "
        "guard); whether a name resolves, and to what, cannot be said in a schema",
    },
    "PATCH /api/v1/organisations/{code}": {
        "positive_data_acceptance": "webhook_url must be https and resolve only to public addresses (the SSRF "
        "guard); whether a name resolves, and to what, cannot be said in a schema",
    },
    "GET /api/v1/metrics/packages": {
        "positive_data_acceptance": "'from' must not be after 'to', and the period is at most ten years",
    },
    "GET /api/v1/metrics/export.csv": {
        "positive_data_acceptance": "'from' must not be after 'to', and the period is at most ten years",
    },
    "GET /api/v1/metrics/evidence-pack": {
        "positive_data_acceptance": "'from' must not be after 'to', and the period is at most ten years "
        "(from 'from' to 'to' or, without it, to the end of this year), as the summary's",
    },
    "GET /api/v1/metrics/summary": {
        "positive_data_acceptance": "'from' must not be after 'to', and the period is at most ten years "
        "(from 'from' to 'to' or, without it, to the end of this year)",
    },
}

APPS = {
    "dissemination": create_dissemination({"settings": {"testing": True}}),
    "outcomes": create_outcomes({"settings": {"testing": True}}),
    "metrics": create_metrics({"settings": {"testing": True}}),
}
SCHEMAS = {name: schemathesis.openapi.from_wsgi("/openapi.json", app) for name, app in APPS.items()}
WHO = {
    "centre": {"org": "NCLCC", "roles": ["issuer", "admin", "leader"]},
    "recipient": {"org": "GMP", "roles": ["recipient"]},
}


def _loopback_only() -> None:
    """Every address a service could be told to call must be on this machine."""
    for app in APPS.values():
        for name, url in app.extensions["settings"].service_urls.items():
            host = urlsplit(url).hostname or ""
            is_loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
            assert is_loopback, f"{name} is at {url}: make fuzz only ever targets loopback addresses"


@pytest.fixture(scope="session", autouse=True)
def no_dns():
    """Generated webhook URLs name hosts anywhere: none is ever looked up. Names other than
    loopback do not resolve here, so the SSRF guard refuses them without asking DNS."""
    import socket

    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        name = (host.decode() if isinstance(host, bytes) else str(host or "")).rstrip(".").lower()
        try:
            loopback = name == "localhost" or ipaddress.ip_address(name.strip("[]")).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo
    yield
    socket.getaddrinfo = real_getaddrinfo


@pytest.fixture(scope="session", autouse=True)
def fuzz_world(migrated):
    """Empty tables and Redis, the organisation directory, and one package's whole loop."""
    from services.dissemination.directory import seed_directory
    from shared.queue import redis_connection
    from tests.conftest import _empty_tables

    _loopback_only()
    for application in APPS.values():
        _empty_tables(application.extensions["database"], application.extensions["service"])
    redis = redis_connection(os.environ["REDIS_URL"])
    redis.flushdb()
    dissemination = APPS["dissemination"]
    with dissemination.app_context():
        from shared.db import get_session

        seed_directory(get_session(), dissemination.extensions["settings"])
    _build_loop()
    yield
    redis.flushdb()
    for app in APPS.values():
        app.extensions["database"].engine.dispose()


def headers_for(who: str) -> dict[str, str]:
    settings_ = APPS["dissemination"].extensions["settings"]
    person = WHO[who]
    token = mint_token(settings_, sub=f"fuzz-{who}@{person['org'].lower()}", org=person["org"], roles=person["roles"])
    return {"Authorization": f"Bearer {token}"}


def _build_loop() -> None:
    centre, gmp = headers_for("centre"), headers_for("recipient")
    dissemination = APPS["dissemination"].test_client()
    body = {
        "title": "Line into Wigan",
        "summary": "A line runs from Liverpool into Wigan.",
        "threat_area": "county_lines",
        "classification": "OFFICIAL-SENSITIVE",
        "source_evaluation": 2,
        "intelligence_assessment": "B",
        "handling_code": "P",
        "recipients": ["GMP", "MPS"],
    }
    package = _ok(dissemination.post("/api/v1/packages", json=body, headers=centre))
    _ok(dissemination.post("/api/v1/packages", json={**body, "title": "A draft"}, headers=centre))
    _ok(dissemination.post(f"/api/v1/packages/{package['id']}/issue", headers=centre))
    for row in _ok(dissemination.get("/api/v1/inbox", headers=gmp)):
        _ok(dissemination.post(f"/api/v1/disseminations/{row['id']}/acknowledge", headers=gmp))
    _deliver("dissemination", "outcomes")
    outcomes = APPS["outcomes"].test_client()
    for row in _ok(outcomes.get("/api/v1/returns", headers=gmp)):
        _ok(
            outcomes.post(
                f"/api/v1/returns/{row['id']}/outcomes",
                headers=gmp,
                json={
                    "status": "interim",
                    "actions": ["enforcement"],
                    "priority": "high",
                    "tasking_forum": "GMP tasking",
                    "results": {"arrests": 2},
                    "attribution": "direct",
                    "strands": ["pursue"],
                    "intelligence_feedback": {"usefulness": 4, "accuracy": "confirmed", "timeliness": "timely"},
                },
            )
        )
    _deliver("dissemination", "metrics")
    _deliver("outcomes", "metrics")


def _ok(response):
    assert response.status_code < 300, response.get_data(as_text=True)
    return response.get_json()


def _deliver(source: str, target: str) -> None:
    """Carry the source's events to the target's /internal/events, signed, as the relay does."""
    app = APPS[source]
    models = app.extensions["service"].models
    session = app.extensions["database"].session()
    try:
        events = session.scalars(select(models.OutboxEvent).order_by(models.OutboxEvent.position)).all()
        messages = [event.as_message(source) for event in events]
    finally:
        session.close()
    client = APPS[target].test_client()
    secret = APPS[target].extensions["settings"].event_secret
    for message in messages:
        body = json.dumps(message).encode()
        _ok(client.post("/internal/events", data=body, headers=signing.signed_headers(secret, body)))


def run_case(case, who: str) -> None:
    excluded = EXCLUDED.get(f"{case.operation.method.upper()} {case.operation.path}", {})
    case.call_and_validate(
        headers=headers_for(who),
        checks=ALL_CHECKS,
        excluded_checks=[CHECK_BY_NAME[name] for name in excluded],
    )


BOUNDS = settings(
    max_examples=EXAMPLES,
    deadline=timedelta(seconds=5),
    derandomize=SEED is None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
    print_blob=True,
)


def bounded(test):
    test = BOUNDS(test)
    return seed(int(SEED))(test) if SEED else test


@pytest.mark.parametrize("who", list(WHO))
@SCHEMAS["dissemination"].parametrize()
@bounded
def test_dissemination(case, who):
    run_case(case, who)


@pytest.mark.parametrize("who", list(WHO))
@SCHEMAS["outcomes"].parametrize()
@bounded
def test_outcomes(case, who):
    run_case(case, who)


@pytest.mark.parametrize("who", list(WHO))
@SCHEMAS["metrics"].parametrize()
@bounded
def test_metrics(case, who):
    run_case(case, who)

"""/metrics on each service, and the worker's and cron's endpoints: only with the scrape token
(a refusal is audited, a scrape is not), Prometheus text with requests by route pattern, the
outbox backlog, queue depths, live workers, the last sweep and overdue returns, read from the
real database and Redis; and gunicorn's workers added up in multiprocess mode."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import requests
from prometheus_client.parser import text_string_to_metric_families
from rq import Queue, SimpleWorker
from sqlalchemy import func, select

from shared.settings import DEV_SECRETS, ROOT
from tests.dissemination.helpers import issue_package

SCRAPE = {"Authorization": f"Bearer {DEV_SECRETS['METRICS_SCRAPE_TOKEN']}"}


def scrape(client) -> str:
    response = client.get("/metrics", headers=SCRAPE)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.content_type.startswith("text/plain")
    return response.get_data(as_text=True)


def samples(text: str, name: str, **labels: str) -> list[float]:
    """The values of ``name``'s samples whose labels include ``labels``."""
    return [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    ]


def value(text: str, name: str, **labels: str) -> float:
    found = samples(text, name, **labels)
    assert len(found) == 1, (name, labels, found)
    return found[0]


def audit_rows(app, path: str):
    model = app.extensions["service"].models.AuditEntry
    session = app.extensions["database"].session()
    try:
        return session.scalars(select(model).where(model.path == path).order_by(model.id)).all()
    finally:
        session.close()


def test_metrics_refuse_anyone_without_the_scrape_token_and_audit_it(app, client, token):
    refusals = [
        ("no token", {}),
        ("wrong token", {"Authorization": "Bearer " + "x" * 40}),
        ("the token without its scheme", {"Authorization": DEV_SECRETS["METRICS_SCRAPE_TOKEN"]}),
        ("an admin's own token", token("NCLCC", "issuer,admin")),
    ]
    for why, headers in refusals:
        response = client.get("/metrics", headers=headers)
        assert response.status_code == 401, why
        body = response.get_json()
        assert body["code"] == 401 and body["status"] == "Unauthorized" and "scrape token" in body["message"], why
        assert "ofs_" not in response.get_data(as_text=True)
    rows = audit_rows(app, "/metrics")
    assert [(row.status_code, row.outcome, row.action) for row in rows] == [(401, "refused", "GET /metrics")] * 4
    assert {row.detail for row in rows} == {"metrics scrape refused: no scrape token or a wrong one"}
    # The person whose token was sent is named; the scrape token is never stored.
    assert [row.actor for row in rows] == [None, None, None, "issuer@nclcc"]
    # A successful scrape is not audited: every 15 s it would bury the entries that matter.
    scrape(client)
    assert len(audit_rows(app, "/metrics")) == 4


def test_requests_are_counted_by_route_pattern_never_by_raw_path(app, client, token, outcomes_app, pump_events):
    from shared.form_links import form_token
    from tests.outcomes.helpers import issued_returns

    missing = uuid.uuid4()
    assert client.get(f"/api/v1/packages/{missing}", headers=token()).status_code == 404
    assert client.get("/api/v1/organisations/GMP", headers=token()).status_code == 200
    assert client.get("/no/such/page-qxzv").status_code == 404
    assert client.open("/api/v1/organisations", method="BREW").status_code == 405
    text = scrape(client)
    route = "/api/v1/packages/<uuid:package_id>"

    def counted(name: str = "ofs_http_requests_total", **labels: str) -> float:
        return value(text, name, service="dissemination", **labels)

    assert counted(route=route, method="GET", status="404") >= 1
    assert counted(route="/api/v1/organisations/<string:code>", method="GET", status="200") >= 1
    assert counted(route="<unmatched>", method="GET", status="404") >= 1
    assert counted(route="<unmatched>", method="other", status="405") >= 1
    assert counted("ofs_http_request_duration_seconds_count", route=route, method="GET") >= 1
    assert str(missing) not in text and "qxzv" not in text and "BREW" not in text

    return_id = issued_returns(client, token, pump_events, recipients=("GMP",))["GMP"]
    link = form_token(outcomes_app.extensions["settings"], return_id)
    outcomes = outcomes_app.test_client()
    assert outcomes.get(f"/form/{link}").status_code == 200
    text = scrape(outcomes)
    labels = {"service": "outcomes", "route": "/form/<token>", "method": "GET", "status": "200"}
    assert value(text, "ofs_http_requests_total", **labels) >= 1
    assert link not in text and link[:20] not in text and return_id not in text


def test_the_backlog_of_a_subscriber_that_is_down_and_the_queue_depths(
    app, client, token, consumer, run_jobs, redis_conn
):
    redis_conn.flushdb()  # only what this test enqueues
    consumer.stop()  # the outcomes service (its stand-in) is down
    issue_package(client, token(), recipients=["GMP"])
    models = app.extensions["service"].models

    def deliveries(status: str) -> int:
        session = app.extensions["database"].session()
        try:
            query = select(func.count()).select_from(models.OutboxDelivery)
            return session.scalar(query.where(models.OutboxDelivery.status == status))
        finally:
            session.close()

    pending = deliveries("pending")
    text = scrape(client)
    assert pending >= 2  # the seeded directory's events and the package's
    assert value(text, "ofs_outbox_deliveries", subscriber="outcomes", status="pending") == pending
    assert value(text, "ofs_outbox_deliveries", subscriber="outcomes", status="dead") == 0
    assert value(text, "ofs_outbox_oldest_pending_age_seconds", subscriber="outcomes") > 0
    relays, notices = Queue("events", connection=redis_conn).count, Queue("dissemination", connection=redis_conn).count
    assert relays >= 1 and notices >= 1
    assert value(text, "ofs_queue_jobs", queue="events", state="queued") == relays
    assert value(text, "ofs_queue_jobs", queue="dissemination", state="queued") == notices
    assert value(text, "ofs_queue_jobs", queue="events", state="failed") == 0
    assert value(text, "ofs_scrape_source_up", service="dissemination", source="database") == 1
    assert value(text, "ofs_scrape_source_up", service="dissemination", source="redis") == 1

    dead_before = sum(samples(text, "ofs_events_relayed_total", subscriber="outcomes", result="dead"))
    run_jobs()  # every try fails while the subscriber is down: the relays die
    text = scrape(client)
    dead = deliveries("dead")
    # The package's relay and those of the events its notice made (dissemination.delivered).
    assert dead >= relays
    # What is left pending (the directory's events had no job once Redis was emptied; a failed
    # batch gives each of its events a job of its own) is what the database holds.
    assert value(text, "ofs_outbox_deliveries", subscriber="outcomes", status="pending") == deliveries("pending")
    assert value(text, "ofs_outbox_deliveries", subscriber="outcomes", status="dead") == dead
    assert value(text, "ofs_queue_jobs", queue="events", state="queued") == 0
    assert value(text, "ofs_queue_jobs", queue="events", state="failed") == dead
    assert sum(samples(text, "ofs_events_relayed_total", subscriber="outcomes", result="dead")) == dead_before + dead


def test_live_workers_and_the_last_sweep_come_from_redis(client, redis_conn):
    text = scrape(client)
    assert value(text, "ofs_rq_workers_live", queue="events") == 0
    assert samples(text, "ofs_last_sweep_timestamp_seconds") == []  # no sweep yet: no sample
    assert value(text, "ofs_sweep_interval_seconds", service="dissemination") == 30
    worker = SimpleWorker(["dissemination", "events"], connection=redis_conn)
    worker.register_birth()
    redis_conn.set("health:sweep:dissemination", "1764500000.25")
    try:
        text = scrape(client)
        assert value(text, "ofs_rq_workers_live", queue="events") == 1
        assert value(text, "ofs_rq_workers_live", queue="dissemination") == 1
        assert value(text, "ofs_rq_workers_live", queue="outcomes") == 0
        assert value(text, "ofs_last_sweep_timestamp_seconds", service="dissemination") == 1764500000.25
    finally:
        worker.register_death()
    assert value(scrape(client), "ofs_rq_workers_live", queue="events") == 0


def test_the_outcomes_service_reports_its_overdue_returns(outcomes_app):
    from tests.outcomes.chase_helpers import issue_return

    text = scrape(outcomes_app.test_client())
    assert value(text, "ofs_returns_overdue") == 0
    issue_return(outcomes_app, due_in_seconds=-120)
    issue_return(outcomes_app, due_in_seconds=-60, org="MPS")
    issue_return(outcomes_app, due_in_seconds=3600, org="WMP")
    assert value(scrape(outcomes_app.test_client()), "ofs_returns_overdue") == 2


def test_a_scrape_says_which_source_it_could_not_read(clean_db):
    from services.dissemination import create_app
    from shared.devredis import free_port

    application = create_app({"settings": {"testing": True, "redis_url": f"redis://127.0.0.1:{free_port()}/0"}})
    try:
        text = scrape(application.test_client())
    finally:
        application.extensions["database"].engine.dispose()
    assert value(text, "ofs_scrape_source_up", source="redis") == 0
    assert value(text, "ofs_scrape_source_up", source="database") == 1
    assert samples(text, "ofs_queue_jobs") == []
    assert value(text, "ofs_outbox_deliveries", subscriber="outcomes", status="pending") == 0


def test_the_worker_and_cron_endpoints_need_the_token_too(migrated):
    from services import settings_for
    from shared.devredis import free_port
    from shared.monitoring import EVENTS_RELAYED, start_process_endpoint

    settings = settings_for("dissemination")
    assert start_process_endpoint("worker", settings, 0) is None  # 0: no endpoint
    server = start_process_endpoint("worker", settings, free_port())
    assert server is not None and server.server_address[0] == "127.0.0.1"
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        refused = requests.get(url, headers={"Authorization": "Bearer wrong"}, timeout=5)
        assert refused.status_code == 401 and refused.json()["code"] == 401
        assert requests.get(url, timeout=5).status_code == 401
        EVENTS_RELAYED.labels(service="dissemination", subscriber="outcomes", result="delivered").inc()
        answer = requests.get(url, headers=SCRAPE, timeout=5)
        assert answer.status_code == 200
        assert value(answer.text, "ofs_events_relayed_total", subscriber="outcomes", result="delivered") >= 1
        # A port already taken leaves the process working, without an endpoint.
        assert start_process_endpoint("cron", settings, server.server_port) is None
    finally:
        server.shutdown()
        server.server_close()


def _workers_that_counted(multiproc, route: str) -> set[str]:
    """The workers' files (``counter_<pid>.db``) in which ``route`` has answered a request."""
    from prometheus_client.mmap_dict import MmapedDict

    counted = set()
    for path in multiproc.glob("counter_*.db"):
        values = MmapedDict.read_all_values_from_file(str(path))
        if any("ofs_http_requests_total" in key and f'"{route}"' in key and value > 0 for key, value, *_ in values):
            counted.add(path.name)
    return counted


def test_gunicorn_workers_are_added_up_in_multiprocess_mode(migrated, tmp_path):
    """Two gunicorn workers, each answering some of the requests: every scrape, whichever worker
    answers it, counts them all (a worker's own registry would know only its share)."""
    from shared.devredis import free_port

    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    (multiproc / "counter_999999.db").write_bytes(b"left by an earlier run")
    port = free_port()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(multiproc), "APP_ENV": "test"}
    log = open(tmp_path / "gunicorn.log", "w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--config", "python:shared.gunicorn_conf", "--bind", f"127.0.0.1:{port}"]
        + ["--workers", "2", "services.metrics:create_app()"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(process, base, log)
        counted = value(_scrape_url(base), "ofs_http_requests_total", route="/healthz", status="200")
        # Which worker takes a new connection is the kernel's choice: requests sent one after
        # another may all go to one of them. New connections are sent until both workers have
        # counted some (each writes its own file), within a bound.
        sent = 0
        deadline = time.monotonic() + 60
        while len(_workers_that_counted(multiproc, "/healthz")) < 2 and sent < 500 and time.monotonic() < deadline:
            with requests.Session() as once:  # a new connection each time
                assert once.get(f"{base}/healthz", headers={"X-Request-ID": f"probe-{sent}"}, timeout=30).ok
            sent += 1
        worker_files = _workers_that_counted(multiproc, "/healthz")
        assert len(worker_files) == 2, f"one worker answered all {sent} requests"
        assert "counter_999999.db" not in worker_files, "the master empties the directory when it starts"
        for _ in range(4):  # scrapes answered by either worker agree
            assert value(_scrape_url(base), "ofs_http_requests_total", route="/healthz", status="200") == counted + sent
        refused = requests.get(f"{base}/api/v1/metrics/summary", headers={"X-Request-ID": "trace-401"}, timeout=30)
        assert refused.status_code == 401 and refused.headers["X-Request-ID"] == "trace-401"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        log.seek(0)
        output = log.read()
        log.close()
    access = [json.loads(line) for line in output.splitlines() if '"gunicorn.access"' in line]
    # One JSON line per request that matters, with its request id; health checks only at DEBUG.
    assert [(line["path"], line["status"], line["request_id"]) for line in access] == [
        ("/api/v1/metrics/summary", 401, "trace-401")
    ], output[-3000:]
    assert {line["process"] for line in access} == {"metrics"}


def _scrape_url(base: str) -> str:
    response = requests.get(f"{base}/metrics", headers=SCRAPE, timeout=30)
    assert response.status_code == 200, response.text
    return response.text


def _wait_until_up(process, base: str, log) -> None:
    # Generous: two workers importing the app on a loaded two-core machine take a while.
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise AssertionError("gunicorn exited:\n" + log.read()[-3000:])
        try:
            # Both workers up: each answers a scrape on its own connection.
            if all(requests.get(f"{base}/healthz", timeout=60).ok for _ in range(2)):
                return
        except requests.ConnectionError:
            time.sleep(0.2)
    raise AssertionError("gunicorn did not answer within 90 s")

"""Latency of the dissemination API's hot paths, in-process (Flask test client), on the
configured database: create a draft, issue it to two forces, read an inbox, acknowledge.

    make bench            # SQLite + embedded Redis
    DATABASE_URL=... REDIS_URL=... make bench

Bounded: N packages (default 200, BENCH_N), each step timed; prints p50 / p95 / max in ms.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    n = int(os.environ.get("BENCH_N", "200"))
    os.environ.setdefault("VAR_DIR", tempfile.mkdtemp(prefix="nclcc-bench-"))
    os.environ["DISSEMINATION_DATABASE_SCHEMA"] = "bench_dissemination"
    embedded = None
    if not os.environ.get("REDIS_URL"):
        from shared.devredis import EmbeddedRedis

        embedded = EmbeddedRedis().start()
        os.environ["REDIS_URL"] = embedded.url
    from sqlalchemy import text

    from services import settings_for
    from services.dissemination import SERVICE, create_app
    from services.dissemination.directory import seed_directory
    from shared.auth import mint_token
    from shared.db import Database, get_session
    from shared.migrate import upgrade

    settings = settings_for("dissemination")
    if settings.on_postgres:
        database = Database(settings)
        with database.engine.begin() as connection:
            connection.execute(text('DROP SCHEMA IF EXISTS "bench_dissemination" CASCADE'))
        database.engine.dispose()
    upgrade(SERVICE, settings)
    app = create_app()
    with app.app_context():
        seed_directory(get_session(), settings)
    client = app.test_client()

    def bearer(org, roles):
        return {"Authorization": "Bearer " + mint_token(settings, sub=f"bench@{org}", org=org, roles=roles)}

    issuer, gmp = bearer("NCLCC", ["issuer"]), bearer("GMP", ["recipient"])
    body = {
        "title": "Benchmark package",
        "summary": "x" * 500,
        "threat_area": "county_lines",
        "classification": "OFFICIAL-SENSITIVE",
        "source_evaluation": 2,
        "intelligence_assessment": "B",
        "handling_code": "P",
        "recipients": ["GMP", "MPS"],
    }
    timings: dict[str, list[float]] = {"create draft": [], "issue to 2": [], "inbox page": [], "acknowledge": []}

    def timed(name, method, url, **kwargs):
        start = time.perf_counter()
        response = getattr(client, method)(url, **kwargs)
        timings[name].append((time.perf_counter() - start) * 1000)
        assert response.status_code < 300, response.get_json()
        return response

    deadline = time.monotonic() + 300
    for _ in range(n):
        if time.monotonic() > deadline:
            break
        package = timed("create draft", "post", "/api/v1/packages", json=body, headers=issuer).get_json()
        timed("issue to 2", "post", f"/api/v1/packages/{package['id']}/issue", headers=issuer)
        inbox = timed("inbox page", "get", "/api/v1/inbox?per_page=20", headers=gmp).get_json()
        timed("acknowledge", "post", f"/api/v1/disseminations/{inbox[0]['id']}/acknowledge", headers=gmp)
    backend = "PostgreSQL" if settings.on_postgres else "SQLite"
    print(f"dissemination API, in-process, {backend}, {len(timings['create draft'])} packages")
    print(f"{'step':16} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for name, values in timings.items():
        print(f"{name:16} {statistics.median(values):8.1f} {percentile(values, 0.95):8.1f} {max(values):8.1f}")
    if embedded:
        embedded.stop()


if __name__ == "__main__":
    main()

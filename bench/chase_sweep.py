"""``make bench-chase``: the chase sweep over many open returns, a few of them due.

Fills a schema of its own (``bench_outcomes``) on DATABASE_URL's PostgreSQL (SQLite under a temp
VAR_DIR without it) with BENCH_OPEN open returns (default 1,000,000), BENCH_DUE_SHARE of them
(default 1%) due an hour ago and the rest due in the weeks ahead, then times the sweep as the
cron runs it (``chasing.sweep``, which claims a batch of at most SWEEP_BATCH returns), sweep
after sweep until nothing is left to claim, and prints the first sweep's time, the slowest, and
the total to chase every due return. The rows are written with one INSERT ... SELECT (not through
the API): what is measured is the sweep, not the loading.

    DATABASE_URL=postgresql://... make bench-chase
    BENCH_OPEN=100000 make bench-chase        # a quicker look
"""

from __future__ import annotations

import os
import tempfile
import time


def main() -> None:
    total = int(os.environ.get("BENCH_OPEN", "1000000"))
    due_share = float(os.environ.get("BENCH_DUE_SHARE", "0.01"))
    os.environ.setdefault("VAR_DIR", tempfile.mkdtemp(prefix="nclcc-bench-chase-"))
    os.environ["OUTCOMES_DATABASE_SCHEMA"] = "bench_outcomes"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("OUTCOMES_SUBSCRIBERS", "")  # no relay: the sweep alone
    from sqlalchemy import text

    from services import settings_for
    from services.outcomes import SERVICE
    from services.outcomes.chasing import SWEEP_BATCH, sweep
    from shared.db import Database
    from shared.logs import configure_logging
    from shared.migrate import upgrade

    settings = settings_for("outcomes")
    configure_logging("bench-chase", settings)  # as the cron logs: LOG_LEVEL, not every debug line
    if not settings.on_postgres:
        total = min(total, int(os.environ.get("BENCH_OPEN_SQLITE", "100000")))
    database = Database(settings)
    if settings.on_postgres:
        with database.engine.begin() as connection:
            connection.execute(text('DROP SCHEMA IF EXISTS "bench_outcomes" CASCADE'))
    upgrade(SERVICE, settings)
    every = max(1, round(1 / due_share))
    started = time.monotonic()
    with database.engine.begin() as connection:
        if settings.on_postgres:
            connection.execute(
                text(
                    "INSERT INTO expected_returns (id, package_id, reference, title, threat_area, classification, "
                    "organisation, issued_at, due_at, created_at, extensions, onward_depth, versions) "
                    "SELECT gen_random_uuid(), gen_random_uuid(), 'B-' || g, 'Bench package', 'county_lines', "
                    "'OFFICIAL', 'GMP', now() - interval '40 days', "
                    "CASE WHEN g % :every = 0 THEN now() - interval '1 hour' "
                    "ELSE now() + (8 + g % 50) * interval '1 day' END, now(), '[]'::jsonb, 0, 0 "
                    "FROM generate_series(1, :total) AS g"
                ),
                {"every": every, "total": total},
            )
            connection.execute(text("ANALYZE expected_returns"))
        else:
            connection.execute(
                text(
                    "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < :total) "
                    "INSERT INTO expected_returns (id, package_id, reference, title, threat_area, classification, "
                    "organisation, issued_at, due_at, created_at, extensions, onward_depth, versions) "
                    "SELECT lower(hex(randomblob(16))), lower(hex(randomblob(16))), 'B-' || n, 'Bench package', "
                    "'county_lines', 'OFFICIAL', 'GMP', datetime('now', '-40 days'), "
                    "CASE WHEN n % :every = 0 THEN datetime('now', '-1 hour') "
                    "ELSE datetime('now', '+' || (8 + n % 50) || ' days') END, datetime('now'), '[]', 0, 0 FROM g"
                ),
                {"every": every, "total": total},
            )
    loaded = time.monotonic() - started
    due = total // every
    print(
        f"chase sweep benchmark, {'PostgreSQL' if settings.on_postgres else 'SQLite'}: {total:,} open returns, "
        f"{due:,} due ({due_share:.0%}); loaded in {loaded:.1f} s; a sweep claims at most {SWEEP_BATCH} returns"
    )
    times: list[float] = []
    claimed = 0
    for _ in range(due // SWEEP_BATCH + 5):  # bounded: every due return, and a few empty sweeps
        session = database.session()
        try:
            began = time.monotonic()
            counts = sweep(session, settings)
            times.append(time.monotonic() - began)
        finally:
            session.close()
        claimed += counts["claimed"] + counts["skipped"]
        if not counts["claimed"] and not counts["skipped"] and not counts["overdue"]:
            break
    print(
        f"sweeps: {len(times)}; first {times[0] * 1000:.0f} ms, slowest {max(times) * 1000:.0f} ms, "
        f"last (nothing due) {times[-1] * 1000:.0f} ms; {claimed:,} steps claimed in {sum(times):.1f} s"
    )
    print("goal: a sweep at 1M open returns with 1% due under 1 s")
    database.engine.dispose()


if __name__ == "__main__":
    main()

"""The read model can be rebuilt from the other services' event logs, and the rebuilt model
equals the live one, whatever order the events come in."""

from __future__ import annotations

import random
import threading
import uuid

import pytest
from sqlalchemy import delete, func, select

from services.metrics import rebuilding
from services.metrics.models import Fact, HoursToReturn, InboxEvent, PackageState, ReturnState
from services.metrics.projections import package_figures_from_state
from shared import signing
from tests.metrics import scenario


@pytest.fixture
def history(snapshot_world):
    return snapshot_world(scenario.history)


def snapshot(metrics_app) -> dict:
    session = metrics_app.extensions["database"].session()
    try:
        facts = {
            (f.scope, f.key, f.metric, f.classification): round(f.value, 6)
            for f in session.scalars(select(Fact))
            if f.value
        }
        hours = {
            (h.organisation, h.classification, h.hours): h.value
            for h in session.scalars(select(HoursToReturn))
            if h.value
        }
        packages = {
            (p.reference, p.verdict, p.verdict_reason, p.recipients, p.final_returns, p.arrests)
            for p in session.scalars(select(PackageState))
        }
        # Each package's own figures, kept on its row, are what its returns add up to.
        assert not [key for key in facts if key[0] == "package"], "a package's figures are kept on its row alone"
        recomputed = package_figures_from_state(session)
        for package in session.scalars(select(PackageState)):
            own = {m: round(v, 6) for m, v in recomputed.get(package.package_id, {}).items() if v}
            assert {m: round(v, 6) for m, v in (package.figures or {}).items()} == own, package.reference
        figures = {
            str(p.package_id): {m: round(v, 6) for m, v in (p.figures or {}).items()}
            for p in session.scalars(select(PackageState))
        }
        returns = {
            (str(r.return_id), r.organisation, r.version, r.overdue, r.withdrawn, r.final_on_time)
            for r in session.scalars(select(ReturnState))
        }
        return {"facts": facts, "hours": hours, "packages": packages, "figures": figures, "returns": returns}
    finally:
        session.close()


def log_fetcher(app, outcomes_app):
    clients = {"dissemination": (app.test_client(), app), "outcomes": (outcomes_app.test_client(), outcomes_app)}

    def fetch(source, after, limit):
        client, source_app = clients[source]
        path = f"/internal/events/log?after={after}&limit={limit}"
        secret = source_app.extensions["settings"].event_secret
        response = client.get(path, headers=signing.signed_headers(secret, path.encode()))
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    return fetch


def test_rebuild_equals_live(history, metrics_app, app, outcomes_app):
    live = snapshot(metrics_app)
    assert live["facts"] and live["hours"] and len(live["packages"]) == 3
    session = metrics_app.extensions["database"].session()
    applied = rebuilding.rebuild(session, log_fetcher(app, outcomes_app))
    session.close()
    assert applied > 60  # the directory, three packages and everything that followed
    assert snapshot(metrics_app) == live


def test_events_in_any_order_give_the_same_figures(history, metrics_app, app, outcomes_app):
    live = snapshot(metrics_app)
    fetch = log_fetcher(app, outcomes_app)
    events = [e for source in ("dissemination", "outcomes") for e in rebuilding.event_stream(fetch, source)]
    for seed in (1, 2):
        random.Random(seed).shuffle(events)
        session = metrics_app.extensions["database"].session()
        rebuilding.rebuild(session, lambda source, after, limit: {"events": [], "next_after": 0})  # empties it
        for start in range(0, len(events), 7):  # small batches, so order across batches matters too
            rebuilding.apply_batch(session, events[start : start + 7])
        session.close()
        assert snapshot(metrics_app) == live, f"shuffle {seed}"


def test_a_batch_applied_again_counts_nothing_twice(history, metrics_app, app, outcomes_app):
    # The inbox's rows go out with the projection's pipelined writes (rebuilding.apply_batch):
    # they must be there for the next batch to drop what it repeats.
    live = snapshot(metrics_app)
    fetch = log_fetcher(app, outcomes_app)
    events = [e for source in ("dissemination", "outcomes") for e in rebuilding.event_stream(fetch, source)]
    session = metrics_app.extensions["database"].session()
    try:
        rebuilding.rebuild(session, lambda source, after, limit: {"events": [], "next_after": 0})  # empties it
        assert rebuilding.apply_batch(session, events) == len(events)
        assert rebuilding.apply_batch(session, events) == 0
        assert rebuilding.apply_batch(session, events[:5] + events[:5]) == 0
        assert session.scalar(select(func.count()).select_from(InboxEvent)) == len({e["id"] for e in events})
        session.execute(delete(InboxEvent).where(InboxEvent.event_id == uuid.UUID(events[-1]["id"])))
        session.commit()
        assert rebuilding.apply_batch(session, events[-2:] + events[-1:]) == 1  # the one forgotten, once
    finally:
        session.close()
    session = metrics_app.extensions["database"].session()
    try:
        rebuilding.rebuild(session, lambda source, after, limit: {"events": [], "next_after": 0})
        rebuilding.apply_batch(session, events)
        rebuilding.apply_batch(session, list(reversed(events)))
    finally:
        session.close()
    assert snapshot(metrics_app) == live


def test_the_event_log_is_signed(app):
    client = app.test_client()
    assert client.get("/internal/events/log?after=0").status_code == 401
    path = "/internal/events/log?after=0&limit=5"
    headers = signing.signed_headers("wrong", path.encode())
    assert client.get(path, headers=headers).status_code == 401


def test_read_ahead_keeps_order_raises_the_producers_error_and_stops_with_its_consumer():
    """``rebuilding.read_ahead``: the rebuild fetches the next page while it applies the last."""
    assert list(rebuilding.read_ahead(iter(range(50)), depth=3)) == list(range(50))

    def failing():
        yield from ("page 1", "page 2")
        raise ConnectionError("the outcomes service went away")

    seen = []
    with pytest.raises(ConnectionError, match="went away"):
        for page in rebuilding.read_ahead(failing()):
            seen.append(page)
    assert seen == ["page 1", "page 2"]  # what came before the error is not lost

    made = []

    def endless():
        while True:
            made.append(len(made))
            yield made[-1]

    ahead = rebuilding.read_ahead(endless(), depth=2)
    assert [next(ahead) for _ in range(5)] == [0, 1, 2, 3, 4]
    ahead.close()  # the consumer stops: so does the producer, a few items ahead at most
    producers = [thread for thread in threading.enumerate() if thread.name.startswith("read-ahead")]
    assert not [thread for thread in producers if thread.is_alive()]
    assert len(made) <= 5 + 2 + 2

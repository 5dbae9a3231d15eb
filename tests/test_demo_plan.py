"""The demo world (tools/demo.py) without the services: the same seed makes the same world, and
it holds every kind of story the dashboard should show, over the whole year."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tools.demo import YEAR, plan

END = datetime(2026, 12, 1, 4, 0, tzinfo=UTC)


def test_the_same_seed_makes_the_same_world_and_another_seed_another():
    assert plan(11, 40, END) == plan(11, 40, END)
    assert plan(11, 40, END).packages != plan(12, 40, END).packages


def test_the_world_holds_every_story_over_a_year_and_nothing_after_today():
    world = plan(11, 150, END)
    steps = world.steps
    assert len(world.packages) == 150
    assert all(END - YEAR <= step.at <= END for step in steps)
    assert [step.at for step in steps] == sorted(step.at for step in steps)
    issued = [step.at for step in steps if step.kind == "issue"]
    assert len({(d.year, d.month) for d in issued}) >= 12
    assert all(d.weekday() < 5 and 8 <= d.hour <= 17 for d in issued)  # office hours on working days
    filed = [step for step in steps if step.kind == "file"]
    labels = {step.label for step in filed}
    assert labels == {"interim", "final", "amendment"}
    finals = [step for step in filed if step.label == "final"]
    assert any(step.body["actions"] == ["no_action"] and step.body["no_action_reason"] for step in finals)
    passed = [step for step in finals if "passed_on" in step.body["actions"]]
    assert passed and all(step.body["passed_to"] for step in passed)
    onward = {(step.package, step.body["passed_to"]) for step in passed}
    assert any((step.package, step.organisation) in onward for step in finals)  # the onward return
    # A spread of lateness: some finals well before their due date, some long after.
    due = {step.package: step.at + timedelta(days=28) for step in steps if step.kind == "issue"}
    lateness = [
        (step.at - due[step.package]).days
        for step in finals
        if step.organisation in world.packages[step.package]["recipients"]
    ]
    assert min(lateness) < -7 and max(lateness) > 14
    assert sum(1 for step in steps if step.kind == "sweep") >= 360  # the chase sweep, every day

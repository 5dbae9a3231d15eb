"""Fault drills: the whole system as ``make run`` starts it, under a steady load, through each
fault an operator meets (Redis stopped, the worker or cron killed, a consumer service down,
database connections cut, readiness while the worker is gone), each asserting that nothing is
lost and nothing doubled across the three services. ``make drill``; docs/drills.md."""

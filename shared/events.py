"""Where the outbox's RQ jobs lived before ``shared.outbox`` and ``shared.inbox``: relay and
sweep jobs already queued in Redis name these paths."""

from shared.outbox import relay_event, sweep_outbox

__all__ = ["relay_event", "sweep_outbox"]

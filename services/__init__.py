"""The three services: dissemination, outcomes, metrics. Each is readable from its folder alone."""

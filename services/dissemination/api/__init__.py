"""One blueprint per resource; file, blueprint and URL share a name."""

"""The drills' own redis-server, which they stop and start again on the same port.

The development one (``shared.devredis.EmbeddedRedis``), configured as production's (compose runs
``redis-server --appendonly yes``): what it held when it was stopped is there again when it comes
back. Only loopback.
"""

from __future__ import annotations

from pathlib import Path

from shared.devredis import EmbeddedRedis


class RedisServer(EmbeddedRedis):
    def __init__(self, directory: Path, port: int | None = None):
        directory.mkdir(parents=True, exist_ok=True)
        # Later arguments win in redis-server: these override EmbeddedRedis's --appendonly no.
        persistence = ("--dir", str(directory), "--appendonly", "yes", "--logfile", str(directory / "redis.log"))
        super().__init__(port, extra_args=persistence)

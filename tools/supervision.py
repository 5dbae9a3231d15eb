"""supervisord for ``make run``: the Procfile's processes, restarted when they exit, stopped in
order. docs/operations.md says why supervisord and how to work with it.

Each program's output goes to the terminal. supervisord itself prints warnings only: one line
when a program exits unexpectedly (then it restarts it), nothing on a clean start or stop. Its
control socket is the owner's only and asks for a password made for each run, written (for
supervisorctl) in the configuration file, which is the owner's only too.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path

from supervisor.xmlrpc import SupervisorTransport

from shared.procs import die_with_parent
from shared.settings import ROOT

# The order supervisord starts the programs in, lowest first; they stop in the reverse order:
# cron first (nothing new is scheduled), then the worker (it finishes the job in hand), then the
# web services. Stopped before the worker, the services would have it relay events to ports
# closed a moment earlier, a line per failure; stopped after it, what they enqueue meanwhile
# waits in Redis, or in their outboxes for the next start's sweep.
WEB_PRIORITY = 100
PRIORITIES = {"worker": 200, "cron": 300}
# A program that exits within STARTSECS of its start has failed to start: supervisord waits 1 s,
# then 2 s, 3 s... before the next try, and gives up (FATAL) after START_RETRIES failures in a
# row, about ten minutes of them. The processes wait out Redis and database outages without
# exiting, so failing that long is a fault to fix, not an outage to wait for.
STARTSECS = 3
START_RETRIES = 30
# Time for a program to stop on SIGTERM before its process group is killed: the worker finishes
# its job (a relay takes milliseconds, a sweep seconds); gunicorn lets requests in hand finish.
STOP_WAIT_SECONDS = 20

_VARIABLE = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def read_procfile(path: Path, env: dict[str, str]) -> dict[str, list[str]]:
    """Each process of the Procfile (``name: command``, the one place the commands are written)
    as an argument list, with ``${NAME:-default}`` taken from ``env`` and the program found on
    env's PATH: supervisord runs it directly, with no shell in between."""
    programs = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, command = line.split(":", 1)
        argv = shlex.split(_VARIABLE.sub(lambda m: env.get(m[1]) or m[2] or "", command))
        argv[0] = shutil.which(argv[0], path=env.get("PATH")) or argv[0]
        programs[name.strip()] = argv
    return programs


@dataclass(frozen=True)
class Supervisor:
    run_dir: Path
    programs: dict[str, list[str]]
    password: str

    @property
    def config(self) -> Path:
        return self.run_dir / "supervisord.conf"

    @property
    def socket(self) -> Path:
        return self.run_dir / "supervisor.sock"

    @classmethod
    def prepare(cls, run_dir: Path, programs: dict[str, list[str]]) -> Supervisor:
        """Write the configuration for ``programs`` into ``run_dir``."""
        run_dir.mkdir(parents=True, exist_ok=True)
        run_dir.chmod(0o700)
        supervisor = cls(run_dir, programs, secrets.token_urlsafe(24))
        supervisor.config.touch(mode=0o600)
        supervisor.config.chmod(0o600)
        supervisor.config.write_text(supervisor.render())
        return supervisor

    def render(self) -> str:
        sections = [
            f"""[unix_http_server]
file = {self.socket}
chmod = 0700
username = run
password = {self.password}

[supervisorctl]
serverurl = unix://{self.socket}
username = run
password = {self.password}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisord]
logfile = {self.run_dir / "supervisord.log"}
pidfile = {self.run_dir / "supervisord.pid"}
childlogdir = {self.run_dir}
loglevel = warn
"""
            # Said explicitly, running as root is not worth a CRIT line at each start.
            + ("user = root\n" if os.getuid() == 0 else "")
        ]
        for name, argv in self.programs.items():
            sections.append(
                f"""
[program:{name}]
command = {shlex.join(argv).replace("%", "%%")}
directory = {ROOT}
priority = {PRIORITIES.get(name, WEB_PRIORITY)}
autostart = true
autorestart = true
startsecs = {STARTSECS}
startretries = {START_RETRIES}
stopsignal = TERM
stopwaitsecs = {STOP_WAIT_SECONDS}
stopasgroup = true
killasgroup = true
redirect_stderr = true
stdout_logfile = /dev/stdout
stdout_logfile_maxbytes = 0
"""
            )
        return "".join(sections)

    def run(self, env: dict[str, str]) -> int:
        """supervisord in the foreground until it exits, or until this process is asked to stop
        (KeyboardInterrupt): then the programs stop in order and supervisord after them."""
        supervisord = subprocess.Popen(
            [sys.executable, "-m", "supervisor.supervisord", "--nodaemon", "--configuration", str(self.config)],
            cwd=ROOT,
            env=env,
            # Its own session: a Ctrl-C at the terminal reaches this process only, which stops
            # supervisord once; and supervisord stops (its programs first) if this process dies.
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        try:
            return supervisord.wait()
        except KeyboardInterrupt:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            self.stop_programs()
            supervisord.terminate()
            try:
                supervisord.wait(timeout=len(self.programs) * STOP_WAIT_SECONDS)
            except subprocess.TimeoutExpired:
                supervisord.kill()
                supervisord.wait()
                return 1
            return 0

    def stop_programs(self) -> None:
        """Stop the programs a priority at a time, highest first, those of one priority together.
        (supervisord's own shutdown stops one program at a time: the three web services one
        after the other.) What this cannot do, supervisord's shutdown does after it."""
        server = xmlrpc.client.ServerProxy(
            "http://127.0.0.1", transport=SupervisorTransport("run", self.password, f"unix://{self.socket}")
        )
        phases: dict[int, list[str]] = {}
        for name in self.programs:
            phases.setdefault(PRIORITIES.get(name, WEB_PRIORITY), []).append(name)
        try:
            for _, names in sorted(phases.items(), reverse=True):
                for name in names:
                    try:
                        server.supervisor.stopProcess(name, False)
                    except xmlrpc.client.Fault:
                        pass  # not running (or failed to start): nothing to stop
                deadline = time.monotonic() + STOP_WAIT_SECONDS + 5
                while time.monotonic() < deadline and any(
                    server.supervisor.getProcessInfo(name)["statename"] == "STOPPING" for name in names
                ):
                    time.sleep(0.2)
        except (OSError, xmlrpc.client.Error):
            pass  # supervisord is not answering (still starting, or gone)

"""Process control for the drills, in one small adapter.

Under supervisord (``make run`` writes ``$RUN_DIR/supervisord.conf``) the drills ask
``supervisorctl`` for pids and to stop or start a program, as an operator would. Under honcho
(before the supervisor) they can find and kill a process but not start one: honcho has no
restarts, so the drills that need the system to heal say so and fail.

Kills are sent by pid to the one process named, never by name pattern to a crowd.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

PROGRAMS = ("dissemination", "outcomes", "metrics", "worker", "cron")
# How each program shows in a command line, for finding it without a supervisor.
COMMAND_LINES = {
    "dissemination": "services.dissemination:create_app",
    "outcomes": "services.outcomes:create_app",
    "metrics": "services.metrics:create_app",
    "worker": "services worker",
    "cron": "services cron",
}


class CannotControl(RuntimeError):
    """The process manager in use cannot do what the drill needs (honcho cannot start one)."""


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: read what follows the last one.
    return int(stat.rsplit(")", 1)[1].split()[1])


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid in _pids():
        parent = _parent(pid)
        if parent is not None:
            children.setdefault(parent, []).append(pid)
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def processes_of_run(marker: str) -> set[int]:
    """Every live process started for this run: each inherits ``DRILL_RUN_ID=<marker>``."""
    needle = f"DRILL_RUN_ID={marker}".encode()
    found = set()
    for pid in _pids():
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.add(pid)
    return found


def is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


class Control:
    """What a drill asks of the process manager."""

    kind = "?"

    def __init__(self, root_pid: int):
        self.root_pid = root_pid

    def pid(self, name: str) -> int | None:
        raise NotImplementedError

    def stop(self, name: str) -> None:
        raise NotImplementedError

    def start(self, name: str) -> None:
        raise NotImplementedError

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        pid = self.pid(name)
        if not pid:
            raise AssertionError(f"{name} is not running: nothing to kill")
        os.kill(pid, sig)
        return pid

    def wait_running(self, name: str, not_pid: int | None = None, timeout: float = 60.0) -> tuple[int, float]:
        """Wait until ``name`` runs again under a pid other than ``not_pid``: (pid, seconds)."""
        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline:
            pid = self.pid(name)
            if pid and pid != not_pid and not is_zombie(pid):
                return pid, time.monotonic() - started
            time.sleep(0.2)
        raise AssertionError(f"{name} was not running again within {timeout:.0f} s (under {self.kind})")

    def orphans(self, marker: str) -> list[str]:
        """Processes of this run no longer under the process manager: what a kill left behind."""
        tree = descendants(self.root_pid) | {self.root_pid}
        return [f"{pid} {_cmdline(pid)[:80]}" for pid in sorted(processes_of_run(marker) - tree) if not is_zombie(pid)]


class Supervisor(Control):
    kind = "supervisord"

    def __init__(self, root_pid: int, config: Path, env: dict[str, str]):
        super().__init__(root_pid)
        self.config = config
        self.env = env

    def _ctl(self, *args: str, timeout: float = 60.0) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "supervisor.supervisorctl", "-c", str(self.config), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return result.stdout + result.stderr

    def status(self) -> dict[str, str]:
        """Program name -> state (RUNNING, STOPPED, BACKOFF, ...)."""
        states = {}
        for line in self._ctl("status").splitlines():
            parts = line.split()
            if len(parts) >= 2:
                states[parts[0].rsplit(":", 1)[-1]] = parts[1]
        return states

    def _full_name(self, name: str) -> str:
        for line in self._ctl("status").splitlines():
            parts = line.split()
            if parts and parts[0].rsplit(":", 1)[-1] == name:
                return parts[0]
        return name

    def pid(self, name: str) -> int | None:
        output = self._ctl("pid", self._full_name(name)).strip()
        return int(output) if output.isdigit() and int(output) > 0 else None

    def stop(self, name: str) -> None:
        output = self._ctl("stop", self._full_name(name))
        if "stopped" not in output and "not running" not in output.lower():
            raise AssertionError(f"supervisorctl stop {name}: {output.strip()}")

    def start(self, name: str) -> None:
        output = self._ctl("start", self._full_name(name))
        if "started" not in output and "already started" not in output:
            raise AssertionError(f"supervisorctl start {name}: {output.strip()}")


class ProcessTree(Control):
    """honcho's processes, found under ``make run``'s process by their command lines."""

    kind = "honcho"

    def pid(self, name: str) -> int | None:
        pattern = re.compile(re.escape(COMMAND_LINES[name]))
        tree = descendants(self.root_pid)
        matching = {pid for pid in tree if pattern.search(_cmdline(pid)) and not is_zombie(pid)}
        # The top one: gunicorn's master rather than its workers, the worker rather than its children.
        top = [pid for pid in matching if _parent(pid) not in matching]
        return min(top) if top else None

    def stop(self, name: str) -> None:
        self.kill(name, signal.SIGTERM)

    def start(self, name: str) -> None:
        raise CannotControl(f"honcho cannot start {name} again on its own: no supervisor under make run yet")


def control_for(run_dir: Path, root_pid: int, env: dict[str, str]) -> Control:
    config = run_dir / "supervisord.conf"
    if config.exists():
        return Supervisor(root_pid, config, env)
    return ProcessTree(root_pid)

"""Helpers for tests that start the product's real processes: a Redis of the test's own that it
can stop and start again on the same port, processes whose output goes to a file the test
reads, and bounded waits."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from shared.devredis import EmbeddedRedis, free_port
from shared.settings import ROOT


def wait_for(predicate, timeout: float = 30.0, every: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"{what} not met within {timeout:.0f} s")


class PrivateRedis:
    """A redis-server for one test, on a fixed loopback port: stopping it is an outage of this
    test's processes only, and starting it again on the same port is Redis coming back (empty,
    as a restarted Redis without persistence is)."""

    def __init__(self, extra_args: tuple[str, ...] = ()):
        self.port = free_port()
        self.extra_args = extra_args
        self.server: EmbeddedRedis | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        self.server = EmbeddedRedis(self.port, extra_args=self.extra_args).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.stop()
            self.server = None


class Process:
    """A product process started as an operator would, its output kept in a file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path):
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.popen = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @classmethod
    def services(cls, command: str, env: dict[str, str], log_path: Path) -> Process:
        return cls([sys.executable, "-m", "services", command], env, log_path)

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def lines_with(self, text: str) -> list[str]:
        return [line for line in self.output.splitlines() if text in line]

    def wait_for_output(self, text: str, timeout: float = 60.0) -> None:
        def seen():
            if text in self.output:
                return True
            if self.popen.poll() is not None:
                code = self.popen.returncode
                raise AssertionError(f"exited ({code}) before printing {text!r}:\n{self.output[-3000:]}")
            return False

        wait_for(seen, timeout, what=f"output {text!r}")

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, sig)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout=timeout)

    def close(self) -> None:
        """However the test ended: stop the process's whole group, and close the log."""
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=5)
            except ProcessLookupError:
                pass
        self._log.close()


def processes_with_env(name: str, value: str) -> list[int]:
    """Pids of the live processes whose environment has ``name=value``: what a process tree left
    behind, even after its parent died and its orphans were re-parented."""
    wanted = f"{name}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and wanted in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


class TcpProxy:
    """A loopback TCP proxy to ``target_port``: stopping it is the server going away for the
    processes that connect through it (refused connections, and the open ones cut), while
    every other user of the server goes on."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> TcpProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def stop(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            connections, self._open = self._open, []
        if listener:
            # Wakes the thread blocked in accept(): closing alone leaves the socket listening
            # until that accept() returns, and the next connection would still get through.
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            connection.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._open += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

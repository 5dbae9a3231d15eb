"""A force's webhook endpoint on a loopback port, as the README tells forces to write one:
check the Standard Webhooks signature, keep each ``webhook-id`` once and drop repeats.

It keeps what it saw (first copies and repeats by message id) for the drills' counts, and can
hold the next request open for a while, so that a drill kills the worker while a notification
is on the wire: mid-job, for certain.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook, WebhookVerificationError

from shared.devredis import free_port


class WebhookReceiver:
    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}
        self.messages: dict[str, dict] = {}  # webhook-id -> payload, first copy
        self.copies: Counter = Counter()  # webhook-id -> how many times it came
        self.refused = 0  # bad signature or unknown organisation
        self._lock = threading.Lock()
        self._hold_seconds = 0.0
        self.holding = threading.Event()
        self._release = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status = owner.receive(self.path.strip("/").upper(), dict(self.headers), body)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the sender died while this was held: nothing to answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url_for(self, organisation: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{organisation.lower()}"

    def receive(self, organisation: str, headers: dict, body: bytes) -> int:
        secret = self.secrets.get(organisation)
        if secret is None:
            with self._lock:
                self.refused += 1
            return 404
        try:
            payload = Webhook(secret).verify(body, {k.lower(): v for k, v in headers.items()})
        except WebhookVerificationError:
            with self._lock:
                self.refused += 1
            return 401
        message_id = {k.lower(): v for k, v in headers.items()}["webhook-id"]
        with self._lock:
            self.copies[message_id] += 1
            self.messages.setdefault(message_id, json.loads(body) if not isinstance(payload, dict) else payload)
            hold, self._hold_seconds = self._hold_seconds, 0.0
        if hold:
            self.holding.set()
            self._release.wait(hold)
        return 200

    def hold_next(self, seconds: float) -> None:
        """Keep the next request open for up to ``seconds`` (or until ``release``)."""
        self.holding.clear()
        self._release.clear()
        with self._lock:
            self._hold_seconds = seconds

    def release(self) -> None:
        self._release.set()

    def wait_holding(self, timeout: float) -> bool:
        return self.holding.wait(timeout)

    def snapshot(self) -> tuple[dict[str, dict], Counter]:
        with self._lock:
            return dict(self.messages), Counter(self.copies)

    def stop(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


def wait_until(predicate, timeout: float, every: float = 0.25):
    """``predicate()``'s first truthy value within ``timeout`` seconds, else None."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(every)

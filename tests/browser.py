"""What the browser tests share: Debian's Chromium driven by Playwright (never a downloaded
browser), one loopback server per module that each test points at its own app, and the sign-in
steps (the dashboard's token box; the organisation's identity provider)."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def skip_without_chromium() -> None:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"browser tests need Chromium at {CHROMIUM}", allow_module_level=True)


class Server:
    """One loopback server for a module; ``server.app`` is set by each test to its own app."""

    def __init__(self):
        from werkzeug.serving import make_server

        from shared.devredis import free_port

        self.app = None
        self.port = free_port()
        self.server = make_server("127.0.0.1", self.port, self._dispatch, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _dispatch(self, environ, start_response):
        return self.app(environ, start_response)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def server():
    running = Server()
    yield running
    running.stop()


@pytest.fixture
def shots(tmp_path) -> Path:
    """Where a test's screenshots go: $SCREENSHOTS_DIR when it is set (the README's come from
    there), else the test's temporary directory."""
    folder = Path(os.environ.get("SCREENSHOTS_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


# --- signing in ----------------------------------------------------------------------------
# Playwright is imported inside these, not above: the conftest imports this module for every test.


def raw_token(headers: dict) -> str:
    """The JWT of a test ``token(...)``'s Authorization header, as a leader would paste it."""
    return headers["Authorization"].removeprefix("Bearer ")


def sign_in_to_dashboard(page: Page, server: Server, jwt: str) -> None:
    """Open the dashboard, be sent to its sign-in page, and type the token in by keyboard."""
    from playwright.sync_api import expect

    page.goto(server.url + "/dashboard")
    expect(page).to_have_url(re.compile(r"/dashboard/sign-in$"))
    field = page.get_by_label("Access token")
    field.click()
    field.press_sequentially(jwt)
    field.press("Enter")


def sign_in_with_provider(page: Page, user: str) -> None:
    """From a service's sign-in page, by keyboard: on to the identity provider (the test's
    ``tests.oidc_provider``) and sign in there as ``user``."""
    from playwright.sync_api import expect

    from tests.outcomes.test_form_browser import press_button

    press_button(page, page.get_by_role("button", name="Sign in with your organisation’s account"))
    expect(page.locator("h1")).to_have_text("Authorize Client")
    page.keyboard.type(user)  # the provider's page puts the focus in its box
    page.keyboard.press("Enter")

"""The evidence pack in a real browser (headless Chromium through Playwright): reached from the
dashboard with its filters, clean under axe-core, and printed on A4 without the navigation,
each section starting a new page.

Screenshots go to $SCREENSHOTS_DIR when it is set (the README's come from
``SCREENSHOTS_DIR=docs/screenshots .venv/bin/python -m pytest -n 0 tests/metrics/test_evidence_pack_browser.py``),
else to the test's temporary directory.
"""

from __future__ import annotations

import io
import re

import pytest
from pypdf import PdfReader

from tests.browser import raw_token, sign_in_to_dashboard, skip_without_chromium
from tests.metrics import scenario

skip_without_chromium()

from axe_playwright_python.sync_playwright import Axe  # noqa: E402
from playwright.sync_api import expect  # noqa: E402

TIMEOUT_MS = 10000
AXE = Axe()


@pytest.fixture
def history(snapshot_world):
    return snapshot_world(scenario.mixed_history)


@pytest.fixture
def page(browser, server, metrics_app):
    server.app = metrics_app
    context = browser.new_context(viewport={"width": 1100, "height": 1400})
    context.set_default_timeout(TIMEOUT_MS)
    opened = context.new_page()
    yield opened
    context.close()


def grave_problems(page) -> list[str]:
    results = AXE.run(page)
    grave = [v for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    return [f"{v['id']} ({v['impact']}): {v['help']} -> {[n['target'] for n in v['nodes']]}" for v in grave]


def test_the_pack_opens_from_the_dashboard_and_prints_cleanly(page, server, history, token, shots, tmp_path):
    sign_in_to_dashboard(page, server, raw_token(token("NCLCC", "leader", sub="chief@nclcc")))
    expect(page).to_have_url(re.compile(r"/dashboard$"))
    page.get_by_label("Threat area").select_option("county_lines")
    page.get_by_role("button", name="Show figures").click()
    expect(page).to_have_url(re.compile(r"threat_area=county_lines"))

    page.get_by_role("link", name="Evidence pack (print view)").click()
    expect(page).to_have_url(re.compile(r"/dashboard/evidence-pack\?.*threat_area=county_lines"))
    expect(page.get_by_role("heading", level=1)).to_contain_text("Inspection evidence pack")
    expect(page.locator("#highest-marking")).to_have_text("OFFICIAL-SENSITIVE")
    expect(page.locator("#reader-clearance")).to_contain_text("OFFICIAL-SENSITIVE")
    expect(page.get_by_role("heading", name=re.compile(history["a"]["reference"]))).to_be_visible()
    assert page.get_by_text(history["e"]["reference"]).count() == 0  # firearms: not in a county lines pack
    assert grave_problems(page) == []
    page.screenshot(path=str(tmp_path / "evidence-pack-screen.png"))

    # Keyboard: the skip link first, then the pack's two links.
    page.reload()  # focus from the top of the page
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to main content")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Back to the dashboard")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Download the PDF")).to_be_focused()

    # The navigation is there on screen, and gone when printed.
    nav = page.get_by_role("navigation", name="Evidence pack")
    expect(nav).to_be_visible()
    expect(nav.get_by_role("link", name="Download the PDF")).to_be_visible()
    page.set_viewport_size({"width": 794, "height": 1123})  # A4 at 96 dpi
    page.emulate_media(media="print")
    expect(nav).to_be_hidden()
    expect(page.locator(".site-header")).to_be_hidden()
    expect(page.locator("#marking")).to_be_visible()
    page.screenshot(path=str(shots / "leaders-4-evidence-pack.png"))

    printed = PdfReader(io.BytesIO(page.pdf(format="A4", print_background=True)))
    texts = [" ".join(p.extract_text().split()) for p in printed.pages]
    everything = " ".join(texts)
    assert "Back to the dashboard" not in everything and "Download the PDF" not in everything
    assert history["a"]["reference"] in everything and history["c"]["reference"] in everything
    # A4, and each section starts a page of its own.
    width, height = float(printed.pages[0].mediabox.width), float(printed.pages[0].mediabox.height)
    assert abs(width - 595.3) < 1.5 and abs(height - 841.9) < 1.5  # A4 in points
    starts = [
        next(i for i, t in enumerate(texts) if heading in t) for heading in ("3. Results", "5. What was sent", "6. How")
    ]
    assert all(texts[i].startswith(("OFFICIAL-SENSITIVE", "3.", "5.", "6.")) for i in starts), [
        texts[i][:40] for i in starts
    ]
    assert starts == sorted(set(starts))

    # The PDF from the same page's link.
    page.emulate_media(media="screen")
    href = nav.get_by_role("link", name="Download the PDF").get_attribute("href")
    pdf = page.request.get(server.url + href)
    assert pdf.status == 200 and pdf.headers["content-type"] == "application/pdf"
    text = " ".join(" ".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.body())).pages).split())
    assert history["a"]["reference"] in text and "Scope: County lines." in text
    (tmp_path / "pack.pdf").write_bytes(pdf.body())


def test_the_apis_html_opens_styled_and_clean(page, server, history, token):
    """The HTML from the API, as saved by a script and opened: styled by its inline stylesheet
    (allowed by the CSP's hash: no violation reported), and clean under axe-core."""
    problems: list[str] = []
    page.on("console", lambda message: message.type == "error" and problems.append(message.text))
    page.set_extra_http_headers({"Authorization": f"Bearer {raw_token(token('NCLCC', 'leader'))}"})
    page.goto(server.url + "/api/v1/metrics/evidence-pack")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Inspection evidence pack")
    assert page.get_by_role("navigation").count() == 0  # no dashboard links from the API
    background = page.locator(".pack-table thead th").first.evaluate("e => getComputedStyle(e).backgroundColor")
    assert background == "rgb(238, 242, 246)"
    assert problems == [] and grave_problems(page) == []

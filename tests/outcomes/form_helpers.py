"""Driving the recipient web form through Flask's test client, as a browser without JavaScript
would: open the link, Continue, read the check page, Change or Send return."""

from __future__ import annotations

import html
import re
from urllib.parse import urlsplit


def form_path(outcomes_client, token, return_id: str, org: str = "GMP") -> str:
    link = outcomes_client.get(f"/api/v1/returns/{return_id}", headers=token(org, "recipient")).get_json()
    url = urlsplit(link["form_url"])
    assert url.path.startswith("/form/")
    return url.path


def outcomes_of(outcomes_client, token, return_id: str, org: str = "GMP") -> list[dict]:
    response = outcomes_client.get(f"/api/v1/returns/{return_id}/outcomes", headers=token(org, "recipient"))
    assert response.status_code == 200
    return response.get_json()


def page_text(response) -> str:
    """The words on the page, without the markup."""
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.get_data(as_text=True))))


def hidden_value(response, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', response.get_data(as_text=True))
    assert found, f"no hidden field {name}"
    return html.unescape(found.group(1))


def csrf_token_of(response) -> str:
    return hidden_value(response, "csrf_token")


def form_data(csrf: str, **changes) -> dict:
    """A complete, valid final return as the form sends it; ``...`` leaves a field out."""
    data = {
        "csrf_token": csrf,
        "based_on": "0",  # the form showed no version yet
        "status": "final",
        "actions": ["enforcement", "safeguarding"],
        "priority": "high",
        "tasking_forum": "GMP SOC tasking",
        "results.arrests": "3",
        "results.people_safeguarded": "2",
        "results.children_safeguarded": "1",
        "results.drugs_seized_grams": "120.5",
        "results.cash_seized_gbp": "£4,500",
        "attribution": "direct",
        "strands": ["pursue", "protect"],
        "intelligence_feedback.usefulness": "4",
        "intelligence_feedback.accuracy": "confirmed",
        "intelligence_feedback.timeliness": "late_but_useful",
        "comments": "Warrant executed on day 3.",
        "filer_name": "Sam Patel",
        "filer_role": "DS, Organised Crime Unit",
    }
    data.update({key.replace("__", "."): value for key, value in changes.items()})
    return {k: v for k, v in data.items() if v is not ...}


def error_links(response) -> list[str]:
    """The error summary's links, in order (the ids of the fields they go to)."""
    summary = re.search(r'<div class="govuk-error-summary".*?</ul>', response.get_data(as_text=True), re.S)
    assert summary, "no error summary"
    return re.findall(r'<a href="#([^"]+)">', summary.group(0))


def is_check_page(response) -> bool:
    return response.status_code == 200 and "Check your answers before sending your return" in page_text(response)


def send(outcomes_client, path: str, check_page, **kwargs):
    """Send return from a check page."""
    data = {"csrf_token": csrf_token_of(check_page), "answers": hidden_value(check_page, "answers")}
    return outcomes_client.post(f"{path}/send", data=data, **kwargs)


def file_through_form(outcomes_client, path: str, **changes):
    """Open the form, Continue with a valid return (with ``changes``), Send return."""
    csrf = csrf_token_of(outcomes_client.get(path))
    check_page = outcomes_client.post(path, data=form_data(csrf, **changes))
    assert is_check_page(check_page), page_text(check_page)[:2000]
    return send(outcomes_client, path, check_page)

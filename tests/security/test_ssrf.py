"""Finding of the penetration test: an admin could point a webhook at 169.254.169.254,
0x7f000001, [::1] or a Redis port, and the delivery error then said what answered. Webhook URLs
must now be https and resolve only to public addresses, checked when set and before each send,
and the request goes to the address that was checked."""

from __future__ import annotations

import dataclasses
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
import responses
from sqlalchemy import func, select, update
from standardwebhooks import Webhook

from services import settings_for
from services.dissemination.models import Organisation, OutboxEvent
from shared import netguard, webhook_secrets
from shared.notify import NotificationError, send_webhook
from shared.service import set_runtime
from tests.dissemination.helpers import issue_package
from tests.outcomes.chase_helpers import issue_return, seed_organisation
from tests.outcomes.test_chasing import chase, chases  # noqa: F401 - the chase fixture

# (URL, what its host resolves to in the test resolver when it is a name)
REFUSED = [
    ("https://169.254.169.254/latest/meta-data/", None),
    ("https://0x7f000001/hook", None),
    ("https://2130706433/hook", None),
    ("https://0177.0.0.1/hook", None),
    ("https://[::1]/hook", None),
    ("https://[::ffff:169.254.169.254]/hook", None),
    ("https://0.0.0.0/hook", None),
    ("https://[::]/hook", None),
    ("https://[fe80::1]/hook", None),
    ("https://224.0.0.1/hook", None),
    ("https://240.0.0.1/hook", None),
    ("https://127.0.0.1:6379/", None),
    ("https://10.1.2.3/hook", None),
    ("http://hooks.gmp.example/hook", None),
    ("https://metadata.gmp.example/hook", "169.254.169.254"),
    ("https://redis.gmp.example:6379/", "127.0.0.1"),
    ("https://v6.gmp.example/hook", "::1"),
    ("https://mixed.gmp.example/hook", ["93.184.216.34", "10.0.0.1"]),
]
REFUSED_IDS = [url.split("//", 1)[1].split("/", 1)[0] or url for url, _ in REFUSED]
# Refused even with WEBHOOK_ALLOW_PRIVATE=true.
ALWAYS_REFUSED = [
    "https://169.254.169.254/",
    "http://169.254.169.254/",
    "https://0x7f000001.0/",
    "https://0.0.0.0/",
    "http://[fe80::1]/",
    "http://224.0.0.1/",
    "http://[::ffff:169.254.169.254]/",
]


def organisation_events(session, code="GMP") -> int:
    return session.scalar(
        select(func.count())
        .select_from(OutboxEvent)
        .where(OutboxEvent.type == "organisation.updated", OutboxEvent.aggregate_id == code)
    )


def legacy_webhook(app, session, url: str, code="GMP", email=None) -> None:
    """A webhook stored before the guard existed (with a signing secret, so only the guard stops it)."""
    sealed = webhook_secrets.new_sealed(app.extensions["settings"])
    session.execute(
        update(Organisation)
        .where(Organisation.code == code)
        .values(webhook_url=url, webhook_secret_sealed=sealed, email=email)
    )
    session.commit()


def outbound(consumer) -> list[str]:
    """Requests the services made, other than events to the stand-in consumer."""
    return [call.request.url for call in responses.calls if not call.request.url.startswith(consumer.url)]


@pytest.mark.parametrize(("url", "resolves_to"), REFUSED, ids=REFUSED_IDS)
def test_refused_when_set(client, token, session, resolver, url, resolves_to):
    if resolves_to:
        resolver[url.split("//")[1].split("/")[0].split(":")[0]] = resolves_to
    before = organisation_events(session)
    response = client.patch(
        "/api/v1/organisations/GMP", json={"webhook_url": url, "name": "Changed Name"}, headers=token(roles="admin")
    )
    assert response.status_code == 422
    assert list(response.get_json()["errors"]["json"]) == ["webhook_url"]
    organisation = client.get("/api/v1/organisations/GMP", headers=token()).get_json()
    assert organisation["webhook_url"] is None and organisation["name"] != "Changed Name"  # nothing changed
    assert organisation_events(session) == before


@pytest.mark.parametrize("url", ["https://169.254.169.254/", "https://0x7f000001/", "https://[::1]/"])
def test_refused_when_an_organisation_is_created(client, token, url):
    body = {"code": "NCA", "name": "National Crime Agency", "kind": "national", "webhook_url": url}
    response = client.post("/api/v1/organisations", json=body, headers=token(roles="admin"))
    assert response.status_code == 422 and "webhook_url" in response.get_json()["errors"]["json"]
    assert client.get("/api/v1/organisations/NCA", headers=token()).status_code == 404


def test_the_refusal_says_why(client, token, resolver):
    admin = token(roles="admin")

    def problem(url):
        return client.patch("/api/v1/organisations/GMP", json={"webhook_url": url}, headers=admin).get_json()["errors"][
            "json"
        ]["webhook_url"][0]

    assert "https" in problem("http://hooks.gmp.example/in")
    assert "public addresses" in problem("https://0x7f000001/")
    assert "link-local" in problem("https://169.254.169.254/")
    resolver["nowhere.gmp.example"] = None
    assert "does not resolve" in problem("https://nowhere.gmp.example/in")


@responses.activate
@pytest.mark.parametrize(("url", "resolves_to"), REFUSED, ids=REFUSED_IDS)
def test_refused_when_sent(app, client, token, session, run_jobs, consumer, resolver, url, resolves_to):
    responses.add_passthru("http://127.0.0.1")
    if resolves_to:
        resolver[url.split("//")[1].split("/")[0].split(":")[0]] = resolves_to
    legacy_webhook(app, session, url)
    package = issue_package(client, token(), recipients=["GMP"])
    run_jobs()
    assert outbound(consumer) == []
    row = client.get(f"/api/v1/packages/{package['id']}/disseminations", headers=token()).get_json()[0]
    assert row["status"] == "delivery_failed"
    assert row["delivery_error"] == "webhook: webhook address not allowed"


@responses.activate
def test_a_name_that_turns_private_after_it_was_set_is_refused_when_sent(
    client, token, run_jobs, consumer, resolver, mailbox
):
    responses.add_passthru("http://127.0.0.1")
    response = client.patch(
        "/api/v1/organisations/GMP", json={"webhook_url": "https://hooks.gmp.example/in"}, headers=token(roles="admin")
    )
    assert response.status_code == 200
    resolver["hooks.gmp.example"] = "169.254.169.254"  # DNS changed since
    package = issue_package(client, token(), recipients=["GMP"])
    run_jobs()
    assert outbound(consumer) == []
    row = client.get(f"/api/v1/packages/{package['id']}/disseminations", headers=token()).get_json()[0]
    assert row["status"] == "delivered" and row["delivery_channel"] == "email"  # the other contact
    assert [m["To"] for m in mailbox()] == ["outcomes.gmp@directory.invalid"]


@responses.activate
@pytest.mark.parametrize(
    "url",
    [
        "https://0x7f000001/chase",
        "https://169.254.169.254/chase",
        "https://[::1]/chase",
        "https://2130706433/chase",
        "https://0177.0.0.1/chase",
    ],
)
def test_chases_are_refused_when_sent(chase, outcomes_app, outcomes_client, token, consumer, mailbox, url):  # noqa: F811
    responses.add_passthru("http://127.0.0.1")
    seed_organisation(outcomes_app, webhook_url=url)
    _, sweep_and_send = chase
    return_id = issue_return(outcomes_app, due_in_seconds=10)
    sweep_and_send(8.5)
    assert outbound(consumer) == []
    [entry] = chases(outcomes_client, token, return_id)
    assert entry["result"] == "sent_fallback" and entry["channel"] == "email"
    assert "webhook address not allowed" in entry["error"]


def test_the_request_goes_to_the_address_that_was_checked(resolver, monkeypatch):
    """DNS rebinding: the name is public when checked and loopback a moment later. The request
    is made to the checked address; the name is not looked up again."""
    import urllib3.util.connection

    lookups = []

    def rebinding():
        lookups.append(len(lookups))
        return "93.184.216.34" if len(lookups) == 1 else "127.0.0.1"

    resolver["rebind.gmp.example"] = rebinding
    connected = []

    def create_connection(address, *args, **kwargs):
        connected.append(address)
        raise ConnectionRefusedError("the test has no network")

    monkeypatch.setattr(urllib3.util.connection, "create_connection", create_connection)
    settings = settings_for("dissemination")
    with pytest.raises(NotificationError) as raised:
        send_webhook(
            settings,
            "https://rebind.gmp.example/in",
            {"event": "test"},
            sealed_secret=webhook_secrets.new_sealed(settings),
            message_id="msg_1",
        )
    assert str(raised.value) == "webhook unreachable"
    assert connected == [("93.184.216.34", 443)] and len(lookups) == 1


@responses.activate
def test_a_failed_delivery_records_a_generic_reason_never_what_answered(client, token, session, run_jobs):
    responses.add_passthru("http://127.0.0.1")
    admin = token(roles="admin")
    hook, other = "https://hooks.gmp.example/in", "https://hooks.mps.example/in"
    client.patch("/api/v1/organisations/GMP", json={"webhook_url": hook, "email": None}, headers=admin)
    client.patch("/api/v1/organisations/MPS", json={"webhook_url": other, "email": None}, headers=admin)
    responses.add(responses.POST, hook, status=500, body="-ERR redis_version:7.2.4 wrong protocol")
    responses.add(responses.POST, other, body=requests.ConnectionError("SSH-2.0-OpenSSH_9.6 banner"))
    package = issue_package(client, token(), recipients=["GMP", "MPS"])
    run_jobs()
    rows = {
        r["organisation"]: r
        for r in client.get(f"/api/v1/packages/{package['id']}/disseminations", headers=token()).get_json()
    }
    assert rows["GMP"]["delivery_error"] == "webhook: webhook answered HTTP 500"
    assert rows["MPS"]["delivery_error"] == "webhook: webhook unreachable"


class Receiver:
    """A force's webhook receiver on a loopback port (plain http)."""

    def __init__(self):
        self.requests: list[tuple[dict, bytes]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                owner.requests.append((dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/nclcc"


def test_with_webhook_allow_private_a_loopback_http_webhook_is_allowed(app, client, token, run_jobs, monkeypatch):
    receiver = Receiver()
    try:
        monkeypatch.setenv("WEBHOOK_ALLOW_PRIVATE", "true")
        set_runtime("dissemination", None)  # jobs read the environment again
        app.extensions["settings"] = dataclasses.replace(app.extensions["settings"], webhook_allow_private=True)
        admin = token(roles="admin")
        response = client.patch("/api/v1/organisations/GMP", json={"webhook_url": receiver.url}, headers=admin)
        assert response.status_code == 200
        secret = response.get_json()["webhook_secret"]
        package = issue_package(client, token(), recipients=["GMP"])
        run_jobs()
        [(headers, body)] = receiver.requests
        assert Webhook(secret).verify(body, headers)["reference"] == package["reference"]
        for url in ALWAYS_REFUSED:
            response = client.patch("/api/v1/organisations/GMP", json={"webhook_url": url}, headers=admin)
            assert response.status_code == 422, url
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
        set_runtime("dissemination", None)


def test_without_it_the_same_loopback_webhook_is_refused(client, token):
    response = client.patch(
        "/api/v1/organisations/GMP", json={"webhook_url": "http://127.0.0.1:8080/nclcc"}, headers=token(roles="admin")
    )
    assert response.status_code == 422


@pytest.mark.parametrize(
    ("spelling", "address"),
    [
        ("0x7f000001", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("0xa9fea9fe", "169.254.169.254"),
        ("2852039166", "169.254.169.254"),
        ("0251.0376.0251.0376", "169.254.169.254"),
        ("93.184.216.34", "93.184.216.34"),
    ],
)
def test_integer_hex_and_octal_spellings_are_read_as_the_resolver_reads_them(spelling, address):
    assert str(netguard.literal_address(spelling)) == address


def test_every_spelling_is_refused_by_the_guard_itself():
    for url, resolves_to in REFUSED:
        if resolves_to is None:
            with pytest.raises(netguard.AddressNotAllowed):
                netguard.check_url(url, allow_private=False)
    for url in ALWAYS_REFUSED:
        with pytest.raises(netguard.AddressNotAllowed):
            netguard.check_url(url, allow_private=True)
    assert netguard.check_url("https://93.184.216.34/in", allow_private=False).address == "93.184.216.34"
    assert json.dumps(netguard.check_url("http://[::1]:8080/", allow_private=True).address) == '"::1"'

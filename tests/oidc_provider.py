"""A real OpenID Connect provider for the sign-in tests: ``oidc-provider-mock`` on a loopback
port, wrapped so the tests can see what the relying party sent it (the PKCE challenge and
verifier). Nothing of the flow is mocked: discovery, the authorization code, the token exchange
and the signed ID token are the provider's."""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import requests

CLIENT_ID = "nclcc-pages"
CLIENT_SECRET = "test-client-secret-of-the-pages"


@dataclass
class Provider:
    issuer: str
    authorize_queries: list[dict] = field(default_factory=list)
    token_requests: list[dict] = field(default_factory=list)

    def settings(self) -> dict:
        return {"oidc_issuer": self.issuer, "oidc_client_id": CLIENT_ID, "oidc_client_secret": CLIENT_SECRET}

    def set_user(self, sub: str, **claims) -> None:
        response = requests.put(f"{self.issuer}/users/{sub}", json=claims, timeout=10)
        assert response.status_code == 204, response.text

    def authorize(self, authorize_url: str, sub: str) -> str:
        """The person signs in at the provider as ``sub``: the address it sends the browser back to."""
        response = requests.post(authorize_url, data={"sub": sub}, allow_redirects=False, timeout=10)
        assert response.status_code == 302, response.text
        return response.headers["Location"]


class _Recorder:
    def __init__(self, app, provider: Provider):
        self.app = app
        self.provider = provider

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/oauth2/authorize":
            self.provider.authorize_queries.append(
                {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
            )
        if path == "/oauth2/token":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length)
            environ["wsgi.input"] = io.BytesIO(body)
            self.provider.token_requests.append({k: v[0] for k, v in parse_qs(body.decode()).items()})
        return self.app(environ, start_response)


def start_provider(**options):
    """(provider, stop): the provider served on localhost; ``options`` go to oidc_provider_mock.app,
    e.g. ``access_token_max_age=timedelta(...)`` (the ID token's lifetime too)."""
    import oidc_provider_mock
    from werkzeug.serving import make_server

    options.setdefault("require_nonce", True)
    options.setdefault("access_token_max_age", timedelta(minutes=10))
    app = oidc_provider_mock.app(**options)
    server = make_server("localhost", 0, app, threaded=True)
    provider = Provider(issuer=f"http://localhost:{server.server_port}")
    server.app = _Recorder(server.app, provider)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()

    def stop():
        server.shutdown()
        server.server_close()

    return provider, stop


def callback_path(location: str) -> str:
    parts = urlsplit(location)
    return f"{parts.path}?{parts.query}"

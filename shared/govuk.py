"""GOV.UK Frontend's stylesheet (``shared/static/govuk``, see its README) and what the pages about
a package share (``marking.css``, ``templates/govuk/_marking.html``: the protective marking banner),
served by each service whose pages use the Design System's markup: the outcomes form, the
recipients' pages."""

from __future__ import annotations

from flask import Blueprint, Flask

bp = Blueprint("govuk", __name__, static_folder="static/govuk", template_folder="templates")


def init_app(app: Flask, url_prefix: str) -> None:
    """Serve it at ``<url_prefix>/govuk/`` (outside any audited prefix: a stylesheet is no read of anything)."""
    app.register_blueprint(bp, url_prefix=url_prefix)

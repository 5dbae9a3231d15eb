"""Keeping credentials carried in URLs out of logs.

A form link (``/form/<token>``) is a bearer credential for 120 days: whoever holds it may file
that return. Anything that writes a URL to a log passes it through ``mask_form_tokens``.
"""

from __future__ import annotations

import re

FORM_TOKEN_PLACEHOLDER = "<token>"
# /form/<token> or, percent-encoded in a query string or a Referer, %2Fform%2F<token>.
_FORM_TOKEN = re.compile(r"(?i)(/|%2f)(form)(/|%2f)(?:(?!%2f)[^/?#&;\s\"'])+")


def mask_form_tokens(text: str) -> str:
    """``text`` with every form link's token replaced by a placeholder."""
    if "form" not in text.lower():
        return text
    return _FORM_TOKEN.sub(lambda m: f"{m[1]}{m[2]}{m[3]}{FORM_TOKEN_PLACEHOLDER}", text)


def masked(value):
    """A log argument with form tokens masked, if it is text."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return mask_form_tokens(value) if isinstance(value, str) else value

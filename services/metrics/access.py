"""Leadership reads everything; a recipient only its own organisation's figures; anyone else
gets 403."""

from __future__ import annotations

from flask_smorest import abort

from shared.audit import audit_detail
from shared.auth import current_principal

LEADERS = ("leader", "admin")


def is_leader() -> bool:
    return current_principal().has_any(LEADERS)


def require_leader() -> None:
    if not is_leader():
        audit_detail("refused: leadership figures")
        abort(403, message="Only leadership may read these figures.")


def require_organisation(code: str) -> None:
    """Leaders read any organisation; a recipient only its own."""
    principal = current_principal()
    if is_leader():
        return
    if principal.has_any(("recipient",)) and principal.org == code:
        return
    audit_detail(f"refused: {principal.org} asked for {code}")
    abort(403, message="You may read only your own organisation's figures.")

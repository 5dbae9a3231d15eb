"""Leadership (the centre's leaders and admins) reads everything; a recipient only its own
organisation's figures; anyone else gets 403. Centre roles in a force's token count for nothing
(``shared.auth``)."""

from __future__ import annotations

from flask_smorest import abort

from shared.audit import audit_detail
from shared.auth import current_principal


def is_leader() -> bool:
    return current_principal().is_leader


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

"""The errors domain modules raise; ``shared.api`` answers each in the one error shape.

Domain functions know the rules, not HTTP: a state that forbids the change is a ``Conflict``
(409, its message shown as it is), a value that breaks a rule needing the database is
``Invalid`` (422 naming each field, like schema validation).
"""

from __future__ import annotations


class Conflict(Exception):
    """The change conflicts with the current state (answered 409 with this message)."""

    @property
    def message(self) -> str:
        return str(self)


class Invalid(Exception):
    """Fields break a rule beyond the schema's (answered 422 naming each field)."""

    def __init__(self, problems: dict[str, str]):
        super().__init__(problems)
        self.problems = problems

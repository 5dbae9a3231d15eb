"""The one guard against hostile input, run before every view of every service.

What it refuses would otherwise reach the database or the JSON parser and end in a 500:
bodies over ``MAX_CONTENT_LENGTH`` (413, also when the body comes chunked), JSON that is not
JSON (400, ``NaN`` and ``Infinity`` included), JSON nested deeper than ``MAX_JSON_DEPTH``, a NUL
character anywhere (PostgreSQL cannot store one in text), lone UTF-16 surrogates (they cannot be
encoded), integers in the path beyond PostgreSQL's ``integer``, and query parameters the
OpenAPI document does not list for the operation (422, naming the field). Query integers are
bounded by the schemas that read them (``page`` by the pagination schema). Query strings of the
pages (dashboard, web form) are left to those pages, which answer in HTML.

``/internal/events`` reads its own body, after checking the signature headers: see
``shared.inbox``; it calls ``load_json`` itself.
"""

from __future__ import annotations

import json

from flask import Flask, current_app, request
from flask_smorest import abort

MAX_CONTENT_LENGTH = 1024 * 1024
MAX_CONTENT_LENGTH_TEXT = "1 MiB"
MAX_JSON_DEPTH = 32
# The largest id a path may carry: PostgreSQL's `integer`.
MAX_ID = 2**31 - 1
MAX_REPORTED = 20

NUL_MESSAGE = "Must not contain a NUL character (\\u0000)."
SURROGATE_MESSAGE = "Must be valid Unicode: a lone surrogate (\\ud800-\\udfff) is not a character."
DEPTH_MESSAGE = f"Nested too deeply: at most {MAX_JSON_DEPTH} levels of arrays and objects."
ID_MESSAGE = f"Must be between 0 and {MAX_ID}."
# A JSON Schema pattern for "no NUL character", documented on every free-text string.
NO_NUL_PATTERN = "^[^\\x00]*$"

FORM_MIMETYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")
# Views that check something (a signature) before they may read the body; they call load_json.
READS_OWN_BODY = {"/internal/events"}


# Where the parsed JSON body is kept for the rest of this request (not in ``g``, which a test
# client may share between requests).
JSON_BODY = "shared.guard.json_body"


def init_app(app: Flask) -> None:
    app.config["MAX_CONTENT_LENGTH"] = MAX_CONTENT_LENGTH
    # First of the app's before_request hooks, so nothing reads the request before it is checked.
    app.before_request_funcs.setdefault(None, []).insert(0, guard_request)


def guard_request() -> None:
    _check_path()
    _check_query()
    _check_headers()
    if request.method not in BODY_METHODS:
        return
    rule = request.url_rule.rule if request.url_rule else None
    if rule in READS_OWN_BODY:
        return
    if request.content_length is None and request.environ.get("wsgi.input_terminated"):
        # A chunked body: werkzeug stops reading at MAX_CONTENT_LENGTH without a word, so a
        # body that reaches the limit is refused here rather than handed on cut short.
        if len(request.get_data(cache=True)) >= MAX_CONTENT_LENGTH:
            abort(413)
    if request.mimetype in FORM_MIMETYPES:
        _check_form()
    elif request.is_json:
        data = request.get_data(cache=True)  # 413 past MAX_CONTENT_LENGTH, chunked or not
        if data.strip():
            # Parsed once: the views' argument parser reads this value (shared.api.GuardedParser).
            request.environ[JSON_BODY] = load_json(data)


def load_json(data: bytes):
    """The JSON value of a request body, or an abort: 400 when it is not JSON, 422 naming the
    field when it nests too deeply or holds a NUL or a lone surrogate."""
    try:
        value = json.loads(data, parse_constant=_refuse_constant)
    except RecursionError:
        abort(422, errors={"json": {"body": [DEPTH_MESSAGE]}})
    except ValueError as error:  # UnicodeDecodeError is one
        abort(400, message=f"The body is not valid JSON: {error}.")
    problems = json_problems(value)
    if problems:
        abort(422, errors={"json": problems})
    return value


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON value")


def json_problems(value) -> dict:
    """Errors by field (nested like marshmallow's) for every string or key holding a NUL or a lone
    surrogate, and for anything nested deeper than MAX_JSON_DEPTH. Walked without recursion."""
    problems: dict = {}
    count = 0
    stack: list[tuple[object, tuple[str, ...], int]] = [(value, (), 0)]
    while stack and count < MAX_REPORTED:
        node, path, depth = stack.pop()
        if isinstance(node, str):
            message = text_problem(node)
            if message:
                _put(problems, path or ("body",), message)
                count += 1
            continue
        if not isinstance(node, dict | list):
            continue
        if depth >= MAX_JSON_DEPTH:
            _put(problems, path[:1] or ("body",), DEPTH_MESSAGE)
            count += 1
            continue
        if isinstance(node, dict):
            for key, item in node.items():
                message = text_problem(key)
                if message:
                    _put(problems, (*path, printable(key)), message)
                    count += 1
                stack.append((item, (*path, printable(key)), depth + 1))
        else:
            stack.extend((item, (*path, str(index)), depth + 1) for index, item in enumerate(node))
    return problems


def text_problem(text: str) -> str | None:
    if "\x00" in text:
        return NUL_MESSAGE
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return SURROGATE_MESSAGE
    return None


def printable(name: str) -> str:
    """A field name safe to echo back, log and store in the audit log."""
    return name.replace("\x00", "\\u0000").encode("utf-8", "backslashreplace").decode("utf-8")


def _put(problems: dict, path: tuple[str, ...], message: str) -> None:
    node = problems
    for part in path[:-1]:
        existing = node.get(part)
        if not isinstance(existing, dict):
            existing = node[part] = {}
        node = existing
    current = node.get(path[-1])
    if isinstance(current, list):
        if message not in current:
            current.append(message)
    elif current is None:
        node[path[-1]] = [message]


def _check_path() -> None:
    view_args = request.view_args or {}
    errors: dict[str, list[str]] = {}
    for name, value in view_args.items():
        if isinstance(value, str) and (problem := text_problem(value)):
            errors[name] = [problem]
        elif isinstance(value, int) and not 0 <= value <= MAX_ID:
            errors[name] = [ID_MESSAGE]
    if not errors and "\x00" in request.path:
        errors["path"] = [NUL_MESSAGE]
    if errors:
        abort(422, errors={"path": errors})


def _check_query() -> None:
    """For the operations the OpenAPI document describes. The pages (dashboard, web form) read
    their own few parameters and name what is wrong in the page itself."""
    known = documented_query_parameters(request.url_rule.rule, request.method) if request.url_rule else None
    if known is None:
        return
    errors: dict[str, list[str]] = {}
    for key, values in request.args.lists():
        message = text_problem(key) or next(filter(None, map(text_problem, values)), None)
        if message is None and key not in known:
            # As with unknown body fields: a mistyped filter must not quietly list everything.
            message = "Unknown parameter." + (f" Known: {', '.join(sorted(known))}." if known else "")
        if message:
            errors[printable(key)] = [message]
    if errors:
        abort(422, errors={"query": errors})


def documented_query_parameters(rule: str, method: str) -> frozenset[str] | None:
    """The query parameters the OpenAPI document gives an operation; None for a route it does
    not describe (the web form, the dashboard, health checks), whose views read what they need."""
    table = current_app.extensions.get("guard.query_parameters")
    if table is None:
        table = current_app.extensions["guard.query_parameters"] = _query_parameter_table()
    return table.get((rule, method.lower()))


def _query_parameter_table() -> dict[tuple[str, str], frozenset[str]]:
    from flask_smorest.spec.plugins import FlaskPlugin

    spec = current_app.extensions["api"].spec.to_dict()
    by_path = {FlaskPlugin.flaskpath2openapi(rule.rule): rule.rule for rule in current_app.url_map.iter_rules()}
    table = {}
    for path, operations in spec.get("paths", {}).items():
        rule = by_path.get(path)
        if rule is None:
            continue
        for method, operation in operations.items():
            if isinstance(operation, dict) and "responses" in operation:
                names = {p["name"] for p in operation.get("parameters", []) if p.get("in") == "query"}
                table[(rule, method)] = frozenset(names)
    return table


def _check_headers() -> None:
    # Header values are latin-1 strings; the ones a service stores must not hold a NUL.
    for name in ("Idempotency-Key",):
        value = request.headers.get(name)
        if value is not None and "\x00" in value:
            abort(422, errors={"headers": {name: [NUL_MESSAGE]}})


def _check_form() -> None:
    errors: dict[str, list[str]] = {}
    for key, values in request.form.lists():
        message = text_problem(key) or next(filter(None, map(text_problem, values)), None)
        if message:
            errors[printable(key)] = [message]
    if errors:
        abort(422, errors={"form": errors})

"""The flask-smorest ``Api`` every service uses, its base schema and its one error shape.

Every error answers ``{"code", "status", "message", "errors"}``; validation errors name each
field under ``errors.json`` (or ``errors.query``, ``errors.path``). Unknown fields are refused,
integers are strict (``1.5`` is not an integer), and a 405 keeps its ``Allow`` header. What the
OpenAPI document says matches what is checked: free-text strings exclude NUL, path integers stop
at ``guard.MAX_ID``, ``page`` at ``MAX_PAGE``, PATCH bodies need a field (``minProperties``),
and ``X-Pagination`` is a string holding JSON.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import flask_smorest.arguments
import flask_smorest.pagination
import marshmallow as ma
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.ext.marshmallow.common import resolve_schema_instance
from apispec.ext.marshmallow.openapi import OpenAPIConverter
from flask import Flask, jsonify
from flask_smorest import Api
from marshmallow import fields
from sqlalchemy import func, select
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select
from webargs.flaskparser import FlaskParser, is_json_request
from werkzeug.exceptions import HTTPException, InternalServerError, MethodNotAllowed
from werkzeug.routing import IntegerConverter, UnicodeConverter

from shared import guard
from shared.db import get_session
from shared.errors import Conflict, Invalid

log = logging.getLogger(__name__)

STATUS_MESSAGES = {
    400: "The request could not be read.",
    401: "A valid bearer token is required.",
    403: "Your roles do not allow this.",
    404: "Not found.",
    405: "Method not allowed here.",
    409: "This conflicts with the current state.",
    411: "Send a Content-Length header with the body.",
    413: f"The request body is larger than the {guard.MAX_CONTENT_LENGTH_TEXT} limit.",
    415: "Send JSON with Content-Type: application/json.",
    422: "The request has invalid fields: see errors.",
}

# Beyond the last page a list is empty; beyond this, the page number is refused (422) before
# the database is asked for an offset it cannot hold.
MAX_PAGE = 1_000_000

PAGINATION_HEADER_DOC = {
    "description": "Pagination metadata: a JSON object in a string, with total, total_pages and, when "
    "there are items, first_page, last_page and (within them) page, previous_page, next_page.",
    "schema": {
        "type": "string",
        "pattern": "^\\{.*\\}$",
        "example": '{"total": 57, "total_pages": 6, "first_page": 1, "last_page": 6, "page": 2, '
        '"previous_page": 1, "next_page": 3}',
    },
}


def _pagination_parameters_schema_factory(def_page, def_page_size, def_max_page_size):
    """flask-smorest's pagination schema, with the page size read from ``per_page`` as the
    spec names it (flask-smorest calls it ``page_size``)."""

    class PaginationParametersSchema(ma.Schema):
        class Meta:
            unknown = ma.EXCLUDE

        page = fields.Integer(load_default=def_page, validate=ma.validate.Range(min=1, max=MAX_PAGE))
        page_size = fields.Integer(
            data_key="per_page",
            load_default=def_page_size,
            validate=ma.validate.Range(min=1, max=def_max_page_size),
        )

        @ma.post_load
        def make_paginator(self, data, **_kwargs):
            return flask_smorest.pagination.PaginationParameters(**data)

    return PaginationParametersSchema


# flask-smorest offers no setting for the parameter's name; its paginate() looks the factory up
# in its module at call time, so replacing it there renames the parameter and its docs.
flask_smorest.pagination._pagination_parameters_schema_factory = _pagination_parameters_schema_factory


class GuardedParser(FlaskParser):
    """webargs' parser, taking the JSON body ``shared.guard`` has already parsed and checked,
    so a body is parsed once per request, not twice."""

    def _raw_load_json(self, req):
        if is_json_request(req) and guard.JSON_BODY in req.environ:
            return req.environ[guard.JSON_BODY]
        return super()._raw_load_json(req)


# Like the pagination factory above: flask-smorest's blueprints take their parser from this
# class attribute when a view is decorated, and every service imports this module first.
flask_smorest.arguments.ArgumentsMixin.ARGUMENTS_PARSER = GuardedParser()


class BaseSchema(ma.Schema):
    """Refuses unknown fields; shared by every request and response schema."""

    class Meta:
        unknown = ma.RAISE
        ordered = True


class UpdateSchema(BaseSchema):
    """A PATCH body: every field optional, at least one given (documented as minProperties)."""

    min_properties = 1

    @ma.validates_schema
    def at_least_one_field(self, data, **_kwargs):
        if not data:
            raise ma.ValidationError("Give at least one field to change.", field_name="body")


class StrictBoolean(fields.Boolean):
    """JSON true or false, nothing else (marshmallow's Boolean also takes 0, 1, "yes", "on"...)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class QueryBoolean(fields.Boolean):
    """A query-string boolean: the words true and false, as the OpenAPI document has them."""

    def _deserialize(self, value, attr, data, **kwargs):
        if value not in ("true", "false"):
            raise self.make_error("invalid")
        return value == "true"


def StrictInteger(**kwargs: Any) -> fields.Integer:  # noqa: N802 - reads like a field class
    """An integer field that refuses floats and strings in JSON bodies."""
    return fields.Integer(strict=True, **kwargs)


class _Converter(OpenAPIConverter):
    def schema2jsonschema(self, schema):
        jsonschema = super().schema2jsonschema(schema)
        minimum = getattr(resolve_schema_instance(schema), "min_properties", None)
        if minimum:
            jsonschema["minProperties"] = minimum
        return jsonschema


def _no_nul_pattern(self, field, ret, **_kwargs) -> dict:
    """Free-text strings say what the guard enforces: no NUL character."""
    types = ret.get("type")
    is_string = types == "string" or (isinstance(types, list) and "string" in types)
    if isinstance(field, fields.String) and is_string and not {"enum", "pattern", "format"} & ret.keys():
        return {"pattern": guard.NO_NUL_PATTERN}
    return {}


class _MarshmallowPlugin(MarshmallowPlugin):
    Converter = _Converter

    def init_spec(self, spec) -> None:
        super().init_spec(spec)
        assert self.converter is not None  # made by init_spec
        self.converter.add_attribute_function(_no_nul_pattern)


def _int_path_parameter(converter) -> dict:
    return {"type": "integer", "minimum": 0, "maximum": guard.MAX_ID}


def _string_path_parameter(converter) -> dict:
    # A path segment never holds '/' (it would be two segments), nor NUL (the guard refuses it).
    return {"type": "string", "minLength": 1, "pattern": "^[^\\x00/]+$"}


class ServiceApi(Api):
    """flask-smorest's Api with the error shape kept uniform for every status."""

    def __init__(self, app=None, **kwargs):
        kwargs.setdefault("spec_kwargs", {"marshmallow_plugin": _MarshmallowPlugin()})
        super().__init__(app, **kwargs)

    def _register_pagination_header(self):
        # flask-smorest documents the header as an object; it is a string holding JSON.
        self.spec.components.header("PAGINATION", PAGINATION_HEADER_DOC, lazy=True)

    def handle_http_exception(self, error: HTTPException):
        payload, code, headers = super().handle_http_exception(error)
        payload.setdefault("message", _message_for(error))
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            # flask-smorest builds a fresh response and would drop the Allow header.
            headers = dict(headers or {})
            headers["Allow"] = ", ".join(sorted(error.valid_methods))
        if code == 422 and "errors" in payload:
            payload["message"] = "Invalid fields: " + ", ".join(_field_names(payload["errors"]))
        return payload, code, headers


def _message_for(error: HTTPException) -> str:
    if error.code in STATUS_MESSAGES:
        return STATUS_MESSAGES[error.code]
    return error.description or error.name


def _field_names(errors: dict, prefix: str = "") -> list[str]:
    names: list[str] = []
    for location, value in errors.items():
        if isinstance(value, dict) and not prefix and location in ("json", "query", "form", "headers"):
            names.extend(_field_names(value, ""))
        elif isinstance(value, dict):
            nested = _field_names(value, f"{prefix}{location}.")
            names.extend(nested or [f"{prefix}{location}"])
        else:
            names.append(f"{prefix}{location}")
    return names


def make_api(app: Flask, title: str, description: str) -> ServiceApi:
    app.config.setdefault("API_TITLE", title)
    app.config.setdefault("API_VERSION", "1")
    app.config.setdefault("OPENAPI_VERSION", "3.0.3")
    app.config.setdefault("OPENAPI_URL_PREFIX", "/")
    app.config.setdefault("OPENAPI_JSON_PATH", "openapi.json")
    app.config.setdefault("OPENAPI_SWAGGER_UI_PATH", "docs")
    # Swagger UI's assets are served by the service itself (from the swagger-ui-bundle wheel),
    # so /docs works on a closed network.
    app.config.setdefault("OPENAPI_SWAGGER_UI_URL", "/docs/assets/")
    app.config.setdefault(
        "API_SPEC_OPTIONS",
        {
            "info": {"description": description},
            "components": {
                "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
            },
            "security": [{"bearerAuth": []}],
        },
    )
    api = ServiceApi(app)
    api.register_converter(IntegerConverter, _int_path_parameter)
    api.register_converter(UnicodeConverter, _string_path_parameter)
    _register_swagger_assets(app)
    _register_fallback_handlers(app, api)
    return api


def _register_swagger_assets(app: Flask) -> None:
    from flask import send_from_directory
    from swagger_ui_bundle import swagger_ui_path

    @app.get("/docs/assets/<path:filename>")
    def swagger_assets(filename: str):
        return send_from_directory(swagger_ui_path, filename, max_age=86400)


def _register_fallback_handlers(app: Flask, api: ServiceApi) -> None:
    def error_response(code: int, message: str, errors: dict | None = None):
        body = {"code": code, "status": _status_name(code), "message": message}
        if errors:
            body["errors"] = errors
        return jsonify(body), code

    @app.errorhandler(Conflict)
    def conflict(error: Conflict):
        get_session().rollback()
        return error_response(409, error.message)

    @app.errorhandler(Invalid)
    def invalid_fields(error: Invalid):
        get_session().rollback()
        try:
            invalid(error.problems)
        except HTTPException as answer:
            return api.handle_http_exception(answer)

    @app.errorhandler(IntegrityError)
    def integrity_error(error: IntegrityError):
        log.warning("integrity error: %s", error.orig)
        return error_response(409, "This conflicts with an existing record.")

    @app.errorhandler(DataError)
    def data_error(error: DataError):
        # The guard and the schemas refuse what the database cannot hold, naming the field; this
        # is the net under them, so that a value they missed is still a 4xx and changes nothing.
        log.warning("data error: %s", error.orig)
        return error_response(422, "A value is out of range or not allowed here.")

    @app.errorhandler(OperationalError)
    def database_unavailable(error: OperationalError):
        log.error("database error: %s", error.orig)
        return error_response(503, "The database is unavailable; try again shortly.")

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        if isinstance(error, HTTPException):
            return api.handle_http_exception(error)
        log.exception("unhandled error")
        return api.handle_http_exception(InternalServerError())


def _status_name(code: int) -> str:
    from http import HTTPStatus

    return HTTPStatus(code).phrase


def page_of(session: Session, query: Select, pagination_parameters, *, order_by=()) -> list:
    """One page of ``query``'s rows (``@blp.paginate()``), in ``order_by`` order; the total goes
    to the X-Pagination header."""
    pagination_parameters.item_count = session.scalar(select(func.count()).select_from(query.subquery()))
    return list(
        session.scalars(
            query.order_by(*order_by).offset(pagination_parameters.first_item).limit(pagination_parameters.page_size)
        )
    )


def invalid(errors: Mapping[str, str | list[str]], location: str = "json") -> None:
    """Answer 422 naming each field at fault, in the same shape as schema validation."""
    from flask_smorest import abort

    abort(422, errors={location: {field: [m] if isinstance(m, str) else m for field, m in errors.items()}})

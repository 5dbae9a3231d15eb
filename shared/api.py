"""The flask-smorest ``Api`` every service uses, its base schema and its one error shape.

Every error answers ``{"code", "status", "message", "errors"}``; validation errors name each
field under ``errors.json`` (or ``errors.query``). Unknown fields are refused, integers are
strict (``1.5`` is not an integer), and a 405 keeps its ``Allow`` header.
"""

from __future__ import annotations

import logging
from typing import Any

import flask_smorest.pagination
import marshmallow as ma
from flask import Flask, jsonify
from flask_smorest import Api
from marshmallow import fields
from sqlalchemy.exc import IntegrityError, OperationalError
from werkzeug.exceptions import HTTPException, InternalServerError, MethodNotAllowed

log = logging.getLogger(__name__)

STATUS_MESSAGES = {
    400: "The request could not be read.",
    401: "A valid bearer token is required.",
    403: "Your roles do not allow this.",
    404: "Not found.",
    405: "Method not allowed here.",
    409: "This conflicts with the current state.",
    415: "Send JSON with Content-Type: application/json.",
    422: "The request has invalid fields: see errors.",
}


def _pagination_parameters_schema_factory(def_page, def_page_size, def_max_page_size):
    """flask-smorest's pagination schema, with the page size read from ``per_page`` as the
    spec names it (flask-smorest calls it ``page_size``)."""

    class PaginationParametersSchema(ma.Schema):
        class Meta:
            unknown = ma.EXCLUDE

        page = fields.Integer(load_default=def_page, validate=ma.validate.Range(min=1))
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


class BaseSchema(ma.Schema):
    """Refuses unknown fields; shared by every request and response schema."""

    class Meta:
        unknown = ma.RAISE
        ordered = True


def StrictInteger(**kwargs: Any) -> fields.Integer:  # noqa: N802 - reads like a field class
    """An integer field that refuses floats and strings in JSON bodies."""
    return fields.Integer(strict=True, **kwargs)


class ServiceApi(Api):
    """flask-smorest's Api with the error shape kept uniform for every status."""

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

    @app.errorhandler(IntegrityError)
    def integrity_error(error: IntegrityError):
        log.warning("integrity error: %s", error.orig)
        return error_response(409, "This conflicts with an existing record.")

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


def invalid(errors: dict[str, str | list[str]], location: str = "json") -> None:
    """Answer 422 naming each field at fault, in the same shape as schema validation."""
    from flask_smorest import abort

    abort(422, errors={location: {field: [m] if isinstance(m, str) else m for field, m in errors.items()}})

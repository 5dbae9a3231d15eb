"""gunicorn's settings for every service: ``gunicorn --config python:shared.gunicorn_conf ...``
(Procfile, Dockerfile, docker-compose.yml). The command line adds the bind address, workers and
the app.

The access log goes to stdout through ``MaskingLogger``, which writes a form link's path as
``/form/<token>``: the token in it is a credential (see ``shared.redact``).
"""

from __future__ import annotations

from gunicorn.glogging import Logger

from shared.redact import mask_form_tokens, masked

accesslog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(L)ss'
logger_class = "shared.gunicorn_conf.MaskingLogger"


class MaskingLogger(Logger):
    """gunicorn's logger, with form tokens masked in every access-log atom (request line, path,
    query, Referer, headers, environ) and in the error log's messages."""

    def atoms(self, resp, req, environ, request_time):
        return {name: masked(value) for name, value in super().atoms(resp, req, environ, request_time).items()}

    def _masked_log(self, method, msg, *args, **kwargs):
        method(mask_form_tokens(str(msg)), *(masked(arg) for arg in args), **kwargs)

    def critical(self, msg, *args, **kwargs):
        self._masked_log(super().critical, msg, *args, **kwargs)

    def error(self, msg, *args, **kwargs):
        self._masked_log(super().error, msg, *args, **kwargs)

    def warning(self, msg, *args, **kwargs):
        self._masked_log(super().warning, msg, *args, **kwargs)

    def info(self, msg, *args, **kwargs):
        self._masked_log(super().info, msg, *args, **kwargs)

    def debug(self, msg, *args, **kwargs):
        self._masked_log(super().debug, msg, *args, **kwargs)

    def exception(self, msg, *args, **kwargs):
        self._masked_log(super().exception, msg, *args, **kwargs)

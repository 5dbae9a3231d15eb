"""gunicorn's settings for every service: ``gunicorn --config python:shared.gunicorn_conf ...``
(Procfile, Dockerfile, docker-compose.yml). The command line adds the bind address, workers and
the app.

The access log goes to stdout through ``MaskingLogger``, which writes a form link's path as
``/form/<token>``: the token in it is a credential (see ``shared.redact``).
"""

from __future__ import annotations

import sys

from gunicorn.glogging import Logger

from shared.procs import die_with_parent, exit_now
from shared.redact import mask_form_tokens, masked

accesslog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(L)ss'
logger_class = "shared.gunicorn_conf.MaskingLogger"
# gunicorn >= 25.1 opens a control socket at one path per user ($HOME/.gunicorn/gunicorn.ctl):
# the three services (and a second `make run`) would fight over it. supervisorctl, or compose,
# is the control interface.
control_socket_disable = True


def post_fork(server, worker):
    """A worker stops when its master dies, even by SIGKILL: left alone it would keep serving
    the old master's socket (and block the restarted master's bind) until it noticed, up to
    --timeout seconds later."""
    die_with_parent()


def worker_exit(server, worker):
    """A worker that has stopped serving ends at once, with the exit code gunicorn gave it (its
    master reads it), not after seconds of interpreter teardown (``shared.procs.exit_now``)."""
    error = sys.exc_info()[1]
    code = error.code if isinstance(error, SystemExit) else 1
    exit_now(code if isinstance(code, int) else (0 if code is None else 1))


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

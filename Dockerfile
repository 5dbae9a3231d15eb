# One image for every process of the project: the dissemination service (the default
# command), the RQ worker (`python -m services worker`), the RQ cron process
# (`python -m services cron`) and the one-shot migrate/seed step. docker-compose.yml picks
# the process per service.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed, unprivileged user; its home is the application directory.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home app

WORKDIR /app

COPY pyproject.toml Procfile ./
COPY shared/ shared/
COPY services/ services/
COPY tools/ tools/

# The runtime dependencies only: no `[test]` extra. The setuptools build leaves build/ and
# *.egg-info/ behind in /app; drop them. The sources stay root-owned (read-only to `app`);
# only var/ (SQLite files and the mail sink when no DATABASE_URL / MAIL_SINK_DIR is set)
# is writable.
RUN pip install . \
    && rm -rf build ./*.egg-info \
    && mkdir -p /app/var \
    && chown app:app /app/var

USER app

EXPOSE 5001

# No curl in the slim image: python's urllib fails (exit 1) on a refused connection, a
# timeout or any non-2xx answer. This is the image's liveness check; docker-compose.yml checks
# each web service's /readyz instead (its dependencies too).
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5001/healthz', timeout=3)"]

CMD ["gunicorn", "--config", "python:shared.gunicorn_conf", "--bind", "0.0.0.0:5001", "--workers", "3", "--timeout", "30", "services.dissemination:create_app()"]

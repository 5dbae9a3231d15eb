"""The leadership dashboard at /dashboard: one server-rendered page of figures for leaders.

A plain Flask blueprint (not part of the JSON API or its OpenAPI document). A leader signs in by
pasting a bearer token; it is verified with the same rules as the API and kept in Flask's signed
session cookie (HttpOnly, SameSite=Strict, 8 hours at most), and verified again on every request,
so an expired token ends the session. The page reads the same figures as the metrics API
(``services.metrics.figures``). There is no JavaScript: every chart is inline SVG built here and
drawn by the templates, with a title, a description and the numbers as text.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import jwt
from flask import Blueprint, Flask, current_app, redirect, render_template, request, session, url_for
from flask_wtf.csrf import CSRFError, CSRFProtect
from sqlalchemy import select

from services.metrics import figures
from services.metrics.api.metrics import package_query
from services.metrics.models import Fact
from services.metrics.schemas import THREAT_AREAS
from shared.auth import Principal, TokenError, verify_token
from shared.db import get_session

SERVICE_NAME = "NCLCC outcomes dashboard"
SESSION_KEY = "dashboard_token"
SIGNED_IN_AT = "dashboard_signed_in_at"
SESSION_LIFETIME = timedelta(hours=8)
# The token lives in the session cookie; browsers drop cookies over 4 KB without a word.
TOKEN_MAX_LENGTH = 3000
MONTH = re.compile(r"^([0-9]{4})-(0[1-9]|1[0-2])$")
EARLIEST_YEAR, LATEST_YEAR = 2000, 2099
MAX_MONTHS = 120
COMPLIANCE_ROWS_SHOWN = 15
RECENT_PACKAGES = 10

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard", template_folder="templates",
               static_folder="static/dashboard", static_url_path="/static")
csrf = CSRFProtect()

NOTICES = {
    "expired": "Your token or your 8-hour session has expired, so you have been signed out. Paste a token to "
               "carry on.",
    "invalid": "Your session is no longer valid. Paste your token again to sign in.",
    "signed-out": "You have signed out.",
}
VERDICT_LABELS = {
    "actioned": "Actioned",
    "no_action": "No action",
    "awaiting": "Awaiting returns",
    "overdue": "Overdue",
}
SOURCE_LABELS = {1: "Reliable", 2: "Untested", 3: "Not reliable"}
ASSESSMENT_LABELS = {
    "A": "Known directly",
    "B": "Known indirectly, corroborated",
    "C": "Known indirectly",
    "D": "Not known",
    "E": "Suspected false",
}
# The funnel's stages, in order, with the words a leader reads.
FUNNEL_STAGES = (
    ("recipients", "Sent to recipients"),
    ("delivered", "Delivered"),
    ("acknowledged", "Acknowledged"),
    ("final", "Final return filed"),
    ("actioned", "Reported action taken"),
)
TREND_SERIES = (
    ("recipients", "Sent to recipients", "series-sent"),
    ("final", "Final returns filed", "series-final"),
    ("actioned", "Reported action taken", "series-actioned"),
)


def init_app(app: Flask) -> None:
    """Registered by create_app: the blueprint, its session cookie and CSRF protection."""
    settings = app.extensions["settings"]
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Strict"
    # Secure only behind https, so the dashboard also works on http://127.0.0.1 in development.
    app.config["SESSION_COOKIE_SECURE"] = settings.public_urls.get("metrics", "").startswith("https")
    app.config["PERMANENT_SESSION_LIFETIME"] = SESSION_LIFETIME
    # Its own name and path: on one development host the outcomes form's session cookie (same
    # name, any port) would otherwise overwrite this one, and the API never needs it.
    app.config["SESSION_COOKIE_NAME"] = "nclcc_dashboard"
    app.config["SESSION_COOKIE_PATH"] = bp.url_prefix
    # The JSON API authenticates by bearer token and has no CSRF token: check only where asked.
    app.config.setdefault("WTF_CSRF_CHECK_DEFAULT", False)
    # The sign-out button of a dashboard left open all day still works.
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", int(SESSION_LIFETIME.total_seconds()))
    csrf.init_app(app)
    app.jinja_env.globals["dashboard_service_name"] = SERVICE_NAME
    app.register_blueprint(bp)


@bp.after_request
def _headers(response):
    if request.endpoint != "dashboard.static":
        response.headers["Cache-Control"] = "no-store"
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'"
        )
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        # Same-origin referrers keep Flask-WTF's https referrer check working.
        response.headers["Referrer-Policy"] = "same-origin"
    return response


# -- signing in and out --------------------------------------------------------------------------


def _verify(token: str) -> tuple[Principal | None, str | None]:
    """The token's principal, or why it was refused: 'expired' or a description."""
    try:
        return verify_token(current_app.extensions["settings"], token), None
    except TokenError as error:
        if isinstance(error.__cause__, jwt.ExpiredSignatureError):
            return None, "expired"
        return None, str(error)


def _signed_in() -> tuple[Principal | None, str | None]:
    """The leader this session belongs to, verified now; or None and the sign-in notice to show."""
    token = session.get(SESSION_KEY)
    if not isinstance(token, str) or not token:
        return None, None
    since = session.get(SIGNED_IN_AT)
    # Flask renews the cookie on every answer; the session still ends 8 hours after signing in.
    if not isinstance(since, (int, float)) or not 0 <= time.time() - since <= SESSION_LIFETIME.total_seconds():
        return None, "expired"
    principal, problem = _verify(token)
    if principal is None:
        return None, "expired" if problem == "expired" else "invalid"
    if not principal.is_leader:
        return None, "invalid"
    return principal, None


def _sign_in_page(error: str | None = None, detail: str | None = None, notice: str | None = None,
                  status: int = 200):
    return render_template("dashboard/sign_in.html", error=error, detail=detail, notice=notice), status


@bp.get("/sign-in")
def sign_in():
    principal, _ = _signed_in()
    if principal is not None:
        return redirect(url_for(".dashboard"), 303)
    return _sign_in_page(notice=NOTICES.get(request.args.get("reason", "")))


@bp.post("/sign-in")
def sign_in_submit():
    try:
        csrf.protect()
    except CSRFError:
        return _sign_in_page(
            error="This sign-in form had expired or did not come from this page. Paste your token again.",
            status=400)
    token = request.form.get("token", "").strip()
    if token[:7].lower() == "bearer ":  # the whole Authorization header value, pasted
        token = token[7:].strip()
    if not token:
        return _sign_in_page(error="Paste your access token into the box.", status=422)
    if len(token) > TOKEN_MAX_LENGTH:
        return _sign_in_page(error="That token is too long to keep in a browser session. Ask for a shorter one.",
                             status=401)
    principal, problem = _verify(token)
    if principal is None:
        if problem == "expired":
            return _sign_in_page(error="That token has expired. Ask for a new one and paste it here.", status=401)
        return _sign_in_page(error="That token could not be verified. Check you copied all of it.",
                             detail=problem, status=401)
    if not principal.is_leader:
        return render_template("dashboard/refused.html", principal=principal), 403
    session.clear()  # nothing from before signing in is carried over
    session.permanent = True
    session[SESSION_KEY] = token
    session[SIGNED_IN_AT] = int(time.time())
    return redirect(url_for(".dashboard"), 303)


@bp.post("/sign-out")
def sign_out():
    try:
        csrf.protect()
    except CSRFError:
        principal, _ = _signed_in()
        return render_template("dashboard/sign_out_problem.html", principal=principal), 400
    session.clear()
    return redirect(url_for(".sign_in", reason="signed-out"), 303)


# -- the page ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    start: date
    end: date
    threat_area: str | None

    @property
    def from_month(self) -> str:
        return f"{self.start:%Y-%m}"

    @property
    def to_month(self) -> str:
        return f"{self.end:%Y-%m}"


def _month(value: str | None, name: str, label: str, errors: dict[str, str]) -> date | None:
    value = (value or "").strip()
    if not value:
        return None
    found = MONTH.match(value)
    if not found or not EARLIEST_YEAR <= int(found[1]) <= LATEST_YEAR:
        errors[name] = (f"“{label}” must be a month written as YYYY-MM, for example 2026-01, between "
                        f"{EARLIEST_YEAR}-01 and {LATEST_YEAR}-12.")
        return None
    return date(int(found[1]), int(found[2]), 1)


def read_filters(args, today: date) -> tuple[Filters, dict[str, str]]:
    """The period and threat area asked for; each value at fault is named and replaced by its default."""
    errors: dict[str, str] = {}
    start = _month(args.get("from"), "from", "From", errors)
    end = _month(args.get("to"), "to", "To", errors)
    threat_area = (args.get("threat_area") or "").strip() or None
    if threat_area is not None and threat_area not in THREAT_AREAS:
        errors["threat_area"] = "There is no such threat area."
        threat_area = None
    this_month = today.replace(day=1)
    end = end or this_month
    start = start or date(end.year, 1, 1)
    if start > end:
        errors.setdefault("from", "“From” must not be after “To”.")
        start, end = date(this_month.year, 1, 1), this_month
    elif len(figures.months_between(start, end)) > MAX_MONTHS:
        errors.setdefault("from", "Choose a period of ten years at most.")
        start, end = date(this_month.year, 1, 1), this_month
    return Filters(start, end, threat_area), errors


@bp.get("")
def dashboard():
    principal, reason = _signed_in()
    if principal is None:
        if reason:
            session.pop(SESSION_KEY, None)
            session.pop(SIGNED_IN_AT, None)
        return redirect(url_for(".sign_in", reason=reason) if reason else url_for(".sign_in"), 303)
    filters, errors = read_filters(request.args, datetime.now(UTC).date())
    return render_template("dashboard/page.html", principal=principal, filters=filters, errors=errors,
                           threat_areas=[(code, words(code)) for code in THREAT_AREAS],
                           **page_figures(filters)), 422 if errors else 200


def page_figures(filters: Filters) -> dict:
    db = get_session()
    summary = figures.summary(db, filters.start, filters.end, filters.threat_area, None)
    codes = list(db.scalars(select(Fact.key).where(Fact.scope == "org").distinct().order_by(Fact.key)))
    org_facts = figures.facts_for(db, "org", codes)
    hour_facts = figures.facts_for(db, "org_hours", codes)
    organisations = [figures.organisation_metrics(db, code, org_facts[code], hour_facts[code]) for code in codes]
    query = package_query({"from_month": filters.from_month, "to_month": filters.to_month,
                           "threat_area": filters.threat_area, "sort": "-issued_at"})
    packages = [figures.package_summary(row) for row in db.scalars(query.limit(RECENT_PACKAGES))]
    compliance = worst_first(organisations)
    return {
        "period": period_words(filters),
        "cards": headline_cards(summary),
        "funnel": funnel_chart(summary["funnel"]),
        "trend": trend_chart(summary["trend"]),
        "compliance": compliance_chart(compliance[:COMPLIANCE_ROWS_SHOWN]),
        "compliance_rest": compliance_chart(compliance[COMPLIANCE_ROWS_SHOWN:]),
        "compliance_rows": compliance,
        "calibration": calibration_rows(figures.grading(db)),
        "assessment_labels": ASSESSMENT_LABELS,
        "packages": [{**package, "verdict_label": VERDICT_LABELS.get(package["verdict"], words(package["verdict"])),
                      "issued": day_words(package["issued_at"])} for package in packages],
    }


# -- words and numbers ---------------------------------------------------------------------------


def words(code: str | None) -> str:
    return (code or "").replace("_", " ").capitalize()


def number(value: float | None) -> str:
    if value is None:
        return "—"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.1f}"


def percent(value: float | None) -> str:
    return "—" if value is None else f"{round(value * 100)}%"


def share(part: float, whole: float) -> str:
    return percent(part / whole) if whole else "—"


def day_words(moment: datetime | None) -> str:
    return f"{moment.day} {moment:%b %Y}" if moment else "—"


def month_words(day: date) -> str:
    return f"{day:%B %Y}"


def period_words(filters: Filters) -> str:
    period = month_words(filters.start) if filters.start == filters.end \
        else f"{month_words(filters.start)} to {month_words(filters.end)}"
    area = words(filters.threat_area).lower() if filters.threat_area else "all threat areas"
    return f"{period}, {area}"


def plural(count: float, one: str, many: str) -> str:
    return f"{number(count)} {one if count == 1 else many}"


def headline_cards(summary: dict) -> list[dict]:
    funnel, rates, totals = summary["funnel"], summary["rates"], summary["results"]["totals"]
    return [
        {"id": "packages", "label": "Packages issued", "value": number(summary["packages_issued"]),
         "detail": "not counting withdrawn packages"},
        {"id": "return-rate", "label": "Return rate", "value": percent(rates["returned"]),
         "detail": f"{number(funnel['final'])} of {number(funnel['recipients'])} final returns in"},
        {"id": "on-time", "label": "On-time rate", "value": percent(rates["on_time"]),
         "detail": "of final returns, filed by the due date"},
        {"id": "actioned", "label": "Actioned rate", "value": percent(rates["actioned"]),
         "detail": f"{plural(funnel['actioned'], 'return reports', 'returns report')} action, "
                   f"of {number(funnel['final'])} final"},
        {"id": "arrests", "label": "Arrests", "value": number(totals["arrests"]),
         "detail": f"and {plural(totals['charges'], 'charge', 'charges')}"},
        {"id": "safeguarded", "label": "People safeguarded", "value": number(totals["people_safeguarded"]),
         "detail": f"of them {plural(totals['children_safeguarded'], 'child', 'children')}"},
    ]


# -- charts: geometry here, drawing in templates/dashboard/_charts.html --------------------------


def funnel_chart(funnel: dict) -> dict:
    label_width, bar_width, row_height, top = 170, 270, 34, 6
    whole = funnel["recipients"]
    rows = []
    for index, (stage, label) in enumerate(FUNNEL_STAGES):
        value = funnel[stage]
        width = round(bar_width * value / whole, 1) if whole else 0
        rows.append({
            "label": label, "value": number(value), "share": share(value, whole) if index else "",
            "y": top + index * row_height, "bar_x": label_width, "bar_width": max(width, 2 if value else 0),
            "text_x": label_width + max(width, 0) + 8,
        })
    return {"width": 560, "height": top + len(rows) * row_height, "rows": rows, "bar_x": label_width,
            "bar_height": 22, "empty": not whole}


def nice_scale(largest: float) -> tuple[float, list[float]]:
    """An axis top and its ticks (at most six) for values up to ``largest``."""
    if largest <= 0:
        return 1, [0, 1]
    magnitude = 10 ** math.floor(math.log10(largest))
    for step in (magnitude / 10, magnitude / 5, magnitude / 2, magnitude, magnitude * 2, magnitude * 5,
                 magnitude * 10):
        step = max(step, 1)
        if largest / step <= 5:
            top = math.ceil(largest / step) * step
            return top, [step * i for i in range(int(round(top / step)) + 1)]
    return largest, [0, largest]


def trend_chart(trend: list[dict]) -> dict:
    width, height, left, right, top, bottom = 560, 250, 44, 8, 14, 40
    plot_width, plot_height = width - left - right, height - top - bottom
    largest = max((row[key] for row in trend for key, _, _ in TREND_SERIES), default=0)
    axis_top, ticks = nice_scale(largest)
    group = plot_width / max(len(trend), 1)
    bar = min(14, group * 0.8 / len(TREND_SERIES))
    every = max(1, math.ceil(34 / group))  # month labels at least 34 units apart
    months = []
    for index, row in enumerate(trend):
        day = figures.parse_month(row["month"])
        x = left + index * group
        start = x + (group - bar * len(TREND_SERIES)) / 2
        bars = []
        for number_, (key, label, css) in enumerate(TREND_SERIES):
            bar_height = plot_height * row[key] / axis_top
            bars.append({"x": round(start + number_ * bar, 1), "width": round(bar, 1),
                         "y": round(top + plot_height - bar_height, 1), "height": round(bar_height, 1),
                         "css": css, "title": f"{day:%B %Y}, {label.lower()}: {number(row[key])}"})
        labelled = index % every == 0
        months.append({
            "name": f"{day:%B %Y}", "bars": bars, "center": round(x + group / 2, 1),
            "label": f"{day:%b}" if labelled else "",
            "year": f"{day:%Y}" if labelled and (index == 0 or day.month <= every) else "",
            "counts": [number(row[key]) for key, _, _ in TREND_SERIES],
        })
    return {
        "width": width, "height": height, "left": left, "right": width - right, "top": top,
        "bottom": top + plot_height,
        "ticks": [{"y": round(top + plot_height - plot_height * tick / axis_top, 1), "label": number(tick)}
                  for tick in ticks],
        "months": months, "series": TREND_SERIES,
    }


def worst_first(organisations: list[dict]) -> list[dict]:
    """Organisations by return rate, lowest first; then most overdue, then lowest on-time rate."""
    def key(organisation: dict):
        received = organisation["packages_received"] > 0
        return (not received, organisation["return_rate"] or 0, -organisation["overdue_now"],
                organisation["on_time_rate"] or 0, organisation["code"])

    return sorted(organisations, key=key)


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def compliance_chart(organisations: list[dict]) -> dict:
    bar_x, bar_width, row_height, top = 410, 370, 34, 30
    rows = []
    for index, organisation in enumerate(organisations):
        y = top + index * row_height
        received, returned = organisation["packages_received"], organisation["returned"]
        return_rate, on_time_rate = organisation["return_rate"], organisation["on_time_rate"]
        rows.append({
            "y": y, "stripe": index % 2 == 0, "code": organisation["code"],
            "name": shorten(organisation["name"], 40), "full_name": organisation["name"],
            "return_width": round(bar_width * (return_rate or 0), 1),
            "on_time_width": round(bar_width * (on_time_rate or 0), 1),
            "returned": f"{percent(return_rate)} ({number(returned)} of {number(received)})" if received
                        else "nothing received",
            "on_time": percent(on_time_rate),
            "overdue": number(organisation["overdue_now"]), "is_overdue": organisation["overdue_now"] > 0,
        })
    return {
        "width": 1160, "height": top + len(rows) * row_height + 4, "rows": rows, "bar_x": bar_x,
        "bar_width": bar_width, "row_height": row_height, "top": top,
        "grid": [{"x": bar_x + bar_width * step / 4, "label": f"{25 * step}%",
                  "anchor": ("start", "middle", "middle", "middle", "end")[step]} for step in range(5)],
        "returned_x": bar_x + bar_width + 20, "on_time_x": bar_x + bar_width + 180, "overdue_x": 1150,
    }


SHADES = ((0.2, "shade-1"), (0.4, "shade-2"), (0.6, "shade-3"), (0.8, "shade-4"), (1.01, "shade-5"))


def shade(value: float | None) -> str:
    if value is None:
        return "shade-none"
    return next(css for limit, css in SHADES if value < limit)


def calibration_rows(grading: dict) -> list[dict]:
    rows = []
    for source in figures.SOURCE_EVALUATIONS:
        cells = []
        for cell in (c for c in grading["cells"] if c["source_evaluation"] == source):
            confirmed = cell["confirmed"] + cell["partly_confirmed"]
            cells.append({"assessment": cell["intelligence_assessment"], "judged": cell["judged"],
                          "confirmed": confirmed, "share": percent(cell["confirmed_rate"]),
                          "shade": shade(cell["confirmed_rate"])})
        rows.append({"source": source, "label": SOURCE_LABELS[source], "cells": cells})
    return rows

"""The leadership dashboard at /dashboard: one server-rendered page of figures for leaders.

A plain Flask blueprint (not part of the JSON API or its OpenAPI document). A leader signs in
with the organisation's identity provider when ``OIDC_ISSUER`` is set (``shared.oidc``), or by
pasting a bearer token (outside production, or in production while no identity provider is
set); the token is verified with the same rules as the API and then dropped. The session itself
-- the verified principal in Redis under a random id, only that id in the signed cookie, at most
8 hours, checked on every request -- is ``shared.web_sessions``, shared with the recipients'
pages. Since the token is not kept, a key rotated at the identity provider does not end a session
already open: it ends when the token would have expired, at most 8 hours later.

Every request is audited like an API call (``shared.audit``): sign-ins (allowed or refused, with
the reason, never the token), sign-outs, page reads, and reads refused for want of a session.
The page reads the same figures as the metrics API (``services.metrics.figures``), counting only
packages the leader's clearance allows. There is no JavaScript: every chart is inline SVG, its
geometry computed by ``charts.py``, its words added here, drawn by the templates, with a title,
a description and the numbers as text.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_wtf.csrf import CSRFError, CSRFProtect
from marshmallow import ValidationError
from redis.exceptions import RedisError
from sqlalchemy import select

from services.metrics import charts, figures
from services.metrics.definitions import (
    ACKNOWLEDGED_RATE,
    ACTIONED_RATE,
    FUNNEL_DEFINITION,
    FUNNEL_STAGES,
    GRADING_DEFINITION,
    MEDIAN_DAYS_TO_FINAL_RETURN,
    ON_TIME_RATE,
    RESULTS_DEFINITION,
    RETURN_RATE,
    Rate,
    amount_words,
    attribution_words,
    days_words,
    judged_words,
)
from services.metrics.export import export_response
from services.metrics.models import Organisation, PackageState
from services.metrics.schemas import PackageListArgsSchema
from shared.audit import audit_detail, audit_outcome, audit_target
from shared.auth import Principal
from shared.db import get_session
from shared.oidc import OidcSignIn, oidc_configured
from shared.vocabulary import (
    ACCURACY_CHOICES,
    RESULT_ATTRIBUTIONS,
    RESULT_KINDS,
    THREAT_AREAS,
    TIMELINESS_CHOICES,
    VERDICT_LABELS,
    grading_words,
)
from shared.vocabulary import INTELLIGENCE_ASSESSMENT_LABELS as ASSESSMENT_LABELS
from shared.vocabulary import SOURCE_EVALUATION_LABELS as SOURCE_LABELS
from shared.web_sessions import SignInRefused, WebSessions, configure_cookie, verify_pasted_token

SERVICE_NAME = "NCLCC outcomes dashboard"
MONTH = re.compile(r"^([0-9]{4})-(0[1-9]|1[0-2])$")
ORGANISATION_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,15}$")
EARLIEST_YEAR, LATEST_YEAR = 2000, 2099
MAX_MONTHS = 120
COMPLIANCE_ROWS_SHOWN = 15
RECENT_PACKAGES = 10

bp = Blueprint(
    "dashboard",
    __name__,
    url_prefix="/dashboard",
    template_folder="templates",
    static_folder="static/dashboard",
    static_url_path="/static",
)
csrf = CSRFProtect()

NOTICES = {
    "expired": "Your token or your 8-hour session has expired, so you have been signed out. Paste a token to carry on.",
    "invalid": "Your session is no longer valid. Paste your token again to sign in.",
    "unavailable": "The dashboard cannot reach its session store just now. Try again in a minute.",
    "signed-out": "You have signed out.",
}
ACCURACY_LABELS = {choice.value: choice.label for choice in ACCURACY_CHOICES}
TIMELINESS_LABELS = {choice.value: choice.label for choice in TIMELINESS_CHOICES}
TREND_SERIES = (
    ("recipients", "Sent to recipients", "series-sent"),
    ("final", "Final returns filed", "series-final"),
    ("actioned", "Final returns reporting action", "series-actioned"),
)


def init_app(app: Flask) -> None:
    """Registered by create_app: the blueprint, its session cookie and CSRF protection."""
    settings = app.extensions["settings"]
    # Strict, as no other site ever links into the dashboard; Lax with an identity provider,
    # whose redirect back to /dashboard/sign-in/callback must carry the cookie.
    configure_cookie(
        app,
        name="nclcc_dashboard",
        path=bp.url_prefix,
        public_url=settings.public_urls.get("metrics", ""),
        same_site="Lax" if oidc_configured(settings) else "Strict",
    )
    csrf.init_app(app)
    if oidc_configured(settings):
        app.extensions["dashboard_oidc"] = OidcSignIn(app, "dashboard")
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


# -- signing in and out (the sessions themselves: shared.web_sessions) ---------------------------


def now() -> float:
    """The clock sessions are judged by (tests move it)."""
    return time.time()


sessions = WebSessions("dashboard", may_enter=lambda principal: principal.is_leader, clock=lambda: now())


def start_session(principal: Principal, token_expires_at: float) -> str:
    return sessions.start(principal, token_expires_at)


def load_session(session_id: str) -> dict | None:
    return sessions.load(session_id)


def _token_page_exists() -> bool:
    """Pasting a token: outside production, and in production until an identity provider is set."""
    settings = current_app.extensions["settings"]
    return not (settings.production and oidc_configured(settings))


def _oidc() -> OidcSignIn | None:
    return current_app.extensions.get("dashboard_oidc")


@bp.before_request
def _who():
    # The dashboard never takes a bearer header: the audit log names whoever the session says.
    g.principal = None


def _sign_in_page(error: str | None = None, detail: str | None = None, notice: str | None = None, status: int = 200):
    return render_template(
        "dashboard/sign_in.html",
        error=error,
        detail=detail,
        notice=notice,
        token_page=_token_page_exists(),
        oidc=_oidc() is not None,
    ), status


@bp.get("/sign-in")
def sign_in():
    principal, _ = sessions.current()
    if principal is not None:
        g.principal = principal
        return redirect(url_for(".dashboard"), 303)
    return _sign_in_page(notice=NOTICES.get(request.args.get("reason", "")))


@bp.post("/sign-in")
def sign_in_submit():
    if not _token_page_exists():
        abort(404)
    try:
        csrf.protect()
    except CSRFError as problem:
        audit_detail(f"invalid: CSRF: {problem.description}")
        return _sign_in_page(
            error="This sign-in form had expired or did not come from this page. Paste your token again.", status=400
        )
    try:
        principal, expires_at = verify_pasted_token(current_app.extensions["settings"], request.form.get("token", ""))
    except SignInRefused as refused:
        audit_detail(refused.reason)
        if refused.kind == "empty":
            return _sign_in_page(error=str(refused), status=422)
        if refused.kind == "too_long":
            return _sign_in_page(error=str(refused), status=401)
        if refused.kind == "expired":
            return _sign_in_page(error="That token has expired. Ask for a new one and paste it here.", status=401)
        return _sign_in_page(
            error="That token could not be verified. Check you copied all of it.", detail=str(refused), status=401
        )
    return _enter(principal, expires_at, "token")


def _enter(principal: Principal, expires_at: float | None, via: str):
    g.principal = principal
    if not principal.is_leader:
        audit_detail("refused: the dashboard is for leadership")
        return render_template("dashboard/refused.html", principal=principal), 403
    try:
        sessions.begin(principal, expires_at, via)
    except RedisError:
        audit_outcome("error", "session store unavailable")
        return _sign_in_page(notice=NOTICES["unavailable"], status=503)
    return redirect(url_for(".dashboard"), 303)


@bp.get("/sign-in/oidc")
def sign_in_oidc():
    """To the identity provider (OpenID Connect, PKCE); it sends the person back to the callback."""
    oidc = _oidc()
    if oidc is None:
        abort(404)
    try:
        return oidc.redirect(url_for(".sign_in_callback"))
    except SignInRefused as refused:
        audit_outcome("error", refused.reason)
        return _sign_in_page(error=str(refused), status=refused.status)


@bp.get("/sign-in/callback")
def sign_in_callback():
    oidc = _oidc()
    if oidc is None:
        abort(404)
    try:
        principal = oidc.finish()
    except SignInRefused as refused:
        audit_outcome("refused", refused.reason)
        return _sign_in_page(error=str(refused), status=refused.status)
    return _enter(principal, None, "oidc")


@bp.post("/sign-out")
def sign_out():
    principal, _ = sessions.current()
    g.principal = principal
    try:
        csrf.protect()
    except CSRFError as problem:
        audit_detail(f"invalid: CSRF: {problem.description}")
        return render_template("dashboard/sign_out_problem.html", principal=principal), 400
    sessions.end_current(audit=True)
    session.clear()
    return redirect(url_for(".sign_in", reason="signed-out"), 303)


# -- the page ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    start: date
    end: date
    threat_area: str | None
    organisation: str | None = None

    @property
    def from_month(self) -> str:
        return f"{self.start:%Y-%m}"

    @property
    def to_month(self) -> str:
        return f"{self.end:%Y-%m}"

    def args(self, **changes) -> dict[str, str]:
        """The filters as URL arguments, so a view can be shared and the drill-down pages lead
        back to it: ``url_for(..., **filters.args())``; ``organisation=None`` drops one."""
        values = {
            "from": self.from_month,
            "to": self.to_month,
            "threat_area": self.threat_area,
            "organisation": self.organisation,
        } | changes
        return {name: value for name, value in values.items() if value}

    def package_args(self) -> dict[str, str | None]:
        """The filters as ``figures.package_query`` takes them."""
        return {
            "from_month": self.from_month,
            "to_month": self.to_month,
            "threat_area": self.threat_area,
            "organisation": self.organisation,
        }


def _month(value: str | None, name: str, label: str, errors: dict[str, str]) -> date | None:
    value = (value or "").strip()
    if not value:
        return None
    found = MONTH.match(value)
    if not found or not EARLIEST_YEAR <= int(found[1]) <= LATEST_YEAR:
        errors[name] = (
            f"“{label}” must be a month written as YYYY-MM, for example 2026-01, between "
            f"{EARLIEST_YEAR}-01 and {LATEST_YEAR}-12."
        )
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
    organisation = (args.get("organisation") or "").strip().upper() or None
    if organisation is not None and (
        not ORGANISATION_CODE.match(organisation) or organisation not in known_organisations()
    ):
        errors["organisation"] = "There is no such organisation in the directory."
        organisation = None
    this_month = today.replace(day=1)
    end = end or this_month
    start = start or date(end.year, 1, 1)
    if start > end:
        errors.setdefault("from", "“From” must not be after “To”.")
        start, end = date(this_month.year, 1, 1), this_month
    elif len(figures.months_between(start, end)) > MAX_MONTHS:
        errors.setdefault("from", "Choose a period of ten years at most.")
        start, end = date(this_month.year, 1, 1), this_month
    return Filters(start, end, threat_area, organisation), errors


def known_organisations() -> dict[str, str]:
    """The directory as the read model knows it: code -> name."""
    return dict(get_session().execute(select(Organisation.code, Organisation.name).order_by(Organisation.code)).all())


def signed_in() -> Principal | None:
    """The leader whose session this is (and ``g.principal`` set for the audit log), or None:
    the caller then answers with ``to_sign_in()``."""
    principal, reason = sessions.current()
    if principal is None:
        if reason and reason != "unavailable":
            sessions.end_current()
        audit_outcome("refused", f"refused: dashboard session {reason}" if reason else "refused: not signed in")
        g.sign_in_reason = reason
        return None
    g.principal = principal
    return principal


def to_sign_in():
    reason = g.get("sign_in_reason")
    return redirect(url_for(".sign_in", reason=reason) if reason else url_for(".sign_in"), 303)


def page_filters() -> tuple[Filters, dict[str, str]]:
    filters, errors = read_filters(request.args, datetime.now(UTC).date())
    if errors:
        audit_detail("invalid: filters " + ", ".join(errors))
    return filters, errors


@bp.get("")
def dashboard():
    principal = signed_in()
    if principal is None:
        return to_sign_in()
    audit_target("dashboard", "figures")
    filters, errors = page_filters()
    return render_template(
        "dashboard/page.html",
        principal=principal,
        filters=filters,
        errors=errors,
        threat_areas=[(code, words(code)) for code in THREAT_AREAS],
        organisations=list(known_organisations().items()),
        **page_figures(filters, principal),
    ), 422 if errors else 200


@bp.get("/packages/<path:package_id>")
def package_page(package_id: str):
    """One package's whole story: its figures, then its timeline per recipient and its onward chain.
    A package the leader is not cleared for answers 404, as the API does (audited)."""
    principal = signed_in()
    if principal is None:
        return to_sign_in()
    audit_target("package", package_id[:64])
    filters, errors = page_filters()
    db = get_session()
    found = figures.uuid_or_none(package_id) if len(package_id) <= 64 else None
    package = db.get(PackageState, found) if found else None
    if package is not None and package.issued_at is None:
        package = None  # heard of through its returns, not issued yet: no figures to show anyone
    if package is not None and not principal.cleared_for(package.classification or ""):
        audit_detail(f"refused: clearance {principal.clearance} below {package.classification}")
        package = None
    if package is None or package.issued_at is None:
        if found is None:
            audit_detail("invalid: package id")
        return render_template(
            "dashboard/not_found.html",
            principal=principal,
            filters=filters,
            heading="No such package",
            message=(
                f"“{shorten(package_id, 40)}” is not a package id: a package id looks like "
                "123e4567-e89b-12d3-a456-426614174000."
                if found is None
                else "There are no figures for a package with this id that you may see."
            ),
        ), 404
    return render_template(
        "dashboard/package.html",
        principal=principal,
        filters=filters,
        errors=errors,
        **package_page_figures(package),
    ), 422 if errors else 200


@bp.get("/organisations/<path:code>")
def organisation_page(code: str):
    """One organisation: its figures against the national ones, its compliance month by month, its
    results, its feedback on the intelligence and its packages (each linking to its page)."""
    principal = signed_in()
    if principal is None:
        return to_sign_in()
    code = code.strip().upper()[:32]
    audit_target("organisation", code)
    filters, errors = page_filters()
    db = get_session()
    cleared = principal.allowed_classifications
    known = ORGANISATION_CODE.match(code) and (
        db.get(Organisation, code) is not None or figures.facts_for(db, "org", [code], cleared)[code]
    )
    if not known:
        audit_detail("invalid: organisation code" if not ORGANISATION_CODE.match(code) else "no such organisation")
        return render_template(
            "dashboard/not_found.html",
            principal=principal,
            filters=filters,
            heading="No such organisation",
            message=f"There is no organisation “{shorten(code, 20)}” in the directory.",
        ), 404
    return render_template(
        "dashboard/organisation.html",
        principal=principal,
        filters=filters,
        errors=errors,
        **organisation_page_figures(code, filters, principal),
    ), 422 if errors else 200


@bp.get("/export.csv")
def export_csv():
    """The CSV button: the package list with the filters on screen, from the same function as the
    API's ``/api/v1/metrics/export.csv`` (whose bearer token a dashboard session does not carry).
    A filter at fault answers 422 naming it."""
    principal = signed_in()
    if principal is None:
        return to_sign_in()
    audit_target("export", "packages.csv")
    try:
        args = PackageListArgsSchema().load(request.args.to_dict())
    except ValidationError as problem:
        fields_at_fault = sorted(problem.messages)
        audit_detail("invalid: filters " + ", ".join(fields_at_fault))
        lines = [
            f"{name}: {' '.join(map(str, messages)) if isinstance(messages, list) else messages}"
            for name, messages in sorted(problem.messages.items())
        ]
        return Response(
            "The CSV could not be made; these filters are at fault:\n" + "\n".join(lines) + "\n",
            status=422,
            mimetype="text/plain",
        )
    return export_response(get_session(), args, principal.allowed_classifications)


def page_figures(filters: Filters, principal: Principal) -> dict:
    db = get_session()
    cleared = principal.allowed_classifications
    summary = figures.summary(db, filters.start, filters.end, filters.threat_area, filters.organisation, cleared)
    before = figures.previous_period(filters.start, filters.end)
    previous = figures.summary(db, *before, filters.threat_area, filters.organisation, cleared)
    organisations = figures.every_organisation_metrics(db, cleared)
    national = figures.national_metrics(db, cleared)
    query = figures.package_query({**filters.package_args(), "sort": "-issued_at"}, cleared)
    packages = [figures.package_summary(row) for row in db.scalars(query.limit(RECENT_PACKAGES))]
    compliance = worst_first(organisations)
    previous_words = period_words(Filters(*before, filters.threat_area, filters.organisation), area=False)
    return {
        "period": period_words(filters),
        "previous_period": previous_words,
        "clearance": clearance_words(principal),
        "cards": headline_cards(summary, previous),
        "funnel": funnel_chart(summary["funnel"]),
        "funnel_definition": FUNNEL_DEFINITION,
        "results": result_rows(summary["results"], previous["results"]),
        "results_definition": RESULTS_DEFINITION,
        "grading_definition": GRADING_DEFINITION,
        "median_definition": MEDIAN_DAYS_TO_FINAL_RETURN,
        "trend": trend_chart(summary["trend"]),
        "compliance": compliance_chart(compliance[:COMPLIANCE_ROWS_SHOWN]),
        "compliance_rest": compliance_chart(compliance[COMPLIANCE_ROWS_SHOWN:]),
        "compliance_rows": compliance,
        "organisation_rows": organisation_rows(compliance, national),
        "national": national_words(national),
        "calibration": calibration_rows(figures.grading(db, cleared)),
        "assessment_labels": ASSESSMENT_LABELS,
        "packages": [package_row(package) for package in packages],
        "csv_url": url_for(".export_csv", **filters.args()),
    }


def package_row(package: dict) -> dict:
    return {
        **package,
        "verdict_label": VERDICT_LABELS.get(package["verdict"], words(package["verdict"])),
        "issued": day_words(package["issued_at"]),
    }


def organisation_rows(organisations: list[dict], national: dict) -> list[dict]:
    """The organisations table: each organisation's rates, each against the national figure."""
    rows = []
    for organisation in organisations:
        received, returned = organisation["packages_received"], organisation["returned"]
        rows.append(
            {
                "code": organisation["code"],
                "full_name": organisation["name"],
                "returned": f"{percent(organisation['return_rate'])} ({number(returned)} of {number(received)})"
                if received
                else "nothing received",
                "on_time": percent(organisation["on_time_rate"]),
                "overdue": number(organisation["overdue_now"]),
                "median_days": days_words(organisation["median_days_to_return"]),
                "return_vs_national": figures.compare_with_national(
                    organisation["return_rate"], national["return_rate"]
                ).words,
                "on_time_vs_national": figures.compare_with_national(
                    organisation["on_time_rate"], national["on_time_rate"]
                ).words,
            }
        )
    return rows


def national_words(national: dict) -> str:
    return (
        f"Nationally, {percent(national['return_rate'])} of returns expected are in "
        f"({number(national['returned'])} of {number(national['packages_received'])}), "
        f"{percent(national['on_time_rate'])} of them on time."
    )


def package_page_figures(package: PackageState) -> dict:
    db = get_session()
    metrics = figures.package_metrics(db, package)
    story = figures.package_timeline(db, package)
    counts = {
        "recipients": metrics["reach"]["recipients"],
        "acknowledged": metrics["reach"]["acknowledged"],
        "final": metrics["compliance"]["final"],
        "on_time": metrics["compliance"]["on_time"],
        "final_actioned": metrics["actioned_returns"],
    }
    return {
        "package": {
            **package_row(figures.package_summary(package)),
            "grading_words": grading_words(package.source_evaluation or 0, package.intelligence_assessment or "?"),
            "due": day_words(package.due_at),
            "withdrawn": day_words(package.withdrawn_at) if package.withdrawn_at else None,
        },
        "cards": [
            rate_card("return-rate", RETURN_RATE, counts),
            rate_card("on-time", ON_TIME_RATE, counts),
            rate_card("acknowledged", ACKNOWLEDGED_RATE, counts),
            rate_card("actioned", ACTIONED_RATE, counts),
        ],
        "results": result_rows(metrics["results"]),
        "results_definition": RESULTS_DEFINITION,
        "story": story,
        "status_labels": RETURN_STATUS_WORDS,
    }


RETURN_STATUS_WORDS = {
    "returned": "Final return in",
    "interim": "Interim return only",
    "overdue": "Overdue",
    "awaiting": "Awaiting a return",
    "withdrawn": "Withdrawn",
}


def organisation_page_figures(code: str, filters: Filters, principal: Principal) -> dict:
    db = get_session()
    cleared = principal.allowed_classifications
    metrics = figures.organisation_metrics(db, code, cleared)
    national = figures.national_metrics(db, cleared)
    months = figures.compliance_by_month(db, filters.start, filters.end, filters.threat_area, code, cleared)
    national_months = figures.compliance_by_month(db, filters.start, filters.end, filters.threat_area, None, cleared)
    packages = figures.organisation_packages(db, filters.package_args(), code, cleared)
    counts = figures.facts_for(db, "org", [code], cleared)[code]
    national_counts = figures.national_figures(db, cleared)
    cards = []
    for card_id, figure in (
        ("return-rate", RETURN_RATE),
        ("on-time", ON_TIME_RATE),
        ("acknowledged", ACKNOWLEDGED_RATE),
        ("actioned", ACTIONED_RATE),
    ):
        card = rate_card(card_id, figure, counts)
        card["change"] = figures.compare_with_national(figure.of(counts), figure.of(national_counts))
        cards.append(card)
    quality = metrics["quality"]
    return {
        "organisation": metrics,
        "cards": [
            {
                "id": "received",
                "label": "Packages received",
                "value": number(metrics["packages_received"]),
                "detail": f"{number(metrics['overdue_now'])} returns overdue now",
                "definition": "Returns expected of it: one per package sent or passed on to it, not withdrawn.",
            },
            *cards,
            {
                "id": "median-days",
                "label": "Median days to final return",
                "value": days_words(metrics["median_days_to_return"]),
                "detail": "days after issue",
                "definition": MEDIAN_DAYS_TO_FINAL_RETURN,
            },
        ],
        "national": national,
        "months": [
            {
                "name": month_words(figures.parse_month(row["month"])),
                "expected": number(row["expected"]),
                "final": number(row["final"]),
                "on_time": number(row["on_time"]),
                "return_rate": percent(row["return_rate"]),
                "on_time_rate": percent(row["on_time_rate"]),
                "national_return_rate": percent(national_row["return_rate"]),
                "bar": round((row["return_rate"] or 0) * 100),
            }
            for row, national_row in zip(months, national_months, strict=True)
        ],
        "results": result_rows(metrics["results"]),
        "results_definition": RESULTS_DEFINITION,
        "quality": {
            "mean_usefulness": "—" if quality["mean_usefulness"] is None else f"{quality['mean_usefulness']:g} of 5",
            "rated": quality["rated"],
            "national_mean": "—"
            if national["quality"]["mean_usefulness"] is None
            else f"{national['quality']['mean_usefulness']:g} of 5",
            "accuracy": [
                (label, quality["accuracy"][value], national["quality"]["accuracy"][value])
                for value, label in ACCURACY_LABELS.items()
            ],
            "timeliness": [
                (label, quality["timeliness"][value], national["quality"]["timeliness"][value])
                for value, label in TIMELINESS_LABELS.items()
            ],
        },
        "packages": [
            {**package_row(package), "status_label": RETURN_STATUS_WORDS[package["return_status"]]}
            for package in packages
        ],
        "period": period_words(filters),
        "csv_url": url_for(".export_csv", **filters.args(organisation=code)),
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


def period_words(filters: Filters, area: bool = True) -> str:
    """'January 2026 to March 2026, county lines, GMP'; without ``area`` the months alone."""
    period = (
        month_words(filters.start)
        if filters.start == filters.end
        else f"{month_words(filters.start)} to {month_words(filters.end)}"
    )
    if not area:
        return period
    threat = words(filters.threat_area).lower() if filters.threat_area else "all threat areas"
    return f"{period}, {threat}" + (f", returns of {filters.organisation}" if filters.organisation else "")


def clearance_words(principal: Principal) -> str:
    markings = principal.allowed_classifications
    if len(markings) == 1:
        return f"Counting only packages marked {markings[0]}, as your clearance allows."
    return f"Counting packages marked {', '.join(markings[:-1])} or {markings[-1]}, as your clearance allows."


def plural(count: float, one: str, many: str) -> str:
    return f"{number(count)} {one if count == 1 else many}"


def rate_card(card_id: str, figure: Rate, counts: dict) -> dict:
    """A rate's card: its value, its counts in words, and its definition."""
    return {
        "id": card_id,
        "label": figure.label,
        "value": percent(figure.of(counts)),
        "detail": figure.caption_of(counts),
        "definition": figure.definition,
    }


def summary_counts(summary: dict) -> dict:
    """The facts each rate divides, by their names in definitions.py, from a summary."""
    return {metric: summary["funnel"][stage] for stage, metric, _ in FUNNEL_STAGES} | {"on_time": summary["on_time"]}


def headline_cards(summary: dict, previous: dict | None = None) -> list[dict]:
    """The headline figures; each with its change from the previous period when one is given."""
    totals = summary["results"]["totals"]
    counts = summary_counts(summary)
    arrests = next(kind for kind in RESULT_KINDS if kind.name == "arrests")
    cards = [
        {
            "id": "packages",
            "label": "Packages issued",
            "value": number(summary["packages_issued"]),
            "detail": "not counting withdrawn packages",
            "definition": "Packages issued in the period and not withdrawn.",
        },
        rate_card("return-rate", RETURN_RATE, counts),
        rate_card("on-time", ON_TIME_RATE, counts),
        rate_card("acknowledged", ACKNOWLEDGED_RATE, counts),
        rate_card("actioned", ACTIONED_RATE, counts),
        {
            "id": "arrests",
            "label": "Arrests",
            "value": amount_words(arrests, totals["arrests"]),
            "detail": f"and {plural(totals['charges'], 'charge', 'charges')}",
            "definition": RESULTS_DEFINITION,
        },
    ]
    if previous is not None:
        before = summary_counts(previous)
        changes = {
            "packages": figures.compare(summary["packages_issued"], previous["packages_issued"]),
            "arrests": figures.compare(totals["arrests"], previous["results"]["totals"]["arrests"]),
            **{
                card_id: figures.compare(figure.of(counts), figure.of(before), is_rate=True)
                for card_id, figure in (
                    ("return-rate", RETURN_RATE),
                    ("on-time", ON_TIME_RATE),
                    ("acknowledged", ACKNOWLEDGED_RATE),
                    ("actioned", ACTIONED_RATE),
                )
            },
        }
        for card in cards:
            card["change"] = changes[card["id"]]
    return cards


def result_rows(results: dict, previous: dict | None = None) -> list[dict]:
    """Every result kind, its total and its attributions, as a person reads them; with its change
    from the previous period's total when that is given."""
    return [
        {
            "id": kind.name,
            "label": kind.short or kind.label.removesuffix(", in grams").removesuffix(", in pounds"),
            "total": amount_words(kind, results["totals"][kind.name]),
            "by_attribution": [
                amount_words(kind, results[attribution][kind.name]) for attribution in RESULT_ATTRIBUTIONS
            ],
            "words": attribution_words(results, kind),
            "change": None
            if previous is None
            else figures.compare(
                results["totals"][kind.name],
                previous["totals"][kind.name],
                words=lambda value, kind=kind: amount_words(kind, value),
            ).words,
        }
        for kind in RESULT_KINDS
    ]


# -- charts: geometry in charts.py, words here, drawing in templates/dashboard/_charts.html ------


def funnel_chart(funnel: dict) -> dict:
    values = [funnel[stage] for stage, _, _ in FUNNEL_STAGES]
    chart = charts.funnel(values)
    whole = values[0]
    rows = [
        {"label": label, "value": number(value), "share": share(value, whole) if index else "", **shape}
        for index, ((_, _, label), value, shape) in enumerate(zip(FUNNEL_STAGES, values, chart["rows"], strict=True))
    ]
    return {**chart, "rows": rows, "empty": not whole}


def trend_chart(trend: list[dict]) -> dict:
    chart = charts.columns([[row[key] for key, _, _ in TREND_SERIES] for row in trend], len(TREND_SERIES))
    every = chart["label_every"]
    months = []
    for index, (row, group) in enumerate(zip(trend, chart["groups"], strict=True)):
        day = figures.parse_month(row["month"])
        labelled = index % every == 0
        months.append(
            {
                "name": f"{day:%B %Y}",
                "bars": [
                    {**shape, "css": css, "title": f"{day:%B %Y}, {label.lower()}: {number(row[key])}"}
                    for shape, (key, label, css) in zip(group["columns"], TREND_SERIES, strict=True)
                ],
                "center": group["center"],
                "label": f"{day:%b}" if labelled else "",
                "year": f"{day:%Y}" if labelled and (index == 0 or day.month <= every) else "",
                "counts": [number(row[key]) for key, _, _ in TREND_SERIES],
            }
        )
    return {
        "width": chart["width"],
        "height": chart["height"],
        "left": chart["left"],
        "right": chart["right"],
        "top": chart["top"],
        "bottom": chart["bottom"],
        "ticks": [{"y": tick["y"], "label": number(tick["value"])} for tick in chart["ticks"]],
        "months": months,
        "series": TREND_SERIES,
    }


def worst_first(organisations: list[dict]) -> list[dict]:
    """Organisations by return rate, lowest first; then most overdue, then lowest on-time rate."""

    def key(organisation: dict):
        received = organisation["packages_received"] > 0
        return (
            not received,
            organisation["return_rate"] or 0,
            -organisation["overdue_now"],
            organisation["on_time_rate"] or 0,
            organisation["code"],
        )

    return sorted(organisations, key=key)


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def compliance_chart(organisations: list[dict]) -> dict:
    chart = charts.rate_bars([(o["return_rate"], o["on_time_rate"]) for o in organisations])
    rows = []
    for organisation, shape in zip(organisations, chart["rows"], strict=True):
        received, returned = organisation["packages_received"], organisation["returned"]
        rows.append(
            {
                **shape,
                "code": organisation["code"],
                "name": shorten(organisation["name"], 40),
                "full_name": organisation["name"],
                "returned": f"{percent(organisation['return_rate'])} ({number(returned)} of {number(received)})"
                if received
                else "nothing received",
                "on_time": percent(organisation["on_time_rate"]),
                "median_days": days_words(organisation["median_days_to_return"]),
                "overdue": number(organisation["overdue_now"]),
                "is_overdue": organisation["overdue_now"] > 0,
            }
        )
    return {**chart, "rows": rows}


def calibration_rows(grading: dict) -> list[dict]:
    rows = []
    for source in figures.SOURCE_EVALUATIONS:
        cells = []
        for cell in (c for c in grading["cells"] if c["source_evaluation"] == source):
            confirmed = cell["confirmed"] + cell["partly_confirmed"]
            cells.append(
                {
                    "assessment": cell["intelligence_assessment"],
                    "judged": cell["judged"],
                    "confirmed": confirmed,
                    "words": judged_words(confirmed, cell["judged"]),
                    "share": percent(cell["confirmed_rate"]),
                    "shade": charts.shade(cell["confirmed_rate"]),
                }
            )
        rows.append({"source": source, "label": SOURCE_LABELS[source], "cells": cells})
    return rows

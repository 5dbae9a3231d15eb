"""The centre's view of what it sent, on the same signed-in pages as the recipients' (``pages``).

- ``/packages``: the packages the centre has issued, newest first, with how many recipients have
  acknowledged and returned.
- ``/packages/<id>``: one package: every dissemination, the centre's recipients and what each
  passed on (the onward chain, indented under who passed it on), each with its delivery,
  acknowledgement, return status and due date. The centre's chase e-mails link here, to the
  row of the return (``#return-<id>``), never to the force's form.

Centre roles only (``issuer``, ``admin``, ``leader`` of ``CENTRE_ORG``), within their clearance;
anyone else is answered 404, as the API answers a package that is not theirs. Every read and
refusal is audited like the API's.
"""

from __future__ import annotations

import math
import uuid

from flask import abort, current_app, render_template, request
from sqlalchemy import func, select

from services.dissemination import onward
from services.dissemination.access import find_package
from services.dissemination.models import Dissemination, Organisation, Package
from services.dissemination.pages import PER_PAGE, _page_number, _signed_in, _to_sign_in, bp, return_status
from shared.audit import audit_detail, audit_target
from shared.auth import Principal
from shared.clock import now as clock_now
from shared.db import get_session
from shared.local_time import date_time_words, date_words
from shared.vocabulary import grading_words


def _centre_only(principal: Principal) -> None:
    if not principal.is_centre:
        audit_detail(f"refused: the centre's pages, caller is {principal.org}")
        abort(404)


@bp.get("/packages")
def packages():
    principal = _signed_in()
    if principal is None:
        return _to_sign_in()
    _centre_only(principal)
    audit_target("packages", "issued")
    db = get_session()
    query = select(Package).where(
        Package.status != "draft", Package.classification.in_(principal.allowed_classifications)
    )
    total = db.scalar(select(func.count()).select_from(query.subquery())) or 0
    pages = max(1, math.ceil(total / PER_PAGE))
    page = min(_page_number(request.args.get("page")), pages)
    rows = db.scalars(
        query.order_by(Package.issued_at.desc(), Package.reference.desc()).offset((page - 1) * PER_PAGE).limit(PER_PAGE)
    )
    listed = []
    for package in rows:
        live = [d for d in package.disseminations if not d.withdrawn_at]
        listed.append(
            {
                "id": package.id,
                "reference": package.reference,
                "title": package.title,
                "status": package.status,
                "issued": date_words(package.issued_at),
                "recipients": len(live),
                "acknowledged": sum(d.acknowledged_at is not None for d in live),
                "final": sum(d.returned_at is not None or d.return_status == "final" for d in live),
                "onward": sum(d.onward_from is not None for d in live),
            }
        )
    return render_template(
        "pages/centre_packages.html", principal=principal, rows=listed, page=page, pages=pages, total=total
    )


@bp.get("/packages/<uuid:package_id>")
def package_chain(package_id: uuid.UUID):
    principal = _signed_in()
    if principal is None:
        return _to_sign_in()
    _centre_only(principal)
    package = find_package(package_id)  # audited; clearance applies
    settings = current_app.extensions["settings"]
    by_id: dict[uuid.UUID, Dissemination] = {d.id: d for d in package.disseminations}
    codes = {d.organisation for d in package.disseminations} | {settings.centre_org}
    names = dict(
        get_session().execute(select(Organisation.code, Organisation.name).where(Organisation.code.in_(codes))).all()
    )
    at = clock_now()
    links = []
    for link in onward.chain_of(package, settings.centre_org):
        dissemination = by_id[link["dissemination_id"]]
        links.append(
            {
                "id": dissemination.id,
                "organisation": names.get(dissemination.organisation, dissemination.organisation),
                "code": dissemination.organisation,
                "depth": dissemination.onward_depth,
                "passed_on_by": names.get(link["passed_on_by"], link["passed_on_by"])
                if dissemination.onward_from
                else None,
                "delivered": date_time_words(dissemination.delivered_at),
                "acknowledged": date_time_words(dissemination.acknowledged_at),
                "return_status": return_status(dissemination, at),
                "due": date_words(dissemination.due_at),
                "withdrawn": dissemination.status == "withdrawn",
                "withdrawal_reason": dissemination.withdrawal_reason,
                "chain": link["chain"].replace(
                    settings.centre_org, names.get(settings.centre_org, settings.centre_org), 1
                ),
            }
        )
    return render_template(
        "pages/centre_package.html",
        principal=principal,
        marking=package.classification,
        package=package,
        links=links,
        grading=grading_words(package.source_evaluation, package.intelligence_assessment),
        issued=date_time_words(package.issued_at),
    )

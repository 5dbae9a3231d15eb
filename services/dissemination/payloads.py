"""What the dissemination service's events say about a package and a dissemination."""

from __future__ import annotations

from services.dissemination.models import Dissemination, Package


def package_event(package: Package) -> dict:
    return {
        "package_id": str(package.id),
        "reference": package.reference,
        "title": package.title,
        "threat_area": package.threat_area,
        "classification": package.classification,
        "source_evaluation": package.source_evaluation,
        "intelligence_assessment": package.intelligence_assessment,
        "handling_code": package.handling_code,
        "issued_at": package.issued_at.isoformat() if package.issued_at else None,
        "issued_by": package.issued_by,
        # When the draft was made (the metrics service's timeline of the package starts there).
        "drafted_at": package.created_at.isoformat() if package.created_at else None,
        "outcome_due_at": package.outcome_due_at.isoformat() if package.outcome_due_at else None,
    }


def dissemination_event(dissemination: Dissemination) -> dict:
    return {
        "dissemination_id": str(dissemination.id),
        "package_id": str(dissemination.package_id),
        "organisation": dissemination.organisation,
        "due_at": dissemination.due_at.isoformat(),
        # Passed on by a recipient: the dissemination it came from, and how many pass-ons deep.
        "onward_from": str(dissemination.onward_from) if dissemination.onward_from else None,
        "onward_depth": dissemination.onward_depth or 0,
    }

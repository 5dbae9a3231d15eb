"""The package list as CSV: what the API's ``/api/v1/metrics/export.csv`` and the dashboard's
CSV button both answer with, from the same filters and the same figures."""

from __future__ import annotations

import csv
import io
from collections import Counter
from datetime import UTC, datetime

from flask import Response

from services.metrics import figures
from services.metrics.definitions import RATES, result_columns

CSV_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")
CSV_COLUMNS = (
    "reference",
    "title",
    "threat_area",
    "classification",
    "grading",
    "issued_at",
    "due_at",
    "verdict",
    "verdict_reason",
    "recipients",
    "acknowledged",
    "final_returns",
    "actioned_returns",
    "onward_recipients",
    "withdrawn_at",
    *(figure.name for figure in RATES),
    *result_columns(),
)


def export_response(session, args: dict, classifications: list[str]) -> Response:
    """The package list as CSV, with ``package_query``'s filters, counting only packages of the
    given classifications: the API's export and the dashboard's CSV button both answer with it."""

    def rows():
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        offset = 0
        while True:
            batch = session.scalars(figures.package_query(args, classifications).offset(offset).limit(1000)).all()
            for package in batch:
                row = figures.package_export_row(package, Counter(package.figures or {}))
                writer.writerow([_csv_value(row[c]) for c in CSV_COLUMNS])
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            if len(batch) < 1000:
                return
            offset += 1000

    stamp = datetime.now(UTC).strftime("%Y%m%d")
    return Response(
        "".join(rows()),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="nclcc-package-outcomes-{stamp}.csv"'},
    )


def _csv_value(value):
    if isinstance(value, datetime):
        return value.isoformat()
    text = "" if value is None else str(value)
    # A cell starting with = + - @ is a formula to a spreadsheet, and one starting with a tab or a
    # carriage return (or a line feed) becomes one once the spreadsheet strips it: neutralise them.
    return "'" + text if text[:1] in CSV_FORMULA_STARTS else text

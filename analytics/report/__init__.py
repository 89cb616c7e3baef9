"""Carbon and optimisation reports: self-contained HTML, ``report.json`` and validated regulatory exports.

Public API::

    from carbonedge.analytics.report import build_report
    result = build_report(plant_data, settings, Path("out"), progress=print)
    result.html, result.json, result.exports
"""

from carbonedge.analytics.report.build import ReportResult, build_report
from carbonedge.analytics.report.exports import ExportError, regulatory_documents, validate

__all__ = ["ExportError", "ReportResult", "build_report", "regulatory_documents", "validate"]

"""Carbon and optimisation reports: self-contained HTML, ``report.json`` and validated regulatory exports.

Public API::

    from analytics.report import build_report
    result = build_report(plant_data, settings, Path("out"), progress=print)
    result.html, result.json, result.exports
"""

from analytics.report.build import ReportResult, build_report
from analytics.report.exports import ExportError, battery_cfp, cbam_steel, validate, write_export

__all__ = ["ExportError", "ReportResult", "battery_cfp", "build_report", "cbam_steel", "validate", "write_export"]

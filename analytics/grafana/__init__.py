"""Grafana for carbonedge: dashboards built in code, provisioning export, query checks, HTTP API client.

Public API::

    from carbonedge.analytics.grafana import dashboards_json, export, check_dashboards, InfluxQL
    export(Path("deploy/grafana"))                              # dashboards + provisioning YAML
    report = check_dashboards(build_dashboards(), InfluxQL(url, "carbonedge", username="grafana", password=pw), start_ms, end_ms)
    client = GrafanaClient("https://grafana.plant:3000", token)
    push_dashboards(client, dashboards_json(), datasource=DatasourceSettings().datasource(password=pw))
    push_alert_annotations(client, [AlertAnnotation(alert_id="a1", ts=..., site=..., ...)])
"""

from carbonedge.analytics.grafana.check import CheckReport, InfluxQL, TargetResult, check_dashboards, grafana_interval, render
from carbonedge.analytics.grafana.client import AlertAnnotation, GrafanaClient, push_alert_annotations, push_dashboards
from carbonedge.analytics.grafana.dashboards import build_dashboards
from carbonedge.analytics.grafana.export import DatasourceSettings, dashboards_json, export
from carbonedge.analytics.grafana.validate import validate_all, validate_dashboard

__all__ = [
    "AlertAnnotation", "CheckReport", "DatasourceSettings", "GrafanaClient", "InfluxQL", "TargetResult", "build_dashboards",
    "check_dashboards", "dashboards_json", "export", "grafana_interval", "push_alert_annotations", "push_dashboards", "render",
    "validate_all", "validate_dashboard",
]

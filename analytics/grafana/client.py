"""Push dashboards, the data source and alert annotations to a running Grafana over its HTTP API.

Written on ``requests`` (already a dependency) instead of the ``grafana-client`` package:
grafana-client 5.x depends on ``niquests``, whose ``urllib3-future`` installs over the
``urllib3`` package that ``requests`` uses, changing the HTTP stack of every carbonedge
process for the five endpoints we call. Authentication is a service-account token
(``Authorization: Bearer``), with the Editor role on the carbonedge folder.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import requests

from carbonedge.errors import GrafanaError

ALERT_TAG = "carbonedge-alert"


class GrafanaClient:
    """A small Grafana HTTP API client (Grafana 9+)."""

    def __init__(self, url: str, token: str, *, timeout: float = 15.0, verify: bool | str = True) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.session.headers.update({"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Accept": "application/json"})
        self.session.verify = verify
        self.timeout = timeout

    def _call(self, method: str, path: str, *, ok: tuple[int, ...] = (200,), **kw: Any) -> Any:
        try:
            r = self.session.request(method, f"{self.url}{path}", timeout=self.timeout, **kw)
        except requests.RequestException as exc:
            raise GrafanaError(f"Grafana at {self.url} did not answer ({exc.__class__.__name__}); check the URL and that Grafana runs",
                               retryable=True) from exc
        if r.status_code not in ok:
            try:
                detail = r.json().get("message", r.text)
            except ValueError:
                detail = r.text
            hint = {401: " (the token is wrong or expired)", 403: " (the token lacks permission: give it the Editor role)"}.get(r.status_code, "")
            raise GrafanaError(f"Grafana refused {method} {path}: HTTP {r.status_code} {detail[:300]}{hint}",
                               status=r.status_code, retryable=r.status_code >= 500)
        return r.json() if r.content else None

    def health(self) -> dict[str, Any]:
        """``/api/health``: version and database state."""
        return dict(self._call("GET", "/api/health"))

    def upsert_datasource(self, ds: Mapping[str, Any]) -> None:
        """Create the data source, or update it in place (same uid) when it exists."""
        existing = self._call("GET", f"/api/datasources/uid/{ds['uid']}", ok=(200, 404))
        if existing and existing.get("uid") == ds["uid"]:
            self._call("PUT", f"/api/datasources/uid/{ds['uid']}", json=dict(ds))
        else:
            self._call("POST", "/api/datasources", json=dict(ds))

    def ensure_folder(self, uid: str, title: str) -> str:
        """The folder's uid, creating the folder when missing."""
        body = self._call("GET", f"/api/folders/{uid}", ok=(200, 404))
        if not body or body.get("uid") != uid:
            self._call("POST", "/api/folders", json={"uid": uid, "title": title})
        return uid

    def push_dashboard(self, dashboard: Mapping[str, Any], *, folder_uid: str, message: str = "carbonedge grafana push") -> str:
        """Create or overwrite a dashboard (matched by uid); returns its URL path."""
        d = {k: v for k, v in dashboard.items() if k != "id"}
        body = self._call("POST", "/api/dashboards/db", json={"dashboard": d, "folderUid": folder_uid, "overwrite": True, "message": message})
        return str(body.get("url", ""))

    def find_annotations(self, tags: Iterable[str], *, limit: int = 100) -> list[dict[str, Any]]:
        params = [("tags", t) for t in tags] + [("limit", str(limit)), ("type", "annotation")]
        return list(self._call("GET", "/api/annotations", params=params) or [])

    def add_annotation(self, *, time_ms: int, text: str, tags: list[str], time_end_ms: int | None = None,
                       dashboard_uid: str | None = None) -> int:
        body: dict[str, Any] = {"time": time_ms, "text": text, "tags": tags}
        if time_end_ms is not None:
            body["timeEnd"] = time_end_ms
        if dashboard_uid:
            body["dashboardUID"] = dashboard_uid
        return int(self._call("POST", "/api/annotations", json=body)["id"])

    def update_annotation(self, annotation_id: int, **fields: Any) -> None:
        self._call("PATCH", f"/api/annotations/{annotation_id}", json=fields)


@dataclass(frozen=True)
class AlertAnnotation:
    """One alert as the analytics write it to the ``alerts`` measurement (``docs/influx-schema.md``).

    ``ts`` is when the alert opened (ms); ``end_ts`` when it resolved, if it has.
    """

    alert_id: str
    ts: int
    site: str
    process: str
    kind: str
    severity: str
    state: str
    message: str
    device: str | None = None
    wasted_kwh: float | None = None
    end_ts: int | None = None

    def text(self) -> str:
        waste = f" ({self.wasted_kwh:,.0f} kWh wasted)" if self.wasted_kwh is not None else ""
        return f"[{self.severity}] {self.process}: {self.message}{waste}" + (" (resolved)" if self.state == "resolved" else "")

    def tags(self) -> list[str]:
        t = [ALERT_TAG, f"alert:{self.alert_id}", f"site:{self.site}", f"process:{self.process}", f"kind:{self.kind}", f"severity:{self.severity}"]
        return t + ([f"device:{self.device}"] if self.device else [])


def push_dashboards(client: GrafanaClient, dashboards: Iterable[Mapping[str, Any]], *, datasource: Mapping[str, Any] | None = None,
                    folder_uid: str = "carbonedge", folder_title: str = "carbonedge") -> list[str]:
    """Upsert the data source (when given), the folder and every dashboard; returns the dashboards' URL paths."""
    if datasource is not None:
        client.upsert_datasource(datasource)
    client.ensure_folder(folder_uid, folder_title)
    return [client.push_dashboard(d, folder_uid=folder_uid) for d in dashboards]


def push_alert_annotations(client: GrafanaClient, alerts: Iterable[AlertAnnotation | Mapping[str, Any]]) -> dict[str, int]:
    """Mirror alerts as Grafana annotations, one per alert id: created when new, updated on change.

    Idempotent: pushing the same alert again (an ``update`` or its ``resolved`` state,
    which sets the annotation's end time) edits the annotation tagged ``alert:<id>``
    instead of adding another. Returns counts ``{"created": n, "updated": m}``.
    """
    counts = {"created": 0, "updated": 0}
    for a in alerts:
        alert = a if isinstance(a, AlertAnnotation) else AlertAnnotation(**dict(a))
        existing = client.find_annotations([f"alert:{alert.alert_id}"], limit=1)
        if existing:
            fields: dict[str, Any] = {"text": alert.text(), "tags": alert.tags()}
            if alert.end_ts is not None:
                fields["timeEnd"] = alert.end_ts
            client.update_annotation(int(existing[0]["id"]), **fields)
            counts["updated"] += 1
        else:
            client.add_annotation(time_ms=alert.ts, time_end_ms=alert.end_ts, text=alert.text(), tags=alert.tags())
            counts["created"] += 1
    return counts

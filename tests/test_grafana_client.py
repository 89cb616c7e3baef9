"""The Grafana HTTP API client against a stand-in server.

No Grafana server can be installed here (environment.md §4), so a small HTTP server on
loopback implements the endpoints we call, with Grafana's status codes and bodies, and
records every request. It checks authentication like Grafana (401 without the token).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from carbonedge.analytics.grafana import AlertAnnotation, DatasourceSettings, GrafanaClient, dashboards_json, push_alert_annotations, push_dashboards
from carbonedge.errors import GrafanaError

TOKEN = "glsa_test_token"


class FakeGrafana:
    def __init__(self) -> None:
        self.datasources: dict[str, dict[str, Any]] = {}
        self.folders: dict[str, dict[str, Any]] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}
        self.annotations: dict[int, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        self.requests.append((method, path))
        if path == "/api/health":
            return 200, {"database": "ok", "version": "11.3.0"}
        if path.startswith("/api/datasources/uid/"):
            uid = path.rsplit("/", 1)[1]
            if method == "GET":
                return (200, self.datasources[uid]) if uid in self.datasources else (404, {"message": "Data source not found"})
            if method == "PUT":
                self.datasources[uid] = body
                return 200, {"message": "Datasource updated"}
        if path == "/api/datasources" and method == "POST":
            if body["uid"] in self.datasources:
                return 409, {"message": "data source with the same uid already exists"}
            self.datasources[body["uid"]] = body
            return 200, {"message": "Datasource added"}
        if path.startswith("/api/folders/") and method == "GET":
            uid = path.rsplit("/", 1)[1]
            return (200, self.folders[uid]) if uid in self.folders else (404, {"message": "folder not found"})
        if path == "/api/folders" and method == "POST":
            self.folders[body["uid"]] = {"uid": body["uid"], "title": body["title"]}
            return 200, self.folders[body["uid"]]
        if path == "/api/dashboards/db" and method == "POST":
            d = body["dashboard"]
            if "id" in d or not body.get("overwrite") or body.get("folderUid") not in self.folders:
                return 412, {"message": "precondition failed"}
            self.dashboards[d["uid"]] = body
            return 200, {"status": "success", "uid": d["uid"], "url": f"/d/{d['uid']}/x"}
        if path == "/api/annotations" and method == "GET":
            tags = set(query.get("tags", []))
            return 200, [dict(a, id=i) for i, a in self.annotations.items() if tags <= set(a["tags"])]
        if path == "/api/annotations" and method == "POST":
            i = len(self.annotations) + 1
            self.annotations[i] = body
            return 200, {"id": i, "message": "Annotation added"}
        if path.startswith("/api/annotations/") and method == "PATCH":
            self.annotations[int(path.rsplit("/", 1)[1])].update(body)
            return 200, {"message": "Annotation patched"}
        return 404, {"message": "Not found"}


@pytest.fixture
def grafana() -> Iterator[tuple[str, FakeGrafana]]:
    fake = FakeGrafana()

    class Handler(BaseHTTPRequestHandler):
        def _do(self) -> None:
            u = urlparse(self.path)
            n = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(n)) if n else None
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                status, out = 401, {"message": "invalid API key"}
            else:
                status, out = fake.handle(self.command, u.path, parse_qs(u.query), body)
            data = json.dumps(out).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = _do  # noqa: N815

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", fake
    server.shutdown()
    server.server_close()


def test_push_creates_then_updates_datasource_folder_and_dashboards(grafana: tuple[str, FakeGrafana]) -> None:
    url, fake = grafana
    client = GrafanaClient(url, TOKEN)
    ds = DatasourceSettings(url="http://influx.plant:8086").datasource(password="s3cret-readonly")
    urls = push_dashboards(client, dashboards_json(), datasource=ds)
    assert len(urls) == 5 and set(fake.dashboards) == {d["uid"] for d in dashboards_json()}
    assert fake.datasources["carbonedge-influxdb"]["secureJsonData"] == {"password": "s3cret-readonly"}
    assert fake.datasources["carbonedge-influxdb"]["jsonData"]["dbName"] == "carbonedge"
    assert all(b["folderUid"] == "carbonedge" and b["overwrite"] for b in fake.dashboards.values())
    push_dashboards(client, dashboards_json(), datasource=ds)  # second push: updates in place
    assert ("PUT", "/api/datasources/uid/carbonedge-influxdb") in fake.requests
    assert sum(1 for r in fake.requests if r == ("POST", "/api/folders")) == 1
    assert len(fake.dashboards) == 5


def test_alert_annotations_are_created_once_and_updated_on_resolve(grafana: tuple[str, FakeGrafana]) -> None:
    url, fake = grafana
    client = GrafanaClient(url, TOKEN)
    opened = AlertAnnotation(alert_id="a-17", ts=1_767_571_200_000, site="demo-steel", process="compressed_air", kind="baseload",
                             severity="major", state="open", message="Base load 38 % above baseline on Sunday night", wasted_kwh=412.0)
    assert push_alert_annotations(client, [opened]) == {"created": 1, "updated": 0}
    resolved = {**opened.__dict__, "state": "resolved", "end_ts": 1_767_580_000_000, "wasted_kwh": 655.0}
    assert push_alert_annotations(client, [resolved]) == {"created": 0, "updated": 1}
    assert len(fake.annotations) == 1
    a = fake.annotations[1]
    assert a["time"] == 1_767_571_200_000 and a["timeEnd"] == 1_767_580_000_000
    assert "alert:a-17" in a["tags"] and "process:compressed_air" in a["tags"] and "severity:major" in a["tags"]
    assert "655 kWh wasted" in a["text"] and "(resolved)" in a["text"]


def test_errors_read_well(grafana: tuple[str, FakeGrafana]) -> None:
    url, _ = grafana
    with pytest.raises(GrafanaError, match="token is wrong or expired") as bad_token:
        GrafanaClient(url, "wrong").health()
    assert bad_token.value.status == 401 and not bad_token.value.retryable
    with pytest.raises(GrafanaError, match="did not answer") as down:
        GrafanaClient("http://127.0.0.1:9", TOKEN, timeout=2).health()
    assert down.value.retryable


def test_cli_push(grafana: tuple[str, FakeGrafana], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from carbonedge.app.cli import main

    url, fake = grafana
    monkeypatch.setenv("CARBONEDGE_GRAFANA_TOKEN", TOKEN)
    monkeypatch.setenv("CARBONEDGE_GRAFANA_INFLUX_PASSWORD", "pw-from-env")
    assert main(["grafana", "push", "--url", url, "--influx-url", "http://10.0.0.5:8086"]) == 0
    out = capsys.readouterr().out
    assert "Grafana 11.3.0" in out and "5 dashboards pushed" in out
    assert fake.datasources["carbonedge-influxdb"]["url"] == "http://10.0.0.5:8086"
    monkeypatch.delenv("CARBONEDGE_GRAFANA_TOKEN")
    assert main(["grafana", "push", "--url", url]) == 2
    assert "no Grafana token" in capsys.readouterr().err

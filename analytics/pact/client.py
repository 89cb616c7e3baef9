"""A PACT client: token, ListFootprints with paging, GetFootprint and Action Events, over HTTPS.

Used by the importer (``carbonedge pact fetch``) and by the host for its callbacks and
published events. Plain HTTP is refused except to a loopback address (development).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import requests

from carbonedge.analytics.pact.schema import PactError

CE_JSON = "application/cloudevents+json; charset=UTF-8"


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(url: str) -> str:
    u = urlparse(url)
    if u.scheme not in ("https", "http") or not u.hostname:
        raise PactError(f"{url!r} is not an http(s) URL")
    if u.scheme == "http" and not is_loopback(u.hostname):
        raise PactError(f"{url}: PACT requires HTTPS; plain HTTP is allowed only to a loopback address for development")
    return url.rstrip("/")


def parse_link(header: str | None) -> dict[str, str]:
    """RFC 8288 Link header -> {rel: target}."""
    out: dict[str, str] = {}
    for part in (header or "").split(","):
        seg = [s.strip() for s in part.split(";")]
        if not seg[0].startswith("<") or not seg[0].endswith(">"):
            continue
        for p in seg[1:]:
            if p.replace(" ", "").lower().startswith("rel="):
                for rel in p.split("=", 1)[1].strip().strip('"').split():
                    out[rel] = seg[0][1:-1]
    return out


class PactClient:
    """One data owner's host as seen by a data recipient (``version`` "3.0" or "2.3")."""

    def __init__(self, base_url: str, client_id: str, client_secret: str, *, version: str = "3.0", ca_file: str | None = None,
                 timeout_s: float = 15.0, token_url: str | None = None) -> None:
        self.base = check_url(base_url)
        self.client_id, self.secret = client_id, client_secret
        self.version = version
        if version not in ("3.0", "2.3"):
            raise PactError(f"PACT version {version!r}: carbonedge speaks 3.0 and 2.3")
        self.verify: str | bool = ca_file or True
        self.timeout = timeout_s
        self.token_url = token_url
        self._token: tuple[str, float] | None = None
        self.session = requests.Session()

    @property
    def prefix(self) -> str:
        return "/3" if self.version == "3.0" else "/2"

    def _send(self, method: str, url: str, **kw: Any) -> requests.Response:
        check_url(url)
        try:
            return self.session.request(method, url, timeout=self.timeout, verify=self.verify, allow_redirects=False, **kw)
        except requests.exceptions.SSLError as exc:
            raise PactError(f"{url}: TLS certificate not trusted ({exc.__class__.__name__}); give the host's CA with --ca-file") from None
        except requests.RequestException as exc:
            raise PactError(f"{url}: {exc.__class__.__name__}: {exc}") from None

    def token(self, *, refresh: bool = False) -> str:
        if self._token and not refresh and self._token[1] > time.time() + 30:
            return self._token[0]
        url = self.token_url or f"{self.base}/auth/token"
        r = self._send("POST", url, data={"grant_type": "client_credentials"}, auth=(self.client_id, self.secret),
                       headers={"Accept": "application/json"})
        if r.status_code != 200:
            raise PactError(f"{url}: authentication as {self.client_id!r} refused (HTTP {r.status_code}: {r.text[:200]})")
        try:
            body = r.json()
            tok = str(body["access_token"])
        except (ValueError, KeyError, TypeError):
            raise PactError(f"{url}: the token response has no access_token") from None
        self._token = (tok, time.time() + float(body.get("expires_in", 300)))
        return tok

    def _authed(self, method: str, url: str, **kw: Any) -> requests.Response:
        headers = dict(kw.pop("headers", {}))
        for attempt in (0, 1):
            headers["Authorization"] = f"Bearer {self.token(refresh=attempt == 1)}"
            r = self._send(method, url, headers=headers, **kw)
            if r.status_code != 401 or attempt == 1:
                return r
        return r

    @staticmethod
    def _error(r: requests.Response, what: str) -> PactError:
        try:
            b = r.json()
            msg = f"{b.get('code')}: {b.get('message')}"
        except ValueError:
            msg = r.text[:200]
        return PactError(f"{what}: HTTP {r.status_code} ({msg})")

    def list(self, params: dict[str, Any] | None = None, *, limit: int | None = 100) -> Iterator[dict[str, Any]]:
        """Every footprint matching ``params``, following ``Link: rel="next"`` pages."""
        p = dict(params or {})
        if limit:
            p["limit"] = limit
        url: str | None = f"{self.base}{self.prefix}/footprints"
        first = True
        seen = 0
        while url:
            r = self._authed("GET", url, params=p if first else None, headers={"Accept": "application/json"})
            first = False
            if r.status_code not in (200, 202):
                raise self._error(r, f"ListFootprints at {self.base}")
            try:
                data = r.json()["data"]
            except (ValueError, KeyError):
                raise PactError(f"ListFootprints at {self.base}: the response has no data list") from None
            yield from data
            seen += len(data)
            nxt = parse_link(r.headers.get("Link")).get("next")
            if nxt and urlparse(nxt).netloc != urlparse(url).netloc:
                raise PactError(f"ListFootprints at {self.base}: pagination link {nxt} leaves the host; refused")
            url = nxt if nxt and data else None
            if seen > 1_000_000:
                raise PactError(f"ListFootprints at {self.base}: more than a million footprints; stopped")

    def get(self, pf_id: str) -> dict[str, Any]:
        r = self._authed("GET", f"{self.base}{self.prefix}/footprints/{pf_id}", headers={"Accept": "application/json"})
        if r.status_code != 200:
            raise self._error(r, f"GetFootprint {pf_id} at {self.base}")
        try:
            return dict(r.json()["data"])
        except (ValueError, KeyError, TypeError):
            raise PactError(f"GetFootprint {pf_id} at {self.base}: the response has no data object") from None

    def post_event(self, event: dict[str, Any]) -> None:
        import json

        r = self._authed("POST", f"{self.base}{self.prefix}/events", data=json.dumps(event), headers={"Content-Type": CE_JSON})
        if r.status_code not in (200, 202, 204):
            raise self._error(r, f"event {event.get('type')} to {self.base}")

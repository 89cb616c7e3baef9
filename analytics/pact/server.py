"""``carbonedge pact serve``: the PACT v3.0 host (Starlette on uvicorn, SQLite storage, TLS).

Endpoints (PACT Technical Specifications v3.0, rest-api): ``POST /auth/token`` (OAuth 2.0
client credentials, RFC 6749 4.4, HTTP Basic client authentication), ``GET /3/footprints``
(filters, ``limit``, ``Link: rel="next"`` paging), ``GET /3/footprints/{id}`` and
``POST /3/events`` (CloudEvents 1.0, structured mode). Errors are the specification's
``{"code", "message"}`` objects: BadRequest 400, TokenExpired 401, AccessDenied 403,
NotFound 404, InternalError 500; the token endpoint answers in RFC 6749 form (``invalid_client``).

Events: a ``RequestCreatedEvent`` is answered asynchronously with a ``RequestFulfilledEvent``
(the footprints matching its filters) or a ``RequestRejectedEvent`` (none match), POSTed to
``<source>/3/events`` with a token from ``<source>/auth/token`` using the credentials that
recipient issued to this plant (``carbonedge pact partner add``). A ``PublishedEvent`` from a
supplier makes the plant fetch the named footprints again (:mod:`analytics.pact.importer`).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from carbonedge.analytics.pact.client import PactClient, check_url, is_loopback
from carbonedge.analytics.pact.schema import PactError, errors, parse_datetime
from carbonedge.analytics.pact.store import Store

log = logging.getLogger("carbonedge.pact")

EV_CREATED = "org.wbcsd.pact.ProductFootprint.RequestCreatedEvent.3"
EV_FULFILLED = "org.wbcsd.pact.ProductFootprint.RequestFulfilledEvent.3"
EV_REJECTED = "org.wbcsd.pact.ProductFootprint.RequestRejectedEvent.3"
EV_PUBLISHED = "org.wbcsd.pact.ProductFootprint.PublishedEvent.3"
EVENT_SCHEMAS = {EV_CREATED: "RequestCreatedEvent", EV_FULFILLED: "RequestFulfilledEvent", EV_REJECTED: "RequestRejectedEvent",
                 EV_PUBLISHED: "PublishedEvent"}
#: Query parameters of ListFootprints (matched case-insensitively, as the specification's examples write them).
FILTERS = {"productid": "productId", "companyid": "companyId", "geography": "geography", "classification": "classification",
           "validon": "validOn", "validafter": "validAfter", "validbefore": "validBefore", "status": "status"}
MAX_LIMIT = 1000


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status, headers=headers)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


# ----------------------------------------------------------------------------- filters
def _lower(xs: list[str]) -> set[str]:
    return {x.lower() for x in xs}


def parse_filters(items: list[tuple[str, str]]) -> dict[str, list[str]]:
    """Query items -> {canonical filter name: values}; unknown names and bad dates are BadRequest."""
    out: dict[str, list[str]] = {}
    for k, v in items:
        name = FILTERS.get(k.lower())
        if name is None:
            raise ApiError(400, "BadRequest", f"unknown filter {k!r}; ListFootprints filters are: {', '.join(FILTERS.values())}, limit")
        if name.startswith("valid"):
            if name in out:
                raise ApiError(400, "BadRequest", f"{name} given more than once")
            try:
                parse_datetime(v)
            except ValueError as exc:
                raise ApiError(400, "BadRequest", f"{name}: {exc}") from None
        out.setdefault(name, []).append(v)
    return out


def _validity(pf: dict[str, Any]) -> tuple[datetime, datetime]:
    """Validity period; without one, the specification's default: reference period end + 3 years."""
    if pf.get("validityPeriodStart") and pf.get("validityPeriodEnd"):
        return parse_datetime(pf["validityPeriodStart"]), parse_datetime(pf["validityPeriodEnd"])
    end = parse_datetime(pf["pcf"]["referencePeriodEnd"])
    return end, end.replace(year=end.year + 3)


def matches(pf: dict[str, Any], f: dict[str, list[str]]) -> bool:
    """OR within a criterion, AND between criteria, case-insensitive (ListFootprints, Filtering)."""
    if "productId" in f and not _lower(pf["productIds"]) & _lower(f["productId"]):
        return False
    if "companyId" in f and not _lower(pf["companyIds"]) & _lower(f["companyId"]):
        return False
    if "classification" in f and not _lower(pf.get("productClassifications") or []) & _lower(f["classification"]):
        return False
    if "status" in f and pf["status"].lower() not in _lower(f["status"]):
        return False
    if "geography" in f:
        c = pf["pcf"]
        geo = {str(c[k]).lower() for k in ("geographyCountry", "geographyRegionOrSubregion", "geographyCountrySubdivision") if c.get(k)}
        if c.get("geographyCountrySubdivision"):
            geo.add(str(c["geographyCountrySubdivision"]).split("-")[0].lower())
        if not geo & _lower(f["geography"]):
            return False
    if any(k in f for k in ("validOn", "validAfter", "validBefore")):
        start, end = _validity(pf)
        if "validOn" in f and not start <= parse_datetime(f["validOn"][0]) <= end:
            return False
        if "validAfter" in f and not start > parse_datetime(f["validAfter"][0]):
            return False
        if "validBefore" in f and not end < parse_datetime(f["validBefore"][0]):
            return False
    return True


def request_filters(data: dict[str, Any]) -> dict[str, list[str]]:
    """The filters of a RequestCreatedEvent's data (same criteria as ListFootprints)."""
    out: dict[str, list[str]] = {}
    for k, v in data.items():
        if k == "comment":
            continue
        name = FILTERS.get(k.lower())
        if name is None:
            raise ApiError(400, "BadRequest", f"RequestCreatedEvent: unknown criterion {k!r}")
        out[name] = [str(x) for x in v] if isinstance(v, list) else [str(v)]
    return out


# ----------------------------------------------------------------------------- outgoing events
class Dispatcher:
    """Sends events to other hosts from one background thread, retrying with exponential backoff."""

    def __init__(self, store: Store, *, retries: int = 6, first_delay_s: float = 1.0) -> None:
        self.store = store
        self.retries, self.first_delay = retries, first_delay_s
        self.q: queue.Queue[tuple[Callable[[], None], int, str] | None] = queue.Queue()
        self.t = threading.Thread(target=self._run, name="pact-events", daemon=True)
        self.t.start()

    def submit(self, job: Callable[[], None], log_n: int, what: str) -> None:
        self.q.put((job, log_n, what))

    def _run(self) -> None:
        while True:
            item = self.q.get()
            if item is None:
                return
            job, n, what = item
            delay = self.first_delay
            for attempt in range(1, self.retries + 1):
                try:
                    job()
                    self.store.set_event_state(n, "delivered", f"attempt {attempt}")
                    log.info("%s: delivered", what)
                    break
                except Exception as exc:  # noqa: BLE001 - every failure is recorded and retried
                    self.store.set_event_state(n, "retrying" if attempt < self.retries else "failed", f"attempt {attempt}: {exc}")
                    log.warning("%s: attempt %d failed: %s", what, attempt, exc)
                    if attempt < self.retries:
                        time.sleep(delay)
                        delay *= 2

    def close(self, timeout_s: float = 5.0) -> None:
        self.q.put(None)
        self.t.join(timeout_s)


def source_base(source: str) -> str:
    """The host base URL behind an event's ``source`` (``https://h/3/events`` -> ``https://h``; ``//h`` -> ``https://h``)."""
    s = source.strip()
    if s.startswith("//"):
        s = "https:" + s
    s = s.rstrip("/")
    for suffix in ("/3/events", "/2/events", "/events"):
        if s.endswith(suffix):
            s = s[: -len(suffix)]
    return s


def new_event(ev_type: str, source: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": ev_type, "specversion": "1.0", "id": str(uuid.uuid4()), "source": source,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "data": data}


def partner_client(store: Store, base: str) -> PactClient:
    p = store.partner(base)
    if p is None:
        raise PactError(f"no credentials for {base}: register the recipient's host with `carbonedge pact partner add`")
    return PactClient(p["base_url"], p["client_id"], p["client_secret"], ca_file=p["ca_file"])


# ----------------------------------------------------------------------------- the application
def create_app(store: Store, *, token_ttl_s: float = 3600.0, max_body: int = 1 << 20, self_url: str = "",
               allow_plain_http: bool = False, dispatcher: Dispatcher | None = None) -> Starlette:
    """The ASGI application. ``self_url`` is this host's public base URL (the ``source`` of its events)."""
    disp = dispatcher or Dispatcher(store)

    def require(request: Request, scope: str | None) -> tuple[str, tuple[str, ...]]:
        auth = request.headers.get("authorization", "")
        if not auth.lower().startswith("bearer ") or not auth[7:].strip():
            raise ApiError(401, "BadRequest", "missing bearer token (Authorization: Bearer <token> from /auth/token)",
                           {"WWW-Authenticate": 'Bearer realm="pact"'})
        tok = store.token(auth[7:].strip())
        if tok is None:
            raise ApiError(401, "BadRequest", "invalid token provided", {"WWW-Authenticate": 'Bearer realm="pact", error="invalid_token"'})
        client, scopes, expires = tok
        if expires < time.time():
            raise ApiError(401, "TokenExpired", "the access token has expired; obtain a new one from /auth/token",
                           {"WWW-Authenticate": 'Bearer realm="pact", error="invalid_token", error_description="expired"'})
        if scope and scope not in scopes:
            raise ApiError(403, "AccessDenied", f"the token lacks the scope {scope}")
        return client, scopes

    async def body_of(request: Request) -> bytes:
        cl = request.headers.get("content-length")
        if cl is not None and (not cl.isdigit() or int(cl) > max_body):
            raise ApiError(413, "BadRequest", f"request body larger than {max_body} bytes")
        buf = bytearray()
        async for chunk in request.stream():
            buf += chunk
            if len(buf) > max_body:
                raise ApiError(413, "BadRequest", f"request body larger than {max_body} bytes")
        return bytes(buf)

    def oauth_error(status: int, err: str, desc: str) -> JSONResponse:
        h = {"Cache-Control": "no-store"}
        if status == 401:
            h["WWW-Authenticate"] = 'Basic realm="pact"'
        return JSONResponse({"error": err, "error_description": desc}, status_code=status, headers=h)

    async def auth_token(request: Request) -> Response:
        body = await body_of(request)
        auth = request.headers.get("authorization", "")
        if not auth.lower().startswith("basic "):
            return oauth_error(401, "invalid_client", "client authentication failed: HTTP Basic authentication is required")
        try:
            cid, _, secret = base64.b64decode(auth[6:].strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return oauth_error(401, "invalid_client", "client authentication failed: malformed Basic credentials")
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            return oauth_error(400, "invalid_request", "the body must be application/x-www-form-urlencoded")
        try:
            form = dict(parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=bool(body)))
        except (ValueError, UnicodeDecodeError):
            return oauth_error(400, "invalid_request", "the body is not a valid form")
        scopes = store.authenticate(cid, secret)
        if scopes is None:
            return oauth_error(401, "invalid_client", "client authentication failed")
        if form.get("grant_type") != "client_credentials":
            return oauth_error(400, "unsupported_grant_type", "only grant_type=client_credentials is supported")
        want = tuple(form["scope"].split()) if form.get("scope") else scopes
        if not set(want) <= set(scopes):
            return oauth_error(400, "invalid_scope", f"this client may have {' '.join(scopes)}")
        tok = store.issue_token(cid, want, token_ttl_s)
        return JSONResponse({"access_token": tok, "token_type": "bearer", "expires_in": int(token_ttl_s), "scope": " ".join(want)},
                            headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    async def list_footprints(request: Request) -> Response:
        require(request, "footprint:list")
        items = request.query_params.multi_items()
        limit, offset = MAX_LIMIT, 0
        rest = []
        for k, v in items:
            if k.lower() in ("limit", "offset"):
                if not v.isdigit() or (k.lower() == "limit" and int(v) < 1):
                    raise ApiError(400, "BadRequest", f"{k} must be a {'positive' if k.lower() == 'limit' else 'non-negative'} integer, got {v!r}")
                if k.lower() == "limit":
                    limit = min(int(v), MAX_LIMIT)
                else:
                    offset = int(v)
            else:
                rest.append((k, v))
        f = parse_filters(rest)
        sel = [pf for pf in store.footprints() if matches(pf, f)]
        page = sel[offset: offset + limit]
        headers = {}
        if offset + limit < len(sel):
            q = urlencode([*rest, ("limit", str(limit)), ("offset", str(offset + limit))])
            headers["Link"] = f'<{request.url.replace(query=q)}>; rel="next"'
        return JSONResponse({"data": page}, headers=headers)

    async def get_footprint(request: Request) -> Response:
        require(request, "footprint:read")
        pf_id = request.path_params["id"]
        try:
            uuid.UUID(pf_id)
        except ValueError:
            raise ApiError(400, "BadRequest", f"{pf_id!r} is not a footprint id (a UUID)") from None
        pf = store.footprint(pf_id.lower())
        if pf is None:
            raise ApiError(404, "NotFound", f"no footprint with id {pf_id}")
        return JSONResponse({"data": pf})

    async def events(request: Request) -> Response:
        client, scopes = require(request, None)
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in ("application/cloudevents+json", "application/json"):
            raise ApiError(400, "BadRequest", "events are CloudEvents in structured mode: Content-Type application/cloudevents+json")
        raw = await body_of(request)
        try:
            ev = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, "BadRequest", f"the body is not valid JSON: {exc}") from None
        if not isinstance(ev, dict):
            raise ApiError(400, "BadRequest", "the event must be a JSON object")
        name = EVENT_SCHEMAS.get(str(ev.get("type")))
        if name is None:
            raise ApiError(400, "BadRequest", f"unknown event type {ev.get('type')!r}; accepted: {', '.join(EVENT_SCHEMAS)}")
        errs = errors(ev, name)
        if errs:
            raise ApiError(400, "BadRequest", f"invalid {name}: " + "; ".join(errs[:3]))
        base = source_base(str(ev["source"]))
        if name == "RequestCreatedEvent":
            if "footprint:list" not in scopes:
                raise ApiError(403, "AccessDenied", "requesting footprints needs the scope footprint:list")
            filters = request_filters(ev["data"])
            try:
                check_url(base)
            except PactError as exc:
                raise ApiError(400, "BadRequest", f"cannot answer to source {ev['source']!r}: {exc}") from None
            if store.partner(base) is None:
                raise ApiError(400, "BadRequest", f"cannot answer to {base}: this host has no credentials for it "
                               "(the data owner registers them with `carbonedge pact partner add`)")
            n = store.log_event("in", client, ev, "accepted")
            answer_request(store, disp, ev, filters, base, self_url or str(request.base_url).rstrip("/"), n)
        elif name == "PublishedEvent":
            store.log_event("in", client, ev, "accepted")
            sup = store.supplier(base)
            if sup is not None:
                from carbonedge.analytics.pact.importer import refresh_published

                n = store.log_event("internal", base, ev, "queued", "fetch the published footprints")
                disp.submit(lambda: refresh_published(store, sup, list(ev["data"]["pfIds"])), n, f"refresh from {base}")
        else:
            store.log_event("in", client, ev, "accepted")
            sup = store.supplier(base)
            if name == "RequestFulfilledEvent" and sup is not None:
                from carbonedge.analytics.pact.importer import record_footprints

                record_footprints(store, sup, list(ev["data"]["pfs"]), "3.0")
        return Response(status_code=200)

    async def not_found(request: Request, exc: Exception) -> Response:
        return error(404, "NotFound", f"no such endpoint: {request.method} {request.url.path}")

    async def http_exc(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            return await not_found(request, exc)
        return error(exc.status_code, "BadRequest", str(exc.detail), dict(exc.headers or {}))

    async def api_exc(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error(exc.status, exc.code, exc.message, exc.headers)

    async def internal(request: Request, exc: Exception) -> Response:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return error(500, "InternalError", "internal error; the host's log has the details")

    routes = [
        Route("/auth/token", auth_token, methods=["POST"]),
        Route("/3/footprints", list_footprints, methods=["GET"]),
        Route("/3/footprints/{id}", get_footprint, methods=["GET"]),
        Route("/3/events", events, methods=["POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_exc, ApiError: api_exc, Exception: internal})

    @app.middleware("http")
    async def tls_only(request: Request, call_next: Callable[[Request], Any]) -> Response:
        if request.url.scheme != "https" and not (allow_plain_http and is_loopback(request.client.host if request.client else None)):
            return error(403, "AccessDenied", "PACT requires HTTPS")
        return await call_next(request)

    app.state.store, app.state.dispatcher = store, disp
    return app


def answer_request(store: Store, disp: Dispatcher, ev: dict[str, Any], filters: dict[str, list[str]], base: str, self_url: str, n: int) -> None:
    """Queue the Fulfilled (or Rejected) answer to a RequestCreatedEvent."""
    found = [pf for pf in store.footprints() if matches(pf, filters)]
    if "status" not in filters:
        found = [pf for pf in found if pf["status"] == "Active"] or found
    if found:
        out = new_event(EV_FULFILLED, f"{self_url}/3/events", {"requestEventId": ev["id"], "pfs": found})
    else:
        out = new_event(EV_REJECTED, f"{self_url}/3/events", {"requestEventId": ev["id"], "error": {
            "code": "NotFound", "message": "no footprint matches the request: " + json.dumps(ev["data"])}})
    m = store.log_event("out", base, out, "queued", f"answer to event {ev['id']} (log {n})")
    disp.submit(lambda: partner_client(store, base).post_event(out), m, f"{out['type'].rsplit('.', 2)[-2]} to {base}")


def notify_published(store: Store, disp: Dispatcher | None, pf_ids: list[str], self_url: str) -> tuple[list[str], list[str]]:
    """Send a PublishedEvent for ``pf_ids`` to every partner registered for notifications.

    Without a dispatcher each is sent now, once; returns (partners reached, "partner: reason" for each failure).
    Every event is in the event log with its delivery state.
    """
    sent, failed = [], []
    for p in store.partners(notify_only=True):
        ev = new_event(EV_PUBLISHED, f"{self_url}/3/events", {"pfIds": pf_ids})
        n = store.log_event("out", p["base_url"], ev, "queued")
        base = p["base_url"]
        job = (lambda b=base, e=ev: partner_client(store, b).post_event(e))
        if disp is None:
            try:
                job()
                store.set_event_state(n, "delivered")
                sent.append(base)
            except PactError as exc:
                store.set_event_state(n, "failed", str(exc))
                failed.append(f"{base}: {exc}")
        else:
            disp.submit(job, n, f"PublishedEvent to {base}")
            sent.append(base)
    return sent, failed


def serve(store: Store, *, host: str, port: int, certfile: str | None, keyfile: str | None, insecure_http: bool = False,
          public_url: str | None = None, log_level: str = "info", token_ttl_s: float = 3600.0, max_body: int = 1 << 20) -> None:
    """Run the host until SIGINT/SIGTERM. Without a certificate only a loopback address with ``insecure_http`` is allowed."""
    import uvicorn

    if not (certfile and keyfile):
        if not (insecure_http and is_loopback(host)):
            raise PactError("a PACT host serves HTTPS: give --cert and --key (plain HTTP only with --insecure-http on a loopback address)")
    scheme = "https" if certfile else "http"
    self_url = (public_url or f"{scheme}://{host if ':' not in host else f'[{host}]'}:{port}").rstrip("/")
    store.set_meta("public_url", self_url)
    app = create_app(store, self_url=self_url, allow_plain_http=insecure_http, token_ttl_s=token_ttl_s, max_body=max_body)
    cfg = uvicorn.Config(app, host=host, port=port, ssl_certfile=certfile, ssl_keyfile=keyfile, log_level=log_level,
                         proxy_headers=False, server_header=False, access_log=log_level == "debug")
    uvicorn.Server(cfg).run()

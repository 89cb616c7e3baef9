"""The PACT host's SQLite database: footprints, clients, tokens, partners, suppliers and events.

One file per plant (default ``pact.sqlite``). It holds both roles: what the plant publishes
(``footprints``), who may read it (``clients``, secrets stored as scrypt hashes; ``tokens``
as SHA-256 hashes), whom it notifies and answers (``partners``, with the credentials their
hosts issued to this plant), and what it bought (``suppliers``, ``purchased``).

Partner and supplier secrets must be presented to other hosts, so they are stored as given:
the file is created with mode 0600.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from carbonedge.analytics.pact.schema import PactError

SCOPES = ("footprint:list", "footprint:read")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS footprints (
  id TEXT PRIMARY KEY, product TEXT NOT NULL, status TEXT NOT NULL, created TEXT NOT NULL, doc TEXT NOT NULL,
  seq INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS footprints_seq ON footprints(seq);
CREATE TABLE IF NOT EXISTS clients (
  client_id TEXT PRIMARY KEY, secret_hash TEXT NOT NULL, scopes TEXT NOT NULL, label TEXT, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
  token_hash TEXT PRIMARY KEY, client_id TEXT NOT NULL, scopes TEXT NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS partners (
  base_url TEXT PRIMARY KEY, client_id TEXT NOT NULL, client_secret TEXT NOT NULL, ca_file TEXT, notify INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS suppliers (
  base_url TEXT PRIMARY KEY, client_id TEXT NOT NULL, client_secret TEXT NOT NULL, ca_file TEXT, version TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS purchased (
  pf_id TEXT PRIMARY KEY, supplier TEXT NOT NULL, product_ids TEXT NOT NULL, summary TEXT NOT NULL, doc TEXT NOT NULL,
  fetched REAL NOT NULL, superseded_by TEXT);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
  n INTEGER PRIMARY KEY AUTOINCREMENT, direction TEXT NOT NULL, peer TEXT, type TEXT NOT NULL, event_id TEXT, state TEXT NOT NULL,
  detail TEXT, body TEXT NOT NULL, at REAL NOT NULL);
"""


def hash_secret(secret: str, salt: bytes | None = None) -> str:
    """scrypt (RFC 7914; n=2^14, r=8, p=1) of a client secret: ``scrypt$<salt hex>$<hash hex>``."""
    salt = salt or secrets.token_bytes(16)
    h = hashlib.scrypt(secret.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    return f"scrypt${salt.hex()}${h.hex()}"


def verify_secret(secret: str, stored: str) -> bool:
    try:
        _, salt, want = stored.split("$")
        got = hash_secret(secret, bytes.fromhex(salt)).split("$")[2]
    except ValueError:
        return False
    return hmac.compare_digest(got, want)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Store:
    """Thread-safe access to the host database (one connection, serialised)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise PactError(f"{self.path} is not a usable PACT database: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _q(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def set_meta(self, key: str, value: str) -> None:
        self._q("INSERT OR REPLACE INTO meta VALUES (?,?)", (key, value))

    def meta(self, key: str) -> str | None:
        row = self._q("SELECT value FROM meta WHERE key=?", (key,))
        return str(row[0][0]) if row else None

    # -------------------------------------------------------------- clients and tokens
    def add_client(self, client_id: str, secret: str | None = None, scopes: tuple[str, ...] = SCOPES, label: str = "") -> str:
        """Register a data recipient; returns the secret (generated when not given). Never stored in the clear."""
        if not client_id or ":" in client_id:
            raise PactError(f"client id {client_id!r}: must be non-empty and without ':' (HTTP Basic authentication)")
        bad = [s for s in scopes if s not in SCOPES]
        if bad:
            raise PactError(f"unknown scope(s) {', '.join(bad)}; known: {', '.join(SCOPES)}")
        if self._q("SELECT 1 FROM clients WHERE client_id=?", (client_id,)):
            raise PactError(f"client {client_id!r} already exists (remove it first to issue a new secret)")
        secret = secret or secrets.token_urlsafe(32)
        self._q("INSERT INTO clients VALUES (?,?,?,?,?)", (client_id, hash_secret(secret), " ".join(scopes), label, time.time()))
        return secret

    def remove_client(self, client_id: str) -> bool:
        with self._lock:
            self._q("DELETE FROM tokens WHERE client_id=?", (client_id,))
            return self._db.execute("DELETE FROM clients WHERE client_id=?", (client_id,)).rowcount > 0

    def clients(self) -> list[dict[str, Any]]:
        return [{"client_id": c, "scopes": s.split(), "label": lb} for c, s, lb in self._q("SELECT client_id, scopes, label FROM clients ORDER BY client_id")]

    def authenticate(self, client_id: str, secret: str) -> tuple[str, ...] | None:
        """The client's scopes when the secret is right, else None."""
        row = self._q("SELECT secret_hash, scopes FROM clients WHERE client_id=?", (client_id,))
        if not row or not verify_secret(secret, row[0][0]):
            return None
        return tuple(row[0][1].split())

    def issue_token(self, client_id: str, scopes: tuple[str, ...], ttl_s: float) -> str:
        tok = secrets.token_urlsafe(32)
        now = time.time()
        with self._lock:
            self._q("DELETE FROM tokens WHERE expires < ?", (now - 86400,))
            self._q("INSERT INTO tokens VALUES (?,?,?,?)", (_token_hash(tok), client_id, " ".join(scopes), now + ttl_s))
        return tok

    def token(self, token: str) -> tuple[str, tuple[str, ...], float] | None:
        """(client id, scopes, expiry) of a token this host issued, else None."""
        row = self._q("SELECT client_id, scopes, expires FROM tokens WHERE token_hash=?", (_token_hash(token),))
        if not row:
            return None
        return row[0][0], tuple(row[0][1].split()), float(row[0][2])

    # -------------------------------------------------------------- footprints
    def publish(self, doc: dict[str, Any]) -> list[str]:
        """Store an Active footprint; earlier Active footprints of the same product become Deprecated. Returns their ids."""
        product = doc["productIds"][0]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                old = []
                for fid, d in self._db.execute("SELECT id, doc FROM footprints WHERE product=? AND status='Active'", (product,)).fetchall():
                    od = json.loads(d)
                    od["status"] = "Deprecated"
                    self._db.execute("UPDATE footprints SET status='Deprecated', doc=? WHERE id=?", (json.dumps(od), fid))
                    old.append(fid)
                seq = (self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM footprints").fetchone()[0]) + 1
                self._db.execute("INSERT INTO footprints VALUES (?,?,?,?,?,?)", (doc["id"], product, doc["status"], doc["created"], json.dumps(doc), seq))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return old

    def active_ids(self, product: str) -> list[str]:
        return [r[0] for r in self._q("SELECT id FROM footprints WHERE product=? AND status='Active'", (product,))]

    def footprints(self) -> list[dict[str, Any]]:
        """Every footprint, newest publication first."""
        return [json.loads(d) for (d,) in self._q("SELECT doc FROM footprints ORDER BY seq DESC")]

    def footprint(self, pf_id: str) -> dict[str, Any] | None:
        row = self._q("SELECT doc FROM footprints WHERE id=?", (pf_id,))
        return json.loads(row[0][0]) if row else None

    # -------------------------------------------------------------- partners (recipients we call back) and suppliers
    def add_partner(self, base_url: str, client_id: str, client_secret: str, *, ca_file: str | None = None, notify: bool = True) -> None:
        self._q("INSERT OR REPLACE INTO partners VALUES (?,?,?,?,?)", (base_url.rstrip("/"), client_id, client_secret, ca_file, int(notify)))

    def partner(self, base_url: str) -> dict[str, Any] | None:
        row = self._q("SELECT base_url, client_id, client_secret, ca_file, notify FROM partners WHERE base_url=?", (base_url.rstrip("/"),))
        return dict(zip(("base_url", "client_id", "client_secret", "ca_file", "notify"), row[0])) if row else None

    def partners(self, notify_only: bool = False) -> list[dict[str, Any]]:
        rows = self._q("SELECT base_url, client_id, client_secret, ca_file, notify FROM partners" + (" WHERE notify=1" if notify_only else ""))
        return [dict(zip(("base_url", "client_id", "client_secret", "ca_file", "notify"), r)) for r in rows]

    def add_supplier(self, base_url: str, client_id: str, client_secret: str, *, ca_file: str | None, version: str) -> None:
        self._q("INSERT OR REPLACE INTO suppliers VALUES (?,?,?,?,?)", (base_url.rstrip("/"), client_id, client_secret, ca_file, version))

    def supplier(self, base_url: str) -> dict[str, Any] | None:
        row = self._q("SELECT base_url, client_id, client_secret, ca_file, version FROM suppliers WHERE base_url=?", (base_url.rstrip("/"),))
        return dict(zip(("base_url", "client_id", "client_secret", "ca_file", "version"), row[0])) if row else None

    def suppliers(self) -> list[dict[str, Any]]:
        rows = self._q("SELECT base_url, client_id, client_secret, ca_file, version FROM suppliers")
        return [dict(zip(("base_url", "client_id", "client_secret", "ca_file", "version"), r)) for r in rows]

    def record_purchased(self, supplier: str, summary: dict[str, Any], doc: dict[str, Any]) -> bool:
        """Store a supplier footprint; returns True when it is new. Footprints it names as preceding are marked superseded."""
        with self._lock:
            new = not self._q("SELECT 1 FROM purchased WHERE pf_id=?", (summary["pf_id"],))
            self._q("INSERT OR REPLACE INTO purchased VALUES (?,?,?,?,?,?,(SELECT superseded_by FROM purchased WHERE pf_id=?))",
                    (summary["pf_id"], supplier, json.dumps(summary["product_ids"]), json.dumps(summary), json.dumps(doc), time.time(), summary["pf_id"]))
            for p in summary.get("preceding", []):
                self._q("UPDATE purchased SET superseded_by=? WHERE pf_id=?", (summary["pf_id"], p))
            if summary["status"] == "Deprecated":
                self._q("UPDATE purchased SET superseded_by=COALESCE(superseded_by, 'deprecated') WHERE pf_id=?", (summary["pf_id"],))
        return new

    def purchased(self, current_only: bool = True) -> list[dict[str, Any]]:
        """Supplier footprints (summaries with ``supplier`` and ``fetched``), newest fetch first."""
        sql = "SELECT supplier, summary, fetched, superseded_by FROM purchased" + (" WHERE superseded_by IS NULL" if current_only else "") + " ORDER BY fetched DESC"
        out = []
        for sup, s, f, by in self._q(sql):
            d = json.loads(s)
            d.update(supplier=sup, fetched=f, superseded_by=by)
            out.append(d)
        return out

    # -------------------------------------------------------------- events
    def log_event(self, direction: str, peer: str | None, ev: dict[str, Any], state: str, detail: str = "") -> int:
        with self._lock:
            cur = self._db.execute("INSERT INTO events (direction, peer, type, event_id, state, detail, body, at) VALUES (?,?,?,?,?,?,?,?)",
                                   (direction, peer, str(ev.get("type", "")), str(ev.get("id", "")), state, detail, json.dumps(ev), time.time()))
            return int(cur.lastrowid or 0)

    def set_event_state(self, n: int, state: str, detail: str = "") -> None:
        self._q("UPDATE events SET state=?, detail=? WHERE n=?", (state, detail, n))

    def events(self) -> list[dict[str, Any]]:
        rows = self._q("SELECT n, direction, peer, type, event_id, state, detail, body, at FROM events ORDER BY n")
        return [dict(zip(("n", "direction", "peer", "type", "event_id", "state", "detail", "body", "at"), r)) for r in rows]

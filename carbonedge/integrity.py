"""Tamper evidence for gateway batches: canonical form, SHA-256 hash chain, Ed25519 signatures, keys, archive.

Construction (one chain per gateway, in ``seq`` order):

- ``hash``  = SHA-256 of the batch's *canonical form*: the batch as JSON without its
  ``integrity`` field, keys sorted, no whitespace, UTF-8, numbers as Python writes them
  (shortest round-trip form). It covers every value, unit, quality, timestamp, event,
  ``seq``, ``boot_id`` and the site and gateway names.
- the signed *header* = canonical JSON of ``{alg, key, site, gateway, seq, prev, hash}``;
  ``sig`` = Ed25519 (RFC 8032) signature of the header by the gateway's private key.
- the chain *link* of a batch = SHA-256 of its header; the next batch carries it as
  ``prev``. The first batch of a chain carries 64 zeros.

A verifier holding only the gateway's public key can therefore prove, per batch, that
the gateway produced exactly these values for this ``seq``, and, along the chain, that
no batch was removed, inserted or put in another place between two batches it holds.
What it cannot prove is written in ``docs/reliability.md`` ("What the verifier proves").

The gateway keeps its chain head across crashes in ``chain.json`` beside the outbox: the
head of the batch being committed is written and fsynced *before* the outbox commit, with
the previous head, so after a power cut the agent resumes from whichever of the two the
outbox actually committed.

The collector keeps an append-only archive of every batch it wrote, raw bytes as received,
one JSON line per batch in ``<state_dir>/archive/<site>/<gateway>.jsonl``; ``carbonedge
verify`` reads it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from carbonedge import wire
from carbonedge.files import atomic_write
from carbonedge.errors import CarbonEdgeError

GENESIS = "0" * 64
ALG = "ed25519"
TRUST_SCHEMA = "carbonedge.trust/1"
ARCHIVE_SCHEMA = "carbonedge.archive/1"
#: Archive lines that carry the payload's own bytes (``batch``) instead of a JSON string (``raw``).
ARCHIVE_SCHEMA_RAW = "carbonedge.archive/2"


class IntegrityError(CarbonEdgeError):
    """A signing key or trust file is missing, unreadable or unsafe."""

    code = "integrity.key"


# ---------------------------------------------------------------------------- canonical form
def canonical_json(obj: Any) -> bytes:
    """Deterministic JSON: sorted keys, no whitespace, UTF-8, NaN refused."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def canonical_batch(batch: wire.Batch) -> bytes:
    """The bytes the batch hash covers: the whole batch except its ``integrity`` field."""
    doc = batch.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"integrity"})
    return canonical_json(doc)


def batch_hash(batch: wire.Batch) -> str:
    return hashlib.sha256(canonical_batch(batch)).hexdigest()


def header_bytes(site: str, gateway: str, key_id: str, seq: int, prev: str, h: str) -> bytes:
    """What the gateway signs: the batch hash bound to its gateway, position and predecessor."""
    return canonical_json({"alg": ALG, "key": key_id, "site": site, "gateway": gateway, "seq": seq, "prev": prev, "hash": h})


def link_of(site: str, gateway: str, integ: wire.Integrity) -> str:
    """The chain link of a batch (what the next batch carries as ``prev``)."""
    return hashlib.sha256(header_bytes(site, gateway, integ.key, integ.seq, integ.prev, integ.hash)).hexdigest()


# ---------------------------------------------------------------------------- keys
def key_id(public: Ed25519PublicKey) -> str:
    """Short, stable name of a public key: the first 16 hex digits of SHA-256 of its raw bytes."""
    return hashlib.sha256(public_raw(public)).hexdigest()[:16]


def public_raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_b64(public: Ed25519PublicKey) -> str:
    return base64.b64encode(public_raw(public)).decode()


def public_from_b64(text: str) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise IntegrityError(f"not an Ed25519 public key (expected 32 bytes in base64): {text[:60]!r}") from exc


def generate_key(path: Path) -> Ed25519PrivateKey:
    """Create a new private key file (PKCS#8 PEM, mode 0600) and ``<path>.pub`` beside it; never overwrites."""
    path = Path(path)
    if path.exists():
        raise IntegrityError(f"{path} already exists; refusing to overwrite a signing key (move it away first if you mean to rotate)")
    path.parent.mkdir(parents=True, exist_ok=True)
    sk = Ed25519PrivateKey.generate()
    pem = sk.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())
    pub = sk.public_key()
    Path(str(path) + ".pub").write_text(f"{ALG} {public_b64(pub)} {key_id(pub)}\n")
    return sk


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Load a gateway signing key; refuse a file that other users can read (it would let them forge data)."""
    path = Path(path)
    try:
        st = path.stat()
        data = path.read_bytes()
    except OSError as exc:
        raise IntegrityError(f"cannot read the signing key {path}: {exc.strerror or exc}") from exc
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise IntegrityError(f"the signing key {path} is readable by other users (mode {stat.S_IMODE(st.st_mode):o}); "
                             f"anyone who can read it can forge this gateway's data. Run: chmod 600 {path}")
    try:
        sk = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise IntegrityError(f"{path} is not an unencrypted PEM private key ({exc})") from exc
    if not isinstance(sk, Ed25519PrivateKey):
        raise IntegrityError(f"{path} holds a {type(sk).__name__}, not an Ed25519 key")
    return sk


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Read a ``.pub`` file written by :func:`generate_key` (``ed25519 <base64> <key id>``)."""
    try:
        text = Path(path).read_text().split()
    except OSError as exc:
        raise IntegrityError(f"cannot read the public key {path}: {exc.strerror or exc}") from exc
    if len(text) < 2 or text[0] != ALG:
        raise IntegrityError(f"{path} is not a carbonedge public key file (expected 'ed25519 <base64> <key id>')")
    return public_from_b64(text[1])


@dataclass(frozen=True)
class TrustedKey:
    key: Ed25519PublicKey
    id: str
    #: Optional validity window (ms since the epoch, batch ``created``) for rotation and revocation.
    valid_from_ms: int | None = None
    valid_until_ms: int | None = None

    def valid_at(self, created_ms: int) -> bool:
        return (self.valid_from_ms is None or created_ms >= self.valid_from_ms) and (
            self.valid_until_ms is None or created_ms < self.valid_until_ms)


class TrustStore:
    """Which public keys may sign for which gateway: the auditor's input, registered at provisioning.

    File format (JSON)::

        {"schema": "carbonedge.trust/1",
         "gateways": {"<site>/<gateway>": [{"key": "<base64>", "id": "<16 hex>", "valid_from": "…", "valid_until": "…"}]}}
    """

    def __init__(self, keys: dict[tuple[str, str], list[TrustedKey]] | None = None) -> None:
        self.keys: dict[tuple[str, str], list[TrustedKey]] = keys or {}

    @classmethod
    def load(cls, path: Path) -> TrustStore:
        path = Path(path)
        try:
            doc = json.loads(path.read_text())
        except OSError as exc:
            raise IntegrityError(f"cannot read the trust file {path}: {exc.strerror or exc}") from exc
        except ValueError as exc:
            raise IntegrityError(f"the trust file {path} is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("schema") != TRUST_SCHEMA or not isinstance(doc.get("gateways"), dict):
            raise IntegrityError(f"{path} is not a carbonedge trust file (expected schema {TRUST_SCHEMA!r} and a 'gateways' object)")
        keys: dict[tuple[str, str], list[TrustedKey]] = {}
        for name, entries in doc["gateways"].items():
            site, _, gw = name.partition("/")
            if not site or not gw:
                raise IntegrityError(f"{path}: gateway names are '<site>/<gateway>', got {name!r}")
            for e in entries:
                pub = public_from_b64(e["key"])
                kid = key_id(pub)
                if e.get("id") not in (None, kid):
                    raise IntegrityError(f"{path}: {name}: key id {e['id']!r} does not match its key ({kid})")
                keys.setdefault((site, gw), []).append(TrustedKey(pub, kid, _ms(e.get("valid_from")), _ms(e.get("valid_until"))))
        return cls(keys)

    def add(self, site: str, gateway: str, public: Ed25519PublicKey) -> str:
        kid = key_id(public)
        lst = self.keys.setdefault((site, gateway), [])
        if all(k.id != kid for k in lst):
            lst.append(TrustedKey(public, kid))
        return kid

    def save(self, path: Path) -> None:
        doc = {"schema": TRUST_SCHEMA, "gateways": {
            f"{s}/{g}": [{"key": public_b64(k.key), "id": k.id,
                          **({"valid_from": _iso(k.valid_from_ms)} if k.valid_from_ms is not None else {}),
                          **({"valid_until": _iso(k.valid_until_ms)} if k.valid_until_ms is not None else {})} for k in lst]
            for (s, g), lst in sorted(self.keys.items())}}
        atomic_write(Path(path), (json.dumps(doc, indent=2) + "\n").encode(), mode=0o644)  # public keys: readable by the services

    def for_gateway(self, site: str, gateway: str) -> list[TrustedKey]:
        return self.keys.get((site, gateway), [])


def _ms(v: Any) -> int | None:
    if v is None:
        return None
    from carbonedge.clock import parse_time

    return int(parse_time(str(v)) * 1000)


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    from carbonedge.clock import iso

    return iso(ms / 1000.0)


# ---------------------------------------------------------------------------- signing (gateway)
@dataclass(frozen=True)
class ChainHead:
    seq: int  # 0 before the first batch
    link: str


class BatchSigner:
    """Signs each batch a gateway commits and chains it to the previous one.

    Use from the outbox transaction: ``signed = signer.sign(batch)`` inside ``build(seq)``,
    then :meth:`committed` once the outbox returned the seq (or :meth:`abandoned` if it
    stored nothing). ``resume(last_committed_seq)`` at start-up picks the right head after
    a crash; if the head cannot be known (the chain file was lost), the chain restarts
    from ``GENESIS`` and the batch says so in the clear: the verifier reports it.
    """

    def __init__(self, key: Ed25519PrivateKey, site: str, gateway: str, state_path: Path) -> None:
        self.key = key
        self.site, self.gateway = site, gateway
        self.key_id = key_id(key.public_key())
        self.state_path = Path(state_path)
        self.head = ChainHead(0, GENESIS)
        self._pending: ChainHead | None = None
        self.restarted = False

    def resume(self, last_committed_seq: int) -> ChainHead:
        """Find the chain head for ``last_committed_seq`` (the outbox's) from the chain file."""
        st: dict[str, Any] = {}
        if self.state_path.exists():
            try:
                st = json.loads(self.state_path.read_text())
            except (OSError, ValueError):
                st = {}
        if last_committed_seq == 0:
            self.head = ChainHead(0, GENESIS)
        elif st.get("seq") == last_committed_seq:
            self.head = ChainHead(last_committed_seq, st["link"])
        elif st.get("prev_seq") == last_committed_seq:  # crashed between writing the chain file and the outbox commit
            self.head = ChainHead(last_committed_seq, st["prev_link"])
        else:
            # The chain file does not match the outbox: restart the chain and leave the break on record.
            self.head = ChainHead(last_committed_seq, GENESIS)
            self.restarted = True
        return self.head

    def sign(self, batch: wire.Batch) -> wire.Batch:
        """Return ``batch`` with its integrity field; persists the pending head before the caller commits."""
        if batch.seq != self.head.seq + 1 and not (self.head.seq == 0 and self.head.link == GENESIS):
            # A seq that does not follow the head (outbox restored from a backup, say): restart the chain visibly.
            self.head = ChainHead(batch.seq - 1, GENESIS)
            self.restarted = True
        h = batch_hash(batch)
        prev = self.head.link
        sig = self.key.sign(header_bytes(self.site, self.gateway, self.key_id, batch.seq, prev, h)).hex()
        integ = wire.Integrity(key=self.key_id, seq=batch.seq, prev=prev, hash=h, sig=sig)
        link = link_of(self.site, self.gateway, integ)
        self._pending = ChainHead(batch.seq, link)
        atomic_write(self.state_path, json.dumps({"seq": batch.seq, "link": link, "prev_seq": self.head.seq,
                                                   "prev_link": self.head.link, "key": self.key_id}).encode())
        return batch.model_copy(update={"integrity": integ})

    def committed(self, seq: int) -> None:
        if self._pending is not None and self._pending.seq == seq:
            self.head = self._pending
        self._pending = None

    def abandoned(self) -> None:
        self._pending = None


# ---------------------------------------------------------------------------- verification of one batch
@dataclass(frozen=True)
class BatchCheck:
    """Result of checking one batch on its own (the chain is checked by the verifier)."""

    status: str  # "ok", "unsigned", "unknown_key", "bad_signature", "hash_mismatch", "seq_mismatch", "key_not_valid"
    link: str | None = None  # chain link, when the signature is good
    content_hash: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def check_batch(batch: wire.Batch, trusted: list[TrustedKey]) -> BatchCheck:
    """Check a batch's signature and content hash against the gateway's trusted keys."""
    h = batch_hash(batch)
    integ = batch.integrity
    if integ is None:
        return BatchCheck("unsigned", None, h)
    cand = [k for k in trusted if k.id == integ.key]
    if not cand:
        return BatchCheck("unknown_key", None, h)
    k = cand[0]
    try:
        k.key.verify(bytes.fromhex(integ.sig), header_bytes(batch.site, batch.gateway, integ.key, integ.seq, integ.prev, integ.hash))
    except (InvalidSignature, ValueError):
        return BatchCheck("bad_signature", None, h)
    link = link_of(batch.site, batch.gateway, integ)
    if not k.valid_at(batch.created):
        return BatchCheck("key_not_valid", link, h)
    if integ.seq != batch.seq:
        return BatchCheck("seq_mismatch", link, h)
    if integ.hash != h:
        return BatchCheck("hash_mismatch", link, h)
    return BatchCheck("ok", link, h)


# ---------------------------------------------------------------------------- archive (collector)
class Archive:
    """Append-only archive of the raw batches a collector wrote: ``<root>/<site>/<gateway>.jsonl``.

    One line per delivery (a redelivered batch appears again; the verifier counts it as a
    duplicate delivery): ``{"schema", "rx" (receive time, ms), "by" (collector id), "seq", "batch"}``
    where ``batch`` is the MQTT payload exactly as received, its bytes written as they came (the
    collector archives only payloads it validated as JSON, so the line is JSON; no escaping).
    A payload holding a line break is written as the JSON string ``raw`` instead (schema
    ``carbonedge.archive/1``, the earlier form, which :func:`read_archive` also reads). Lines are
    fsynced before the collector writes InfluxDB, so every stored point has its evidence on disk.
    """

    def __init__(self, root: Path, collector_id: str) -> None:
        self.root = Path(root)
        self.collector_id = collector_id
        self._files: dict[tuple[str, str], Any] = {}
        self._by = orjson.dumps(collector_id)

    def _file(self, site: str, gateway: str) -> Any:
        f = self._files.get((site, gateway))
        if f is None:
            d = self.root / site
            d.mkdir(parents=True, exist_ok=True)
            f = self._files[(site, gateway)] = open(d / f"{gateway}.jsonl", "ab")
        return f

    def append(self, records: Iterable[tuple[str, str, int, bytes]]) -> int:
        """Append ``(site, gateway, seq, raw payload)`` records and fsync; returns how many."""
        rx = int(time.time() * 1000)
        head = b'{"schema":"' + ARCHIVE_SCHEMA_RAW.encode() + b'","rx":' + str(rx).encode() + b',"by":' + self._by + b',"seq":'
        # One write per file: a write system call per record released the GIL each time, and in a busy
        # collector every release cost a wait of up to the interpreter's switch interval to get it back.
        by_file: dict[tuple[str, str], list[bytes]] = {}
        n = 0
        for site, gw, seq, raw in records:
            if b"\n" in raw:
                line = orjson.dumps({"schema": ARCHIVE_SCHEMA, "rx": rx, "by": self.collector_id, "seq": seq,
                                     "raw": raw.decode("utf-8", "backslashreplace")}) + b"\n"
            else:
                # The payload's own bytes: escaping them into a JSON string took 7 times as long (docs/collector.md).
                line = b"".join((head, str(seq).encode(), _BATCH_KEY, raw, b"}\n"))
            lines = by_file.get((site, gw))
            if lines is None:
                lines = by_file[(site, gw)] = []
            lines.append(line)
            n += 1
        for (site, gw), lines in by_file.items():
            f = self._file(site, gw)
            f.write(b"".join(lines))
            f.flush()
            os.fsync(f.fileno())
        return n

    def close(self) -> None:
        for f in self._files.values():
            try:
                f.close()
            except OSError:
                pass
        self._files.clear()


_BATCH_KEY = b',"batch":'


def _archive_line(line: bytes) -> tuple[dict[str, Any], str]:
    """``(header fields, raw payload)`` of an archive line of either form; raises ValueError."""
    i = line.find(_BATCH_KEY)
    if i < 0:
        d = json.loads(line)
        return d, str(d["raw"])
    body = line.rstrip(b"\r\n")
    if not body.endswith(b"}"):
        raise ValueError("archive line is cut short")
    d = json.loads(line[:i] + b"}")
    if not isinstance(d, dict):
        raise ValueError("archive line has no header")
    raw = body[i + len(_BATCH_KEY):-1]
    orjson.loads(raw)  # a line cut short after an inner "}" is not a batch
    return d, raw.decode("utf-8", "backslashreplace")


@dataclass
class ArchiveRecord:
    site: str
    gateway: str
    line_no: int
    path: Path
    rx: int
    by: str
    raw: str
    seq: int | None = None


def read_archive(root: Path) -> Iterator[ArchiveRecord]:
    """Every record of an archive directory, file by file, in file order (unparseable lines included as raw)."""
    root = Path(root)
    for path in sorted(root.glob("*/*.jsonl")):
        site, gw = path.parent.name, path.stem
        with open(path, "rb") as f:
            for i, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    d, raw = _archive_line(line)
                    seq = d.get("seq")
                    yield ArchiveRecord(site, gw, i, path, int(d.get("rx", 0)), str(d.get("by", "")), raw,
                                        seq if isinstance(seq, int) else None)
                except (ValueError, KeyError, TypeError):
                    yield ArchiveRecord(site, gw, i, path, 0, "", line.decode("utf-8", "backslashreplace"))


# ---------------------------------------------------------------------------- ground-truth ledger (fault tests)
LEDGER_ENV = "CARBONEDGE_LEDGER"


class Ledger:
    """Fault-test instrumentation: every batch the gateway is about to commit, appended to a JSONL file.

    Enabled only when the environment variable ``CARBONEDGE_LEDGER`` names a file. The
    entry is written inside the outbox transaction, *before* the commit, so the ledger
    holds a superset of what was committed: an entry a crash kept from committing is
    superseded by the next boot's batch of the same seq, and the gateway's ``gap`` record
    accounts for it. The fault checker (``tests/faultlib``) compares it with InfluxDB.
    """

    def __init__(self, path: Path) -> None:
        # One file per process start (``<path>.<ns>``, in start order), so each stays smaller than the
        # outbox and a disk-full test cannot starve the ledger before it starves the outbox.
        self._f = open(f"{path}.{time.time_ns()}", "ab")

    @classmethod
    def from_env(cls) -> Ledger | None:
        p = os.environ.get(LEDGER_ENV)
        return cls(Path(p)) if p else None

    def record(self, payload: bytes) -> None:
        self._f.write(payload + b"\n")
        self._f.flush()  # survives a SIGKILL (page cache); the power-cut tests only drop the outbox's unsynced writes

"""Integrity evidence for a published footprint: the signed hash-chain heads of the readings behind it.

For every gateway whose batches fall in the footprint's reference period, the collector archive
is verified (:func:`carbonedge.verify.verify_archive`: signatures, hash chain, no hole) and the
footprint carries, in a PACT Data Model Extension:

- ``site``, ``gateway``, ``keyId`` and ``publicKey`` (Ed25519, base64) of the gateway;
- ``firstSeq``/``lastSeq``, ``batches`` and ``prev`` (the chain link before the first batch);
- ``head``: the last batch's signed header (``seq``, ``prev``, ``hash``) and ``signature``, and
  ``headLink`` = SHA-256 of that header, which commits to every earlier batch of the chain.

A customer checks the signatures with :func:`verify_evidence` (and, with the supplier's trust
file, that the keys are the registered gateway keys); an auditor holding the archive recomputes
the chain from ``prev`` to ``headLink`` and the footprint from the readings in it. A publisher
whose archive shows tampering or loss in the period is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature

from carbonedge.analytics.pact.schema import PactError
from carbonedge.clock import iso
from carbonedge.integrity import TrustStore, header_bytes, key_id, link_of, public_b64, public_from_b64
from carbonedge.verify import VerifyReport, verify_archive


def collect_evidence(archive: Path, trust: TrustStore, site: str, start_s: float, end_s: float) -> dict[str, Any]:
    """Verify the archive over the period and return the extension's ``data`` (refuses on any finding)."""
    rep = VerifyReport()
    genuine = verify_archive([Path(archive)], trust, rep, site=site, start_ms=int(start_s * 1000), end_ms=int(end_s * 1000))
    if rep.findings:
        f = rep.findings[0]
        raise PactError(f"the archive shows {len(rep.findings)} integrity finding(s) in the period (first: {f.kind} "
                        f"{f.site}/{f.gateway} seq {f.seq}: {f.detail}); run `carbonedge verify` and resolve them before publishing")
    chains = []
    for (s, g), batches in sorted(genuine.items()):
        if not batches:
            continue
        seqs = sorted(batches)
        head, first = batches[seqs[-1]], batches[seqs[0]]
        assert head.integrity is not None and first.integrity is not None
        keys = [k for k in trust.for_gateway(s, g) if k.id == head.integrity.key]
        chains.append({
            "site": s, "gateway": g, "keyId": head.integrity.key, "publicKey": public_b64(keys[0].key),
            "firstSeq": seqs[0], "lastSeq": seqs[-1], "batches": len(seqs), "prev": first.integrity.prev,
            "firstCreated": iso(first.created / 1000), "lastCreated": iso(head.created / 1000),
            "head": {"alg": head.integrity.alg, "seq": head.integrity.seq, "prev": head.integrity.prev, "hash": head.integrity.hash},
            "signature": head.integrity.sig, "headLink": link_of(s, g, head.integrity),
        })
    if not chains:
        raise PactError(f"no signed batches of site {site!r} in the archive {archive} between {iso(start_s)} and {iso(end_s)}")
    return {"method": "carbonedge signed hash chains (Ed25519, RFC 8032; SHA-256)", "period": [iso(start_s), iso(end_s)],
            "notices": rep.notices[:20], "chains": chains}


def verify_evidence(data: dict[str, Any], trust: TrustStore | None = None) -> list[str]:
    """Check every chain head's signature (and, with ``trust``, its key); returns one line per chain, raises on a bad one."""
    out = []
    for c in data.get("chains", []):
        name = f"{c['site']}/{c['gateway']}"
        try:
            pub = public_from_b64(c["publicKey"])
            if key_id(pub) != c["keyId"]:
                raise PactError(f"{name}: key id {c['keyId']} does not match the public key")
            h = c["head"]
            pub.verify(bytes.fromhex(c["signature"]), header_bytes(c["site"], c["gateway"], c["keyId"], h["seq"], h["prev"], h["hash"]))
        except (InvalidSignature, ValueError, KeyError) as exc:
            raise PactError(f"{name}: the chain head's signature does not verify ({exc.__class__.__name__})") from None
        trusted = ""
        if trust is not None:
            if all(k.id != c["keyId"] for k in trust.for_gateway(c["site"], c["gateway"])):
                raise PactError(f"{name}: key {c['keyId']} is not in the trust file for this gateway")
            trusted = ", key registered in the trust file"
        out.append(f"{name}: seq {c['firstSeq']}-{c['lastSeq']} ({c['batches']} batches), head signature valid{trusted}")
    if not out:
        raise PactError("the integrity evidence names no chains")
    return out

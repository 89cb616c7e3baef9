"""Malformed telemetry generated with hypothesis and published straight to the broker (G8).

Each case starts from a real signed batch of the running gateway, re-addressed to a separate
fuzz gateway, and applies one of the mutation classes below. The wire contract
(``carbonedge.wire``: strict JSON, finite numbers, the batch model, topic = payload origin) is the
oracle: only messages it rejects as a whole are published, so every one of them must come back
as exactly one dead-letter record with a reason, and none may reach InfluxDB. Cases the contract
accepts (a mutation can leave a batch valid) are counted and not sent.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from carbonedge import wire

# Characters that break line protocol, JSON, topics or terminals when not escaped.
NASTY = [",", "=", " ", "\n", "\r", '"', "\\", "'", "\x00", "#", "+", "/", "\u2028", "é", "\udcff"]
MUTATIONS = ("random_bytes", "truncated", "replace", "delete", "non_finite", "huge_number", "wrong_origin",
             "injection", "top_level", "bad_utf8", "deep_nesting", "duplicate_key", "wrong_schema", "extra_field")

JUNK = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                 st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
                 st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3))


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


def _set(doc: Any, path: tuple[Any, ...], value: Any, delete: bool = False) -> None:
    for k in path[:-1]:
        doc = doc[k]
    if delete:
        del doc[path[-1]]
    else:
        doc[path[-1]] = value


def _finite(doc: Any) -> bool:
    if isinstance(doc, float):
        return math.isfinite(doc)
    if isinstance(doc, dict):
        return all(_finite(v) for v in doc.values())
    if isinstance(doc, list):
        return all(_finite(v) for v in doc)
    return True


def contract_accepts(site: str, gateway: str, payload: bytes) -> bool:
    """The oracle: would the wire contract accept this as a batch of ``site/gateway``?"""
    try:
        doc = json.loads(payload)
        if not _finite(doc):
            return False
        b = wire.Batch.model_validate_json(payload)
    except (ValueError, RecursionError, UnicodeDecodeError):
        return False
    return (b.site, b.gateway) == (site, gateway)


def mutations(template: dict[str, Any]) -> st.SearchStrategy[tuple[str, bytes]]:
    """``(mutation class, payload)`` pairs derived from ``template`` (a valid batch as a dict)."""
    raw = json.dumps(template).encode()
    paths = _paths(template)
    numeric = [p for p in paths if isinstance(_get(template, p), (int, float)) and not isinstance(_get(template, p), bool)]
    strings = [p for p in paths if isinstance(_get(template, p), str)]

    def copy() -> dict[str, Any]:
        return json.loads(raw)

    def enc(doc: Any) -> bytes:
        return json.dumps(doc, allow_nan=True).encode("utf-8", "surrogatepass")

    @st.composite
    def one(draw: st.DrawFn) -> tuple[str, bytes]:
        kind = draw(st.sampled_from(MUTATIONS))
        doc = copy()
        if kind == "random_bytes":
            return kind, draw(st.binary(max_size=600))
        if kind == "truncated":
            return kind, raw[: draw(st.integers(0, len(raw) - 1))]
        if kind == "replace":
            _set(doc, draw(st.sampled_from(paths)), draw(JUNK))
        elif kind == "delete":
            _set(doc, draw(st.sampled_from(paths)), None, delete=True)
        elif kind == "non_finite":
            _set(doc, draw(st.sampled_from(numeric)), draw(st.sampled_from([math.nan, math.inf, -math.inf])))
        elif kind == "huge_number":
            p = draw(st.sampled_from(numeric))
            return kind, enc(doc).replace(json.dumps(_get(template, p)).encode(), draw(st.sampled_from([b"1e400", b"-1e999", b"9" * 400])), 1)
        elif kind == "wrong_origin":
            _set(doc, (draw(st.sampled_from(["site", "gateway"])),), draw(st.sampled_from(["gw1", "other", ""]) | st.text(max_size=12)))
        elif kind == "injection":
            p = draw(st.sampled_from(strings))
            _set(doc, p, draw(st.text(alphabet=st.sampled_from(NASTY) | st.characters(max_codepoint=127), min_size=1, max_size=12)))
            if not any(c in json.dumps(_get(doc, p)) for c in NASTY[:-2]):
                _set(doc, p, str(_get(doc, p)) + draw(st.sampled_from(NASTY)))
        elif kind == "top_level":
            return kind, enc(draw(JUNK))
        elif kind == "bad_utf8":
            i = draw(st.integers(0, len(raw) - 1))
            return kind, raw[:i] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xfe\xff"])) + raw[i + 1:]
        elif kind == "deep_nesting":
            n = draw(st.integers(100, 100_000))
            return kind, b"[" * n + b"]" * n if draw(st.booleans()) else b'{"a":' * n + b"1" + b"}" * n
        elif kind == "duplicate_key":
            k = draw(st.sampled_from(["seq", "site", "gateway", "devices"]))
            return kind, raw[:-1] + b', "' + k.encode() + b'": ' + enc(draw(JUNK)) + b"}"
        elif kind == "wrong_schema":
            doc["schema"] = draw(st.sampled_from(["carbonedge.batch/2", "", "carbonedge.ack/1"]) | st.text(max_size=20))
        elif kind == "extra_field":
            p = draw(st.sampled_from([(), ("devices", 0), ("devices", 0, "values", next(iter(template["devices"][0]["values"])))]))
            target = _get(doc, p) if p else doc
            target[draw(st.text(min_size=1, max_size=10).filter(lambda k: k not in target))] = draw(JUNK)
        return kind, enc(doc)

    return one()


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for k in path:
        doc = doc[k]
    return doc


def generate(template: dict[str, Any], site: str, gateway: str, cases: int, seed: int, publish: Any) -> dict[str, Any]:
    """Run ``cases`` hypothesis examples; ``publish(payload)`` the ones the contract rejects."""
    sent: Counter[str] = Counter()
    skipped: Counter[str] = Counter()

    @hypothesis_seed(seed)  # the same cases for the same seed
    @settings(max_examples=cases, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(mutations(template))
    def case(m: tuple[str, bytes]) -> None:
        kind, payload = m
        if contract_accepts(site, gateway, payload):
            skipped[kind] += 1
            return
        sent[kind] += 1
        publish(payload)

    case()
    return {"cases": cases, "sent": sum(sent.values()), "sent_by_mutation": dict(sorted(sent.items())),
            "valid_not_sent": sum(skipped.values())}

"""The shared InfluxDB client and its quoting rules, against a real InfluxDB 1.6.

Every awkward name is written with the line-protocol escaper and read back with an InfluxQL query that
selects it through the identifier and literal quoting: a rule that is wrong either fails the write,
fails the query, or reads back a different string.
"""

from __future__ import annotations

import pytest
import requests

from carbonedge.errors import QueryError, WriteError
from carbonedge.influx import (
    InfluxClient,
    lp_field_key,
    lp_line,
    lp_measurement,
    lp_string,
    lp_tag,
    quote_ident,
    quote_literal,
    rows,
)
from carbonedge.net import free_port

AWKWARD = [
    "plain",
    "it's",
    'say "hi"',
    "back\\slash",
    "two\\\\backslashes",
    "with space",
    "comma,and=equals",
    "Stahlwerk Süd – Halle 3",
    "电弧炉",
    "a\\b c,d=e'f\"g",
    " leading and trailing ",
    "semi;colon -- not a comment",
]


@pytest.fixture
def db(services, database) -> InfluxClient:  # type: ignore[no-untyped-def]
    with InfluxClient(services.influx.url, database) as c:
        yield c


@pytest.mark.parametrize("name", AWKWARD)
def test_tag_values_round_trip_through_line_protocol_and_influxql_literals(db: InfluxClient, name: str) -> None:
    db.write(lp_line("readings", {"site": name, "device": "m1"}, {"active_power": 1.5}, 1_767_571_200_000))
    db.write(lp_line("readings", {"site": name + "x", "device": "m1"}, {"active_power": 9.0}, 1_767_571_200_000))
    got = list(rows(db.query(f'SELECT "active_power", "site" FROM "readings" WHERE "site" = {quote_literal(name)}')))
    assert [(r["site"], r["active_power"]) for r in got] == [(name, 1.5)]


@pytest.mark.parametrize("name", AWKWARD)
def test_measurements_and_field_keys_round_trip_through_influxql_identifiers(db: InfluxClient, name: str) -> None:
    db.write(lp_line(name, {"k": "v"}, {name: 2.0, "text": name}, 1_767_571_200_000))
    got = list(rows(db.query(f"SELECT {quote_ident(name)}, \"text\" FROM {quote_ident(name)} WHERE \"k\" = 'v'")))
    assert [(r[name], r["text"]) for r in got] == [(2.0, name)]
    tags = db.query(f"SHOW TAG VALUES FROM {quote_ident(name)} WITH KEY = {quote_ident('k')}")
    assert tags[0]["name"] == name


def test_string_fields_with_quotes_backslashes_and_line_breaks(db: InfluxClient) -> None:
    text = 'line one\nline "two" \\ end\\'
    db.write(f"events,site=s detail={lp_string(text)} 1000")
    got = list(rows(db.query('SELECT "detail" FROM "events"')))
    assert got[0]["detail"] == 'line one line "two" \\ end\\'  # one line per point: the break becomes a space
    assert list(rows(db.query(f"SELECT \"detail\" FROM \"events\" WHERE \"detail\" = {quote_literal(got[0]['detail'])}")))


def test_a_literal_newline_is_escaped_for_influxql(db: InfluxClient) -> None:
    assert quote_literal("a\nb") == "'a\\nb'"
    db.query(f"SELECT * FROM \"readings\" WHERE \"site\" = {quote_literal('a' + chr(10) + 'b')}")  # parses (no error)


@pytest.mark.parametrize("bad", ["ends with\\", "back\\ space", "back\\,comma", "back\\=eq", "two\nlines", ""])
def test_tags_line_protocol_cannot_carry_are_refused_not_mangled(bad: str) -> None:
    with pytest.raises(ValueError, match="cannot be written|empty"):
        lp_tag(bad)
    with pytest.raises(ValueError):
        lp_field_key(bad)


def test_escaper_output_is_what_influxdb_expects() -> None:
    assert lp_measurement("a b,c=d") == "a\\ b\\,c=d"
    assert lp_tag("a b,c=d\\e") == "a\\ b\\,c\\=d\\e"
    assert lp_string('x"y\\z') == '"x\\"y\\\\z"'
    assert lp_line("m", {"b": "2", "a": "1"}, {"f": 1.0, "n": 3, "ok": True, "s": "t"}, 5) == 'm,a=1,b=2 f=1.0,n=3i,ok=true,s="t" 5'
    with pytest.raises(ValueError, match="finite"):
        lp_line("m", {}, {"f": float("nan")}, 1)
    assert quote_ident('we"ird\\') == '"we\\"ird\\\\"'
    assert quote_literal("it's\\") == "'it\\'s\\\\'"


def test_errors_are_one_line_naming_the_server_and_the_reason(db: InfluxClient) -> None:
    with pytest.raises(QueryError) as bad:
        db.query("SELEKT nonsense")
    msg = str(bad.value)
    assert db.url in msg and "error parsing query" in msg and "\n" not in msg and len(msg) < 400
    with pytest.raises(WriteError) as refused:
        db.write("not line protocol")
    assert refused.value.status == 400 and not refused.value.retryable and "\n" not in str(refused.value)


def test_an_unreachable_server_is_retried_with_backoff_then_named(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    sleeps: list[float] = []
    monkeypatch.setattr("carbonedge.influx.time.sleep", sleeps.append)
    c = InfluxClient(url, "x", attempts=4, backoff_s=0.5, backoff_cap_s=1.5)
    with pytest.raises(QueryError) as down:
        c.query("SELECT 1")
    msg = str(down.value)
    assert msg == f"InfluxDB at {url}: connection refused (is InfluxDB running, is the URL right?) after 4 attempts"
    assert sleeps == [0.5, 1.0, 1.5] and down.value.retryable
    sleeps.clear()
    with pytest.raises(WriteError, match="connection refused.*writing alerts after 4 attempts"):
        c.write_lines(["m f=1 1"], what="alerts")
    assert sleeps == [0.5, 1.0, 1.5]


def test_server_errors_are_retried_but_refusals_are_not(services, database, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """A 503 from a proxy in front of InfluxDB is retried; the same client gives up at once on a 401."""
    calls: list[int] = []
    real_post = requests.Session.post

    def flaky(self, url, **kw):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) < 3:
            r = requests.Response()
            r.status_code, r._content, r.url = 503, b'{"error":"overloaded"}', url
            return r
        return real_post(self, url, **kw)

    monkeypatch.setattr(requests.Session, "post", flaky)
    monkeypatch.setattr("carbonedge.influx.time.sleep", lambda s: None)
    c = InfluxClient(services.influx.url, database, attempts=3)
    c.write("m f=1 1000")
    assert len(calls) == 3
    monkeypatch.setattr(requests.Session, "post", real_post)
    assert list(rows(c.query('SELECT "f" FROM "m"')))[0]["f"] == 1

    def unauthorised(self, url, **kw):  # type: ignore[no-untyped-def]
        calls.append(1)
        r = requests.Response()
        r.status_code, r._content, r.url = 401, b'{"error":"authorization failed"}', url
        return r

    calls.clear()
    monkeypatch.setattr(requests.Session, "post", unauthorised)
    with pytest.raises(WriteError, match="HTTP 401.*authorization failed") as denied:
        c.write("m f=2 2000")
    assert len(calls) == 1 and denied.value.status == 401

import json

import pytest
from pydantic import ValidationError

from carbonedge import wire

NOW = 1_767_571_200_000  # 2026-01-05T00:00:00Z in ms


def _batch(**over):
    d = {
        "schema": "carbonedge.batch/1",
        "site": "plant-a",
        "gateway": "gw1",
        "boot_id": "0123456789abcdef",
        "seq": 1,
        "created": NOW,
        "devices": [
            {
                "device": "eaf-meter",
                "ts": NOW,
                "tags": {"area": "meltshop", "process": "eaf"},
                "values": {"active_power": {"v": 61234.5, "u": "kW", "q": "good"}, "active_energy_import": {"v": 1.5e5, "u": "kWh"}},
            }
        ],
    }
    d.update(over)
    return d


def test_round_trip_is_lossless():
    b = wire.Batch.model_validate(_batch())
    again = wire.Batch.model_validate_json(b.to_json())
    assert again == b
    assert again.reading_count() == 2
    assert json.loads(b.to_json())["schema"] == wire.BATCH_SCHEMA


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["devices"][0]["values"]["active_power"].update(v=float("nan")), "finite"),
        (lambda d: d["devices"][0]["values"]["active_power"].update(v=float("inf")), "finite"),
        (lambda d: d["devices"][0]["values"]["active_power"].update(u="W"), "canonical unit"),
        (lambda d: d["devices"][0]["values"].update(bogus={"v": 1.0, "u": "kW"}), "unknown quantity"),
        (lambda d: d["devices"][0]["values"]["active_power"].update(v=None), "quality 'bad'"),
        (lambda d: d["devices"][0]["tags"].update(site="x"), "reserved"),
        (lambda d: d.update(extra_field=1), "Extra inputs"),
        (lambda d: d.update(seq=0), "greater than or equal to 1"),
        (lambda d: d.update(gateway="gw/1"), "pattern"),
        (lambda d: d["devices"][0].update(ts=1), "greater than or equal"),
        (lambda d: d.update(schema="carbonedge.batch/2"), "carbonedge.batch/1"),
    ],
)
def test_invalid_batches_are_rejected_with_a_reason(mutate, message):
    d = _batch()
    mutate(d)
    with pytest.raises(ValidationError) as e:
        wire.Batch.model_validate_json(json.dumps(d))
    assert message in str(e.value)


def test_bad_value_is_kept_as_null():
    d = _batch()
    d["devices"][0]["values"]["active_power"] = {"v": None, "u": "kW", "q": "bad"}
    b = wire.Batch.model_validate(d)
    assert b.devices[0].values["active_power"].v is None
    assert b.reading_count() == 1


def test_topics():
    assert wire.telemetry_topic("plant-a", "gw1") == "carbonedge/v1/plant-a/gw1/telemetry"
    assert wire.parse_topic("carbonedge/v1/plant-a/gw1/ack") == ("plant-a", "gw1", "ack")
    with pytest.raises(ValueError):
        wire.parse_topic("other/v1/a/b/telemetry")


def test_docs_describe_the_current_schema():
    """docs/wire-format.md embeds the JSON schema; it must match the models."""
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "wire-format.md").read_text()
    schema = json.dumps(wire.Batch.model_json_schema(by_alias=True), indent=2, sort_keys=True)
    assert schema in doc, "docs/wire-format.md is out of date: run `python -m carbonedge.wire_docs`"

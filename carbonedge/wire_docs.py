"""Regenerate the JSON schema section of docs/wire-format.md: ``python -m carbonedge.wire_docs``."""

from __future__ import annotations

import json
import re
from pathlib import Path

from carbonedge import wire

BEGIN = "<!-- schema:begin -->"
END = "<!-- schema:end -->"


def schema_block() -> str:
    schema = json.dumps(wire.Batch.model_json_schema(by_alias=True), indent=2, sort_keys=True)
    return f"{BEGIN}\n```json\n{schema}\n```\n{END}"


def main() -> None:
    path = Path(__file__).parents[1] / "docs" / "wire-format.md"
    text = path.read_text()
    text = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _m: schema_block(), text, flags=re.S)
    path.write_text(text)
    print(f"updated {path}")


if __name__ == "__main__":
    main()

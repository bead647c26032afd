"""What every benchmark script does last: write its result as JSON (under benchmarks/results/)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_json(result: dict[str, Any], output: Path) -> None:
    """Write ``result`` to ``output``, making its folder as needed, and say where."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {output}")

"""What a `kedro run --pipelines student` in a project copy reads: distill_train and distill_val."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

EXAMPLES = [
    ("Kitchen lights on", [{"name": "set_lights", "arguments": {"room": "kitchen", "on": True}}]),
    ("start a 5 minute timer", [{"name": "start_timer", "arguments": {"minutes": 5}}]),
    ("how are you?", []),
    ("bedroom lights off", [{"name": "set_lights", "arguments": {"room": "bedroom", "on": False}}]),
]


@pytest.fixture
def write_examples():
    """``write_examples(project, tools, count)``: the first ``count`` examples as the smoke
    environment's distill_train (and the first two as distill_val), as the filtering pipeline
    would write them with a working teacher (the smoke teacher never writes a valid answer)."""

    def write(project: Path, tools: list[dict], count: int) -> None:
        rows = [
            {"id": f"d{n}", "messages": [{"role": "user", "content": text}], "tools": tools, "reference": calls, "meta": {},
             "calls": calls, "sample": 0, "verifiers_passed": ["reference"]}
            for n, (text, calls) in enumerate(EXAMPLES[:count])
        ]
        folder = project / "data" / "smoke" / "05_model_input"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "distill_train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        (folder / "distill_val.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows[:2]))

    return write

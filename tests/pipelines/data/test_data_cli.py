"""`kedro run --pipelines data` in a copy of the project, as a user runs it: each format through
configuration alone, bad bytes losing only their line, and a source that does not match its
settings stopped in the data step with one message."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

SAMPLES = Path(__file__).parent / "samples"
NOT_UTF8 = b'{"messages": [{"role": "user", "content": "caf\xe9"}], "query": "caf\xe9", "conversations": []}\n'


@pytest.fixture(scope="module")
def project(project_copy) -> Path:
    return project_copy


def _env(project: Path, name: str, source: str, parameters: str) -> Path:
    env = project / "conf" / name
    shutil.rmtree(env, ignore_errors=True)
    env.mkdir()
    (env / "globals.yml").write_text(f"output_root: data/{name}\n")
    (env / "catalog.yml").write_text(
        "raw_requests:\n  type: supertiny.datasets.JSONLinesDataset\n"
        f"  filepath: {source}\n  on_bad_line: keep\n  lazy: true\n"
    )
    (env / "parameters_data.yml").write_text(parameters)
    return project / "data" / name


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize(("format_", "readable", "bad_rows"), [("openai_chat", 5, [6, 7]), ("xlam", 5, [6, 7, 8]),
                                                                ("sharegpt_hermes", 6, [7, 8])])
def test_each_format_reads_through_configuration_and_bad_bytes_lose_only_their_line(kedro, project, format_, readable, bad_rows):
    source = project / "data" / "01_raw" / f"{format_}_sample.jsonl"
    sample = (SAMPLES / f"{format_}.jsonl").read_bytes()
    source.write_bytes(sample + NOT_UTF8)
    outputs = _env(project, f"fmt_{format_}", f"data/01_raw/{format_}_sample.jsonl",
                   f"data:\n  format: {format_}\n  split: {{group_by: null, stratify_by: null}}\n")
    result = kedro(project, "run", "--env", f"fmt_{format_}", "--pipelines", "data")
    assert result.returncode == 0, result.stderr[-3000:]
    requests = _jsonl(outputs / "02_intermediate" / "requests.jsonl")
    assert len(requests) == readable
    assert all(request["tools"] and request["messages"] for request in requests)
    rejected = _jsonl(outputs / "02_intermediate" / "rejected_requests.jsonl")
    bad_line = len(sample.splitlines()) + 1
    assert [row["row"] for row in rejected] == [*bad_rows, bad_line]
    assert {row["format"] for row in rejected} == {format_}
    assert f"line {bad_line} is not UTF-8" in rejected[-1]["reason"] and "\\xe9" in rejected[-1]["raw"]
    report = json.loads((outputs / "08_reporting" / "data_report.json").read_text())
    assert report["requests"] == readable and report["rejected"] == len(bad_rows) + 1


def test_a_source_that_does_not_match_data_fields_stops_with_one_message(kedro, project):
    source = project / "data" / "01_raw" / "renamed.jsonl"
    source.write_text("".join(json.dumps({"prompt": f"lights on {n}", "answer": "[]"}) + "\n" for n in range(6)))
    outputs = _env(project, "renamed", "data/01_raw/renamed.jsonl", "data:\n  default_tools: all\n")
    result = kedro(project, "run", "--env", "renamed", "--pipelines", "data")
    assert result.returncode != 0
    output = result.stderr + result.stdout
    assert "Traceback" not in output
    assert "6 of 6 rows rejected" in output and "['answer', 'prompt']" in output and '"messages": "messages"' in output
    assert not (outputs / "05_model_input" / "train_requests.jsonl").exists(), "stopped before the split"
    assert len(_jsonl(outputs / "02_intermediate" / "rejected_requests.jsonl")) == 6

"""`kedro run --pipelines compression` on a tiny student, as a user runs it: three models and a log."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from supertiny.datasets import ModelDataset
from supertiny.decoding import Decoder

ENV = "compression_test"


@pytest.fixture(scope="module")
def project(project_copy, tiny_model) -> Path:
    """The project's code and config in a fresh folder, and an environment that adds a tiny
    student and distill_train rows (the committed demo requests with their answers) to the
    smoke settings."""
    root = project_copy
    env = root / "conf" / ENV
    shutil.copytree(root / "conf" / "smoke", env)
    ModelDataset(filepath=str(root / "inputs" / "student")).save(tiny_model)
    raw = root / "data" / "01_raw"
    tools = {tool["function"]["name"]: tool for tool in json.loads((raw / "demo_tools.json").read_text())}
    requests = [json.loads(line) for line in (raw / "demo_requests.jsonl").read_text().splitlines()[:12]]
    rows = [dict(r, tools=[tools[name] for name in r["tools"]], calls=r["reference"] or []) for r in requests]
    (root / "inputs" / "distill_train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (env / "catalog.yml").write_text(
        "student_model:\n  type: supertiny.datasets.ModelDataset\n  filepath: inputs/student\n"
        "distill_train:\n  type: supertiny.datasets.JSONLinesDataset\n  filepath: inputs/distill_train.jsonl\n"
    )
    return root


def test_the_pipeline_writes_a_smaller_pruned_model_and_a_quantized_one_that_loads(kedro, project, tiny_model):
    result = kedro(project, "run", "--env", ENV, "--pipelines", "compression")
    assert result.returncode == 0, result.stderr[-4000:]
    outputs = project / "data" / "smoke"
    log = json.loads((outputs / "08_reporting" / "compression_log.json").read_text())
    assert log["pruning"]["after"]["params"] < log["pruning"]["before"]["params"]
    assert log["pruning"]["after"]["intermediate_size"] < log["pruning"]["before"]["intermediate_size"]
    assert log["quantization"]["recipe"]["method"] == "inc_dynamic_int8"
    assert log["size_mb"]["quantized"] < log["size_mb"]["student"]
    assert not (project / "nc_workspace").exists(), "INC's workspace stays out of the project"

    # This process did not write the quantised model: load it as a reader would, and answer on
    # the served path (the default runtime is ONNX Runtime, which has no batched generate).
    assert log["quantization"]["recipe"]["runtime"] == "onnxruntime"
    quantized = ModelDataset(filepath=str(outputs / "06_models" / "quantized_model")).load()
    model, tokenizer = quantized.load_model(), quantized.load_tokenizer()
    answer = Decoder(model, tokenizer).generate("turn on the kitchen lights", None, 3)
    assert type(model).__name__ == "OnnxCausalLM"
    assert len(answer.token_ids) == 3 or answer.finished  # a random model may end sooner
    for name in ("pruned_model", "pruned_recovered"):
        reloaded = ModelDataset(filepath=str(outputs / "06_models" / name)).load().load_model()
        assert reloaded.config.intermediate_size == log["pruning"]["after"]["intermediate_size"]

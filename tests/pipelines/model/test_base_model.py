"""prepare_base_model: every source kind, the tiny random stand-in, and clear errors."""

from __future__ import annotations

import pytest
import torch

from supertiny.model_sources import ModelSourceError, resolve_source
from supertiny.pipelines.model.nodes import prepare_base_model

@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"kind": "ollama"}, "base_model.source.kind must be one of gguf, local, hub; got 'ollama'"),
        ({"package": "no_such_package_here"}, "base_model.source.package: package 'no_such_package_here' is not installed"),
        ({"file": "missing.gguf"}, "base_model.source: no GGUF file at"),
        ({"path": "/nonexistent/model.gguf"}, "no GGUF file at /nonexistent/model.gguf"),
        ({"package": None}, "needs either 'path' or both 'package' and 'file'"),
        ({"kind": "local", "path": "/nonexistent/dir"}, "base_model.source.path: '/nonexistent/dir' is not a model directory"),
        ({"kind": "local"}, "base_model.source.path: None is not a model directory"),
        ({"kind": "hub"}, "base_model.source.hub_id is required"),
    ],
)
def test_bad_sources_name_the_setting(default_source, override, message):
    with pytest.raises(ModelSourceError) as error:
        resolve_source({**default_source, **override})
    assert message in str(error.value)


def test_a_hub_id_without_a_hub_fails_clearly(monkeypatch, default_source):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelSourceError, match="cannot load model no-such-org/no-such-model"):
        prepare_base_model({"source": {**default_source, "kind": "hub", "hub_id": "no-such-org/no-such-model"}})


def test_a_local_directory_source_loads_that_model(tmp_path, tiny_model, default_source):
    from supertiny.datasets import ModelDataset

    ModelDataset(filepath=str(tmp_path / "mine")).save(tiny_model)
    bundle, info = prepare_base_model({"source": {**default_source, "kind": "local", "path": str(tmp_path / "mine")}})
    assert info["params"] == sum(p.numel() for p in tiny_model.model.parameters())
    assert info["source"] == str(tmp_path / "mine")


@pytest.mark.slow
def test_random_init_builds_the_same_architecture_small(tiny_model, default_source, tiny_overrides):
    bundle, info = prepare_base_model({"source": default_source, "random_init": tiny_overrides, "seed": 0})
    assert info["architecture"] == "LlamaForCausalLM"
    assert info["layers"] == 2 and info["hidden_size"] == 32
    assert info["vocab_size"] == len(bundle.tokenizer)
    assert info["params"] == sum(p.numel() for p in bundle.model.parameters()) < 3_000_000
    # Same config and seed as the session's tiny model: the same weights, so runs repeat.
    for name, tensor in tiny_model.model.state_dict().items():
        assert torch.equal(tensor, bundle.model.state_dict()[name]), name


@pytest.mark.slow
def test_random_init_rejects_unknown_config_keys(default_source):
    with pytest.raises(ModelSourceError, match="has no setting 'hidden_sise'"):
        prepare_base_model({"source": default_source, "random_init": {"hidden_sise": 8}})


@pytest.mark.slow
def test_default_gguf_source_becomes_a_plain_model_that_generates(tmp_path, default_source):
    from supertiny.datasets import ModelDataset

    bundle, info = prepare_base_model({"source": default_source, "random_init": None})
    assert 130_000_000 < info["params"] < 140_000_000
    dataset = ModelDataset(filepath=str(tmp_path / "base"))
    dataset.save(bundle)  # a GGUF-loaded model would refuse this
    reloaded = dataset.load().load()
    assert not hasattr(reloaded.model.config, "quantization_config")
    prompt = reloaded.tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], add_generation_prompt=True, return_dict=True, return_tensors="pt"
    )
    output = reloaded.model.generate(**prompt, max_new_tokens=12, do_sample=False)
    answer = reloaded.tokenizer.decode(output[0][prompt["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer

from __future__ import annotations

import pytest
import torch
from kedro.io import DatasetError
from kedro.io.core import Version

from supertiny.datasets import ModelDataset, ModelDirectory


def test_saved_bundle_loads_back_with_equal_weights_and_tokenizer(tmp_path, tiny_model):
    dataset = ModelDataset(filepath=str(tmp_path / "model"))
    dataset.save(tiny_model)
    directory = dataset.load()
    assert isinstance(directory, ModelDirectory)
    assert (directory.path / "model.safetensors").exists()
    assert directory.size_bytes > 0
    reloaded = directory.load()
    for name, tensor in tiny_model.model.state_dict().items():
        assert torch.equal(tensor, reloaded.model.state_dict()[name]), name
    text = "turn on the lights"
    assert reloaded.tokenizer(text)["input_ids"] == tiny_model.tokenizer(text)["input_ids"]
    assert reloaded.tokenizer.chat_template == tiny_model.tokenizer.chat_template


def test_versioned_models_and_copying_a_directory(tmp_path, tiny_model):
    first = ModelDataset(filepath=str(tmp_path / "m"), version=Version(None, "2026-01-01T00.00.00.000Z"))
    first.save(tiny_model)
    copy = ModelDataset(filepath=str(tmp_path / "m"), version=Version(None, "2026-01-02T00.00.00.000Z"))
    copy.save(first.load())
    latest = ModelDataset(filepath=str(tmp_path / "m"), version=Version(None, None)).load()
    assert "2026-01-02" in str(latest.path)
    assert latest.size_bytes == first.load().size_bytes


def test_loading_a_missing_model_says_what_to_run(tmp_path):
    with pytest.raises(DatasetError, match="No model directory"):
        ModelDataset(filepath=str(tmp_path / "nothing")).load()


def test_saving_something_else_is_refused_and_leaves_nothing(tmp_path):
    dataset = ModelDataset(filepath=str(tmp_path / "m"))
    with pytest.raises(DatasetError, match="ModelBundle or a ModelDirectory"):
        dataset.save({"not": "a model"})
    assert not dataset.exists()


def test_remote_filesystems_are_refused():
    with pytest.raises(DatasetError, match="local filesystem"):
        ModelDataset(filepath="s3://bucket/model")

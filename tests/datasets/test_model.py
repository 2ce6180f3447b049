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


class _Payload:
    """Unpickling this runs ``os.system``: what a crafted weights file does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_a_model_directory_with_a_crafted_pickle_is_refused_without_running(tmp_path, tiny_model):
    import pickle

    dataset = ModelDataset(filepath=str(tmp_path / "model"))
    dataset.save(tiny_model)
    directory = dataset.load()
    marker = tmp_path / "payload-ran"
    (directory.path / "model.safetensors").unlink()
    (directory.path / "pytorch_model.bin").write_bytes(pickle.dumps({"model.embed_tokens.weight": _Payload(marker)}))
    with pytest.raises(Exception, match="(?i)weights.only|unpickl"):
        directory.load_model()
    with pytest.raises(TypeError, match="weights_only=False"):
        directory.load_model(weights_only=False)
    assert not marker.exists()


def test_the_model_dataset_does_not_depend_on_the_compression_package():
    """The saved form of a quantised model is supertiny.quantized_model's: the dataset layer reads
    and writes it without importing the compression pipeline's code."""
    import ast
    from pathlib import Path

    import supertiny.datasets

    for path in Path(supertiny.datasets.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module]
        imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
        assert not [name for name in imported if name.startswith("supertiny.compression")], path.name


def test_a_model_saved_after_an_offline_load_has_the_same_files(tmp_path, tiny_model):
    """How the tokenizer was loaded (HF_HUB_OFFLINE sets local_files_only) is not part of the
    saved model: the same model gives the same files, so the teacher's cache keyed by them hits."""
    from transformers import AutoTokenizer

    from supertiny.teacher.server import model_fingerprint

    ModelDataset(filepath=str(tmp_path / "first")).save(tiny_model)
    offline = AutoTokenizer.from_pretrained(tmp_path / "first", local_files_only=True)
    assert offline.init_kwargs.get("local_files_only") is True  # what transformers would write
    ModelDataset(filepath=str(tmp_path / "second")).save(type(tiny_model)(model=tiny_model.model, tokenizer=offline))
    assert "local_files_only" not in (tmp_path / "second" / "tokenizer_config.json").read_text()
    assert model_fingerprint(tmp_path / "first") == model_fingerprint(tmp_path / "second")

"""A transformers model directory as a catalog dataset.

Saving writes weights (safetensors), config, generation config and tokenizer with
``save_pretrained``; loading returns a :class:`ModelDirectory` handle instead of the model
itself, because some readers only need the path (a server, a size measurement) and a model
should be loaded once, by the node that uses it, with the options that node needs.

A quantised model (a bundle with a ``quantization`` recipe) is saved in its quantised form by
``supertiny.quantized_model``, and ``load_model`` rebuilds it from that directory.
No model is loaded through an unrestricted pickle: weights are safetensors, and a directory
with only ``pytorch_model.bin`` is read with ``weights_only=True``, which runs no code.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import fsspec
from kedro.io.core import AbstractVersionedDataset, DatasetError, Version, get_protocol_and_path

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".onnx")


@dataclass
class ModelBundle:
    """What a node returns to save a model: the model and its tokenizer, and for a quantised
    model its ``supertiny.quantized_model.Recipe`` (saved quantised, not as float)."""

    model: Any
    tokenizer: Any
    quantization: Any = None


@dataclass(frozen=True)
class ModelDirectory:
    """A saved model directory: its path, and loaders for what it holds."""

    path: Path

    def load_model(self, **kwargs: Any) -> Any:
        """The model; a quantised one is rebuilt in its quantised form (``kwargs`` are
        ``from_pretrained`` options, which do not apply to it)."""
        from supertiny.quantized_model import is_quantized, load_quantized

        if is_quantized(self.path):
            if kwargs:
                raise TypeError(f"{self.path} holds a quantised model; from_pretrained options {sorted(kwargs)} do not apply")
            return load_quantized(self.path)
        from transformers import AutoModelForCausalLM

        if kwargs.get("weights_only") is False:
            raise TypeError(f"{self.path}: weights_only=False would let a pickled weights file run code; it is not offered")
        return AutoModelForCausalLM.from_pretrained(self.path, **{**kwargs, "weights_only": True})

    def load_tokenizer(self, **kwargs: Any) -> Any:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.path, **kwargs)

    def load(self, **model_kwargs: Any) -> ModelBundle:
        return ModelBundle(self.load_model(**model_kwargs), self.load_tokenizer())

    @property
    def size_bytes(self) -> int:
        """Bytes of weight files on disk (what a deployment ships and loads)."""
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.suffix in WEIGHT_SUFFIXES)

    @property
    def size_mb(self) -> float:
        return megabytes(self.size_bytes)


def megabytes(size_bytes: int) -> float:
    """Sizes in every table and log: MB of 10^6 bytes, one decimal."""
    return round(size_bytes / 1e6, 1)


# How a tokenizer was loaded, which transformers keeps in its init kwargs and writes into
# tokenizer_config.json: left in, the same model saved with and without HF_HUB_OFFLINE set
# differs on disk, and so misses the teacher's response cache (keyed by the model's files).
LOAD_OPTIONS = ("local_files_only", "cache_dir", "force_download", "proxies", "token", "revision", "subfolder")


def save_tokenizer(tokenizer: Any, directory: str | Path) -> None:
    """``tokenizer.save_pretrained(directory)`` without the options it was loaded with (they are
    dropped from ``tokenizer.init_kwargs``, which only ``save_pretrained`` reads)."""
    for option in LOAD_OPTIONS:
        tokenizer.init_kwargs.pop(option, None)
    tokenizer.save_pretrained(directory)


class ModelDataset(AbstractVersionedDataset[ModelBundle | ModelDirectory, ModelDirectory]):
    """Saves a :class:`ModelBundle` (or copies a :class:`ModelDirectory`) to a local directory.

    Versioning works as for any Kedro dataset (``versioned: true`` in the catalog): each save
    goes to ``<filepath>/<version>/<name>`` and a load picks the latest unless told otherwise.
    """

    def __init__(
        self,
        *,
        filepath: str,
        version: Version | None = None,
        save_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        protocol, path = get_protocol_and_path(filepath, version)
        if protocol != "file":
            # save_pretrained and from_pretrained work on local directories.
            raise DatasetError(f"ModelDataset stores models on the local filesystem, not {protocol!r}: {filepath}")
        self._save_args = {"safe_serialization": True, **(save_args or {})}
        self.metadata = metadata
        super().__init__(
            filepath=PurePosixPath(path),
            version=version,
            exists_function=lambda p: (Path(p) / "config.json").exists(),
            glob_function=fsspec.filesystem("file").glob,
        )

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath, "version": self._version}

    def load(self) -> ModelDirectory:
        path = Path(self._get_load_path())
        if not (path / "config.json").exists():
            raise DatasetError(f"No model directory at {path} (no config.json): run the pipeline that produces it first")
        return ModelDirectory(path)

    def save(self, data: ModelBundle | ModelDirectory) -> None:
        path = Path(self._get_save_path())
        # Write to a sibling and rename, so an interrupted save never looks like a model.
        partial = path.with_name(path.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(data, ModelDirectory):
            shutil.copytree(data.path, partial)
        elif isinstance(data, ModelBundle) and data.quantization is not None:
            from supertiny.quantized_model import save_quantized

            save_quantized(data.model, data.tokenizer, data.quantization, partial)
        elif isinstance(data, ModelBundle):
            data.model.save_pretrained(partial, **self._save_args)
            save_tokenizer(data.tokenizer, partial)
        else:
            raise DatasetError(f"ModelDataset saves a ModelBundle or a ModelDirectory, got {type(data).__name__}")
        shutil.rmtree(path, ignore_errors=True)
        partial.rename(path)

    def _exists(self) -> bool:
        try:
            return (Path(self._get_load_path()) / "config.json").exists()
        except DatasetError:
            return False

"""Where a base model comes from: a GGUF file, a local directory, or a hub id.

Every source ends as a ``ModelBundle`` in float32 that ``save_pretrained`` accepts, so the
rest of the project only ever sees ordinary safetensors directories.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supertiny.datasets import ModelBundle
from supertiny.errors import ConfigError

log = logging.getLogger(__name__)

SOURCE_KINDS = ("gguf", "local", "hub")


class ModelSourceError(ConfigError):
    """A configured model source that cannot be used; the message names the setting."""


@dataclass(frozen=True)
class ResolvedSource:
    """Arguments for ``from_pretrained``: a directory or hub id, and a GGUF file name within it."""

    name_or_path: str
    gguf_file: str | None = None

    def describe(self) -> str:
        return f"{self.name_or_path}/{self.gguf_file}" if self.gguf_file else self.name_or_path


def resolve_source(source: dict[str, Any], setting: str = "base_model.source") -> ResolvedSource:
    """Check a source setting and find its files, without loading anything.

    ``kind: gguf``: the GGUF file at ``path``, or the file ``file`` shipped inside the installed
    package ``package`` (found without importing it); ``kind: local``: the saved model directory
    at ``path``; ``kind: hub``: the hub model ``hub_id`` (needs a hub at run time).
    """
    kind = source.get("kind")
    if kind not in SOURCE_KINDS:
        raise ModelSourceError(f"{setting}.kind must be one of {', '.join(SOURCE_KINDS)}; got {kind!r}")
    if kind == "hub":
        if not source.get("hub_id"):
            raise ModelSourceError(f"{setting}.hub_id is required with kind: hub")
        return ResolvedSource(str(source["hub_id"]))
    if kind == "local":
        path = Path(source.get("path") or "")
        if not source.get("path") or not (path / "config.json").exists():
            raise ModelSourceError(f"{setting}.path: {source.get('path')!r} is not a model directory (no config.json)")
        return ResolvedSource(str(path))
    if source.get("path"):
        path = Path(source["path"])
    elif source.get("package") and source.get("file"):
        spec = importlib.util.find_spec(source["package"])
        if spec is None or not spec.submodule_search_locations:
            raise ModelSourceError(
                f"{setting}.package: package {source['package']!r} is not installed (`make setup` installs the default one)"
            )
        path = Path(spec.submodule_search_locations[0]) / source["file"]
    else:
        raise ModelSourceError(f"{setting} with kind: gguf needs either 'path' or both 'package' and 'file'")
    if not path.is_file():
        raise ModelSourceError(f"{setting}: no GGUF file at {path}")
    return ResolvedSource(str(path.parent), path.name)


def load_tokenizer(resolved: ResolvedSource) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolved.name_or_path, gguf_file=resolved.gguf_file)


def load_config(resolved: ResolvedSource) -> Any:
    """The model config, without GGUF's quantization entry (it would stop ``save_pretrained``)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(resolved.name_or_path, gguf_file=resolved.gguf_file).to_dict()
    config.pop("quantization_config", None)
    return AutoConfig.for_model(config.pop("model_type"), **config)


def load_pretrained(resolved: ResolvedSource) -> ModelBundle:
    """Load weights in float32; a GGUF file is dequantised into an ordinary model."""
    import torch
    from transformers import AutoModelForCausalLM

    log.info("Loading base model from %s", resolved.describe())
    try:
        model = AutoModelForCausalLM.from_pretrained(
            resolved.name_or_path, gguf_file=resolved.gguf_file, dtype=torch.float32
        )
    except OSError as error:
        raise ModelSourceError(f"cannot load model {resolved.describe()}: {error}") from error
    if resolved.gguf_file:
        # A model loaded from GGUF refuses save_pretrained ("quantized with gguf"): move its
        # dequantised weights into a model built from the same config without that entry.
        plain = AutoModelForCausalLM.from_config(load_config(resolved), dtype=torch.float32)
        plain.load_state_dict(model.state_dict())
        plain.generation_config = model.generation_config
        model = plain
    return ModelBundle(model, load_tokenizer(resolved))


def random_like(resolved: ResolvedSource, overrides: dict[str, Any], seed: int) -> ModelBundle:
    """A randomly initialised model of the source's architecture and tokenizer, resized by
    ``overrides`` (a tiny model for fast end-to-end runs)."""
    import torch
    from transformers import AutoModelForCausalLM

    config = load_config(resolved)
    for key, value in overrides.items():
        if not hasattr(config, key):
            raise ModelSourceError(f"base_model.random_init: {type(config).__name__} has no setting {key!r}")
        setattr(config, key, value)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    tokenizer = load_tokenizer(resolved)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return ModelBundle(model, tokenizer)

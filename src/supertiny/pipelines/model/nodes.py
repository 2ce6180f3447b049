"""The base model: the configured source (a GGUF file, a local directory, a hub id) as an
ordinary float32 transformers model in the catalog, which the teacher's embedded server, the
judge and the student all start from."""

from __future__ import annotations

import logging
from typing import Any

from supertiny.datasets import ModelBundle, megabytes
from supertiny.model_sources import load_pretrained, random_like, resolve_source

log = logging.getLogger(__name__)


def prepare_base_model(base_model: dict[str, Any]) -> tuple[ModelBundle, dict[str, Any]]:
    """Turn the configured source into an ordinary float32 model, and describe it.

    With ``random_init`` set, the source gives only the architecture and tokenizer, and the
    weights are random: a tiny stand-in for fast end-to-end runs.
    """
    resolved = resolve_source(base_model["source"])
    random_init = base_model.get("random_init")
    if random_init:
        bundle = random_like(resolved, random_init, seed=base_model.get("seed", 0))
    else:
        bundle = load_pretrained(resolved)
    config = bundle.model.config
    info = {
        "source": resolved.describe(),
        "random_init": dict(random_init) if random_init else None,
        "architecture": type(bundle.model).__name__,
        "params": sum(p.numel() for p in bundle.model.parameters()),
        "size_mb_fp32": megabytes(sum(p.numel() * p.element_size() for p in bundle.model.parameters())),
        "layers": config.num_hidden_layers,
        "hidden_size": config.hidden_size,
        "vocab_size": config.vocab_size,
        "context_length": getattr(config, "max_position_embeddings", None),
    }
    log.info("Base model: %s, %s parameters, %.1f MB in fp32", info["architecture"], f"{info['params']:,}", info["size_mb_fp32"])
    return bundle, info

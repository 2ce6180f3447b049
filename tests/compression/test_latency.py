"""The latency harness: its numbers are consistent (no timed assertions) and it counts bytes right."""

from __future__ import annotations

import torch

from supertiny.latency import measure_latency, memory_bandwidth_gbs, weight_bytes_per_token


def test_latency_of_batch_one_generation(tiny_model):
    prompts = ["turn on the lights", "set a timer for ten minutes", "what is the weather"]
    threads = torch.get_num_threads()
    result = measure_latency(tiny_model.model, tiny_model.tokenizer, prompts, new_tokens=4, threads=1)
    assert result.requests == 3 and result.new_tokens == 4 and result.threads == 1
    assert 0 < result.prefill_p50_ms <= result.p50_ms <= result.p95_ms
    assert result.decode_tokens_per_s > 0 and result.tokens_per_s > 0
    assert torch.get_num_threads() == threads, "the thread count is restored"


def test_weight_bytes_count_each_matmul_once_and_no_embedding_table(tiny_model):
    model = tiny_model.model
    linear = sum(m.weight.numel() * 4 for m in model.modules() if isinstance(m, torch.nn.Linear))
    norms = sum(p.numel() * 4 for name, p in model.named_parameters() if "norm" in name)
    # The output head shares the embedding's tensor (tied): read once per token, as the head.
    assert model.lm_head.weight is model.model.embed_tokens.weight
    rotary = sum(b.numel() * 4 for b in model.model.rotary_emb.buffers())
    assert weight_bytes_per_token(model) == linear + norms + rotary


def test_memory_bandwidth_is_measured():
    assert memory_bandwidth_gbs(megabytes=16, repeats=2, threads=1) > 0

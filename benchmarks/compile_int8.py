"""Does ``torch.compile`` make the final (dynamic INT8) model's decode step faster?

The served path's step is per-op overhead, not weight reading (``benchmarks/decode_paths.py``),
which is what a compiler removes by fusing the small ops. This times one decode step of the
model (batch 1, a KV cache after a prompt of ``--prompt-tokens``) eager and under
``torch.compile(dynamic=True)``, side by side in one process, and counts dynamo's graph
breaks: INC's dynamic INT8 layers hold their weights in a packed TorchScript object that
dynamo cannot trace, so each such layer ends a graph.

    .venv/bin/python benchmarks/compile_int8.py [--model data/06_models/quantized_model]

Prints a table; results also go to ``data/08_reporting/compile_int8.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "src"))

import torch  # noqa: E402
import torch._dynamo  # noqa: E402
from transformers import DynamicCache  # noqa: E402

from supertiny.datasets import ModelDirectory  # noqa: E402


def step_ms(forward, config, prompt_tokens: int, steps: int) -> float:
    """Milliseconds a decode step after a prompt of ``prompt_tokens``, mean over ``steps``."""
    with torch.inference_mode():
        cache = DynamicCache(config=config)
        forward(input_ids=torch.ones(1, prompt_tokens, dtype=torch.long), past_key_values=cache, use_cache=True, logits_to_keep=1)
        started = time.perf_counter()
        for _ in range(steps):
            forward(input_ids=torch.tensor([[5]]), past_key_values=cache, use_cache=True, logits_to_keep=1)
        return (time.perf_counter() - started) / steps * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(PROJECT / "data" / "06_models" / "quantized_model"))
    parser.add_argument("--prompt-tokens", type=int, default=60)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default=str(PROJECT / "data" / "08_reporting" / "compile_int8.json"))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    model = ModelDirectory(Path(args.model)).load().model.eval()
    eager = step_ms(model, model.config, args.prompt_tokens, args.steps)

    with torch.inference_mode():
        explained = torch._dynamo.explain(model)(input_ids=torch.tensor([[5]]), use_cache=False)
    torch._dynamo.reset()
    compiled = torch.compile(model, dynamic=True)
    started = time.perf_counter()
    step_ms(compiled, model.config, args.prompt_tokens, 2)  # compiles (and recompiles) here
    compile_s = time.perf_counter() - started
    compiled_ms = step_ms(compiled, model.config, args.prompt_tokens, args.steps)

    reasons = sorted({reason.reason.split("\n")[0] for reason in explained.break_reasons})
    result = {
        "model": args.model, "threads": args.threads, "prompt_tokens": args.prompt_tokens, "steps": args.steps,
        "eager_ms_per_step": round(eager, 2), "compiled_ms_per_step": round(compiled_ms, 2),
        "compiled_vs_eager": round(eager / compiled_ms, 2), "compile_s": round(compile_s, 1),
        "graph_breaks": explained.graph_break_count, "break_reasons": reasons,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{args.model}: {args.threads} threads, decode step after {args.prompt_tokens} prompt tokens")
    print("| path | ms per step | vs eager | compile s | graph breaks |\n|---|---|---|---|---|")
    print(f"| eager | {eager:.1f} | 1.00x | – | – |")
    print(f"| torch.compile(dynamic=True) | {compiled_ms:.1f} | {eager / compiled_ms:.2f}x | {compile_s:.0f} | {explained.graph_break_count} |")
    print("graph breaks:", "; ".join(reasons))
    print(f"-> {args.output}")


if __name__ == "__main__":
    main()

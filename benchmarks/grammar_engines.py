"""Grammar engines for the student's constrained decoding, side by side: xgrammar and llguidance.

    .venv/bin/python benchmarks/grammar_engines.py --requests 8 [--model DIR] [--env smoke]

Both engines get the same grammar (``calls.answer_schema`` of each request's tools, the
``format_calls`` separators, no other whitespace, at most ``evaluation.max_calls`` calls) and the
same model, prompts (``student.tools_mode``) and greedy batch-1 generation, answered to their end
(``supertiny.latency`` with ``to_end``; the llguidance grammar assumes, as SmolLM2's template has
it, that the end of turn is the end-of-sequence token). Per engine: grammar compile time per distinct tool set,
the logits processor's own time per generated token (matcher update and mask; the mask is applied
to the logits by the same kernel for both, xgrammar's), decode tokens/s, p50, and whether its
answers are the ones xgrammar gives. No grammar is the baseline. Engines are timed in rounds,
every engine once a round, so that load from other processes falls on all alike. JSON goes to
``<output_root>/08_reporting/grammar_engines.json``. Needs ``pip install llguidance==1.9.1``
(installs with the pinned set; not a project dependency).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from statistics import median
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")

PROJECT = Path(__file__).resolve().parents[1]


class TimedProcessor:
    """A logits processor that adds its own time to ``seconds`` and counts its calls (one per token)."""

    def __init__(self, processor: Any, totals: dict[str, float]) -> None:
        self.processor, self.totals = processor, totals

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        started = time.perf_counter()
        scores = self.processor(input_ids, scores)
        self.totals["seconds"] += time.perf_counter() - started
        self.totals["calls"] += 1
        return scores


class LLGuidanceProcessor:
    """llguidance's matcher as a transformers logits processor, for one generation of batch 1."""

    def __init__(self, tokenizer: Any, grammar: str, vocab_size: int) -> None:
        import llguidance
        import llguidance.torch

        self.matcher = llguidance.LLMatcher(tokenizer, grammar)
        self.bitmask = llguidance.torch.allocate_token_bitmask(1, vocab_size)
        self.fill = llguidance.torch.fill_next_token_bitmask
        self.started = False

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import xgrammar

        if self.started and not self.matcher.is_stopped():
            self.matcher.consume_token(int(input_ids[0, -1]))
        self.started = True
        if self.matcher.is_error():
            raise RuntimeError(f"llguidance: {self.matcher.get_error()}")
        self.fill(self.matcher, self.bitmask, 0)
        xgrammar.apply_token_bitmask_inplace(scores, self.bitmask)
        return scores


def load_context(project: Path, env: str | None) -> Any:
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(project)
    return KedroSession.create(project_path=project, env=env).load_context()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default=None, help="Kedro environment (default: the embedded default)")
    parser.add_argument("--project", type=Path, default=PROJECT)
    parser.add_argument("--model", type=Path, default=None, help="model directory (default: the catalog's student_sft)")
    parser.add_argument("--requests", type=int, default=8, help="seeded subset of test requests, timed at batch 1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import llguidance
    import llguidance.hf
    import torch

    from supertiny.calls import answer_schema
    from supertiny.calls.parse import CALL_SEPARATORS
    from supertiny.datasets import ModelDirectory
    from supertiny.inference import AnswerGrammars, generate_answers, sample_requests
    from supertiny.latency import measure_latency
    from supertiny.prompt import prompt_text

    torch.set_num_threads(args.threads)
    context = load_context(args.project, args.env)
    catalog, params = context.catalog, context.params
    tools_mode, max_calls = params["student"]["tools_mode"], params["evaluation"].get("max_calls")
    requests = sample_requests(catalog.load("test_requests"), args.requests, args.seed)
    model_dir = ModelDirectory(args.model) if args.model else catalog.load("student_sft")
    bundle = model_dir.load()
    model, tokenizer = bundle.model.eval(), bundle.tokenizer
    vocab_size = model.config.vocab_size
    prompts = [prompt_text(request, tokenizer, tools_mode) for request in requests]

    # Compile every tool set once per engine (what a run pays up front), then time generation.
    started = time.perf_counter()
    xgr = AnswerGrammars(tokenizer, vocab_size, max_calls)
    xgr_grammars = [xgr.compile(request["tools"]) for request in requests]
    xgr_compile_s = time.perf_counter() - started
    started = time.perf_counter()
    ll_tokenizer = llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab_size)
    options = {"item_separator": CALL_SEPARATORS[0], "key_separator": CALL_SEPARATORS[1], "whitespace_flexible": False}
    ll_grammars = []
    for request in requests:
        schema = answer_schema(request["tools"])
        if max_calls is not None and "items" in schema:
            schema["maxItems"] = max_calls
        ll_grammars.append(llguidance.LLMatcher.grammar_from_json_schema(schema, defaults=options))
    for grammar in ll_grammars:  # llguidance builds its parser when a matcher is made
        llguidance.LLMatcher(ll_tokenizer, grammar)
    ll_compile_s = time.perf_counter() - started
    distinct = len({json.dumps(request["tools"]) for request in requests})

    engines = {
        "none": None,
        "xgrammar": lambda i: AnswerGrammars.processor([xgr_grammars[i]]),
        "llguidance": lambda i: LLGuidanceProcessor(ll_tokenizer, ll_grammars[i], vocab_size),
    }
    results: dict[str, dict[str, Any]] = {name: {"p50_ms": [], "decode_tokens_per_s": [], "seconds": 0.0, "calls": 0} for name in engines}
    for _ in range(args.rounds):
        for name, make in engines.items():
            totals = results[name]
            processors = None if make is None else (lambda i, make=make, totals=totals: [TimedProcessor(make(i), totals)])
            latency = measure_latency(model, tokenizer, prompts, new_tokens=args.max_new_tokens, threads=args.threads, to_end=True,
                                      logits_processors=processors)
            totals["p50_ms"].append(latency.p50_ms)
            totals["decode_tokens_per_s"].append(latency.decode_tokens_per_s)

    # The answers each engine leads to (greedy, so they should agree where the grammars do).
    reference = generate_answers(model, tokenizer, requests, tools_mode, args.max_new_tokens, 1, constrained=True, max_calls=max_calls).texts
    same = []
    for i, prompt in enumerate(prompts):
        inputs = tokenizer(prompt, return_tensors="pt")
        output = model.generate(**inputs, do_sample=False, max_new_tokens=args.max_new_tokens,
                                pad_token_id=tokenizer.pad_token_id, logits_processor=[engines["llguidance"](i)])
        same.append(tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True) == reference[i])

    rows = []
    for name, totals in results.items():
        rows.append({
            "engine": name,
            "compile_ms_per_tool_set": None if name == "none" else round(1000 * (xgr_compile_s if name == "xgrammar" else ll_compile_s) / distinct, 2),
            "processor_ms_per_token": round(1000 * totals["seconds"] / totals["calls"], 3) if totals["calls"] else None,
            "decode_tokens_per_s": round(median(totals["decode_tokens_per_s"]), 1),
            "p50_ms": round(median(totals["p50_ms"])),
            "same_answers_as_xgrammar": f"{sum(same)}/{len(same)}" if name == "llguidance" else None,
        })
    print(f"\n{model_dir.path}: {len(requests)} requests ({distinct} tool sets), tools_mode {tools_mode}, batch 1, "
          f"{args.threads} threads, median of {args.rounds} rounds\n")
    print("| engine | compile ms / tool set | processor ms / token | decode tok/s | p50 ms | same answers as xgrammar |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        cells = ["–" if value is None else value for value in row.values()]
        print("| " + " | ".join(str(cell) for cell in cells) + " |")
    out = args.project / context.config_loader["globals"]["output_root"] / "08_reporting" / "grammar_engines.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model": str(model_dir.path), "requests": len(requests), "rows": rows}, indent=2) + "\n")
    print(f"\nWritten to {out}")


if __name__ == "__main__":
    main()

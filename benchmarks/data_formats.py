"""How fast does the data pipeline read each data.format, and does its memory stay linear?

Writes ``--rows`` generated rows (from the demo requests, each made distinct) as JSON Lines in
each format (canonical, openai_chat, xlam, sharegpt_hermes), with ``--bad-share`` of the lines
not UTF-8, and runs the whole data pipeline on them (validate, check, split, summary, outputs
written) with Kedro's runner, one fresh process per format and size so that each peak memory
is its own. Every format also runs at a fifth of the rows: the ratio of the peaks says whether
memory grows with the rows (linear: about 5x at most) or stays flat (streaming).

    .venv/bin/python benchmarks/data_formats.py [--rows 50000] [--formats openai_chat xlam]

Prints a table; results also go to ``data/08_reporting/data_formats.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "src"))
from supertiny.datasets import megabytes  # noqa: E402
from supertiny.formats import READERS  # noqa: E402

FORMATS = list(READERS)
# JSON Schema types back to the Python names of xLAM's layout.
PYTHON_NAMES = {"string": "str", "integer": "int", "number": "float", "boolean": "bool", "array": "list", "object": "dict"}
HERMES_SYSTEM = ("You are a function calling AI model. You are provided with function signatures within <tools> </tools> XML "
                 "tags. Here are the available tools: <tools> {tools} </tools> For each function call return a json object "
                 "with function name and arguments within <tool_call> </tool_call> XML tags.")


def _xlam_tool(tool: dict) -> dict:
    function = tool["function"]
    properties, required = function["parameters"].get("properties", {}), function["parameters"].get("required", [])
    parameters = {}
    for name, schema in properties.items():
        type_name = PYTHON_NAMES.get(schema.get("type"), "Any")
        parameters[name] = {"type": type_name if name in required else f"{type_name}, optional",
                            "description": schema.get("description", "")}
    return {"name": function["name"], "description": function.get("description", ""), "parameters": parameters}


def generate(format_: str, rows: int, bad_share: float, path: Path) -> None:
    """``rows`` lines in ``format_``: the demo requests in turn, each user text made distinct."""
    from supertiny.formats import to_openai_chat

    catalog = {tool["function"]["name"]: tool for tool in json.loads((PROJECT / "data" / "01_raw" / "demo_tools.json").read_text())}
    demo = [json.loads(line) for line in (PROJECT / "data" / "01_raw" / "demo_requests.jsonl").read_text().splitlines()]
    rng = random.Random(0)
    with path.open("wb") as handle:
        for number in range(rows):
            if rng.random() < bad_share:
                handle.write(b'{"id": "bad", "text": "caf\xe9"}\n')
                continue
            row = demo[number % len(demo)]
            text = f"{row['messages'][-1]['content']} (#{number})"
            tools = [catalog[name] for name in row["tools"]]
            if format_ == "canonical":
                line = {**row, "id": f"r{number}", "messages": [{"role": "user", "content": text}]}
            elif format_ == "openai_chat":
                example = {"messages": [{"role": "user", "content": text}], "tools": tools, "calls": row["reference"]}
                line = to_openai_chat([example], "No function call is needed for that.")[0]
            elif format_ == "xlam":
                line = {"id": number, "query": text, "tools": json.dumps([_xlam_tool(tool) for tool in tools]),
                        "answers": json.dumps(row["reference"])}
            else:
                answer = "\n".join(f"<tool_call>\n{json.dumps(call)}\n</tool_call>" for call in row["reference"]) or "Nothing to call."
                line = {"id": f"h{number}", "conversations": [
                    {"from": "system", "value": HERMES_SYSTEM.format(tools=json.dumps(tools))},
                    {"from": "human", "value": text}, {"from": "gpt", "value": answer}]}
            handle.write(json.dumps(line, ensure_ascii=False).encode() + b"\n")


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(format_: str, source: Path, outputs: Path) -> dict:
    """The data pipeline on ``source``, in this process, with the data datasets of
    conf/base/catalog.yml (their outputs under ``outputs``): time, and peak memory above the start."""
    import yaml
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.runner import SequentialRunner

    from supertiny.pipelines.data.pipeline import create_pipeline

    pipeline = create_pipeline()
    conf = PROJECT / "conf" / "base"
    params = yaml.safe_load((conf / "parameters_data.yml").read_text())["data"]
    params["format"] = format_
    if format_ != "canonical":
        params["split"] = {**params["split"], "group_by": None, "stratify_by": None}  # no demo templates in these rows
    entries = {name: entry for name, entry in yaml.safe_load((conf / "catalog.yml").read_text()).items() if name in pipeline.datasets()}
    entries = json.loads(json.dumps(entries).replace("${globals:output_root}", str(outputs)))
    entries["raw_requests"]["filepath"] = str(source)
    entries["tool_catalog"]["filepath"] = str(PROJECT / entries["tool_catalog"]["filepath"])
    catalog = DataCatalog.from_config(entries)
    catalog["params:data"] = MemoryDataset(params, copy_mode="assign")
    catalog["params:data.split"] = MemoryDataset(params["split"], copy_mode="assign")
    start_mb = _rss_mb()
    started = time.perf_counter()
    SequentialRunner().run(create_pipeline(), catalog)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report = json.loads((outputs / "08_reporting" / "data_report.json").read_text())
    rows = report["requests"] + report["rejected"]
    return {"format": format_, "rows": rows, "requests": report["requests"], "rejected": report["rejected"],
            "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds), "peak_mb_above_start": round(peak_mb - start_mb, 1),
            "source_mb": megabytes(source.stat().st_size)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--formats", nargs="+", default=FORMATS, choices=FORMATS)
    parser.add_argument("--bad-share", type=float, default=0.001, help="share of lines that are not UTF-8")
    parser.add_argument("--child", nargs=3, metavar=("FORMAT", "SOURCE", "OUTPUTS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], Path(args.child[1]), Path(args.child[2]))))
        return

    results = []
    with tempfile.TemporaryDirectory(prefix="supertiny-data-formats-") as scratch:
        for format_ in args.formats:
            for rows in (args.rows // 5, args.rows):
                source = Path(scratch) / f"{format_}_{rows}.jsonl"
                generate(format_, rows, args.bad_share, source)
                outputs = Path(scratch) / f"out_{format_}_{rows}"
                outputs.mkdir()
                child = subprocess.run([sys.executable, __file__, "--child", format_, str(source), str(outputs)],
                                       capture_output=True, text=True, check=False)
                if child.returncode != 0:
                    sys.exit(f"{format_} at {rows} rows failed:\n{child.stderr[-3000:]}")
                results.append(json.loads(child.stdout.strip().splitlines()[-1]))
                source.unlink()

    print(f"\nThe data pipeline on generated rows ({args.bad_share:.1%} of lines not UTF-8), one process per run\n")
    print(f"{'format':<16} {'rows':>7} {'requests':>8} {'rejected':>8} {'source MB':>9} {'s':>7} {'rows/s':>7} {'peak MiB':>8}")
    for r in results:
        print(f"{r['format']:<16} {r['rows']:>7} {r['requests']:>8} {r['rejected']:>8} {r['source_mb']:>9} {r['seconds']:>7} "
              f"{r['rows_per_s']:>7} {r['peak_mb_above_start']:>8}")
    print("\npeak memory at all the rows / at a fifth (5.0: linear, 1.0: flat):")
    for format_ in args.formats:
        small, large = [r for r in results if r["format"] == format_]
        ratio = large["peak_mb_above_start"] / max(small["peak_mb_above_start"], 1e-9)
        print(f"  {format_:<16} {ratio:.2f}   time {large['seconds'] / small['seconds']:.2f}")
    report = PROJECT / "data" / "08_reporting" / "data_formats.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps({"rows": args.rows, "bad_share": args.bad_share, "results": results}, indent=2))
    print(f"\n-> {report.relative_to(PROJECT)}")


if __name__ == "__main__":
    main()

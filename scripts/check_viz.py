"""Check the project's lineage in kedro-viz with a real headless Chromium.

    .venv/bin/python scripts/check_viz.py            (or: make viz-check)

1. Starts ``kedro viz run --no-browser`` on a free port on 127.0.0.1 and waits for it.
2. Asks kedro-viz's REST API (``/api/main``, ``/api/pipelines/<id>``) that every pipeline of
   the project is registered and holds its datasets (the names in README's contract table).
3. Opens the flowchart in Chromium, selects each pipeline in the pipeline dropdown and checks
   that the page draws its nodes; screenshots: flowchart.png (the whole project),
   flowchart_<pipeline>.png.
4. For every plotly dataset whose file exists (at least filter_report_plot), checks that the API
   has a plotly preview for it, clicks its node and checks that the plot appears in the metadata
   panel; screenshot: plot_preview.png (the first), plot_preview_<dataset>.png (every one).

Screenshots and the server's log go to data/08_reporting/viz/. Exit status 0 when everything
is there, 1 with one line a problem when something is missing, 2 when the check cannot run
(no Chromium, no playwright, the server did not start).

Needs the `viz` extra (kedro-viz, playwright: `pip install -e ".[viz]"`) and a Chromium, by
default the Debian package's /usr/bin/chromium (`apt-get install chromium`); it never
downloads a browser (no `playwright install`) and the page may reach nothing but the server.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Self

PROJECT = Path(__file__).resolve().parents[1]

# The datasets each pipeline must draw: its part of README's contract table ("Pipelines and
# their datasets"). A pipeline may have more.
CONTRACT = {
    "data": ["raw_requests", "tool_catalog", "requests", "rejected_requests", "train_requests", "val_requests",
             "test_requests", "data_report"],
    "teacher": ["teacher_candidates", "teacher_usage"],
    "filtering": ["teacher_candidates", "distill_train", "distill_train_openai", "filter_rejections", "filter_report",
                  "filter_report_plot"],
    "student": ["distill_train", "base_model", "base_model_info", "student_sft", "student_rl", "student_model"],
    "compression": ["student_model", "pruned_model", "pruned_recovered", "quantized_model"],
    "evaluation": ["test_requests", "stage_metrics", "predictions", "accuracy_vs_latency_plot", "size_per_stage_plot",
                   "accuracy_per_function_plot"],
}
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SELECTOR = '[data-test="kedro-pipeline-selector"]'
DRAWN_NODES = "els => els.map(e => e.getAttribute('data-node-fullname'))"
# A plotly graph's visible traces (plotly's own record) and the marks drawn for them (bars, lines,
# a heatmap's image, pie slices).
DRAWN_PLOT = """gd => ({
    traces: (gd._fullData || []).filter(trace => trace.visible !== false).length,
    marks: gd.querySelectorAll('.trace path, .trace image, .hm image, .pielayer path').length,
})"""


class CannotCheck(Exception):
    """The check itself cannot run (exit status 2)."""


def free_port(host: str, first: int = 4141) -> int:
    """A port free now, from kedro-viz's default up (it refuses ports above 49151, where the
    system hands out ephemeral ones)."""
    for port in range(first, 49152):
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
                return port
            except OSError:
                continue
    raise CannotCheck(f"no free TCP port on {host} from {first} to 49151")


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.load(response)


class VizServer:
    """``kedro viz run`` in its own process group, stopped (with its children) on exit."""

    def __init__(self, project: Path, host: str, port: int, env: str | None, log: Path):
        kedro = Path(sys.executable).with_name("kedro")
        kedro = str(kedro) if kedro.exists() else shutil.which("kedro")
        if kedro is None:
            raise CannotCheck("no `kedro` next to this Python or on PATH")
        self.command = [kedro, "viz", "run", "--host", host, "--port", str(port), "--no-browser"]
        if env:
            self.command += ["--env", env]
        self.host, self.port, self.log = host, port, log
        self.project = project
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Self:
        environment = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1"}
        self._log_file = self.log.open("w")
        self.process = subprocess.Popen(
            self.command, cwd=self.project, env=environment, stdin=subprocess.DEVNULL,
            stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )
        return self

    def __exit__(self, *exc) -> None:
        # The whole group: `kedro viz run` serves from a child process.
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        self._log_file.close()

    def log_tail(self, lines: int = 25) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def wait_ready(self, timeout: float) -> str:
        """The server's base URL once /api/main answers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise CannotCheck(f"`kedro viz run` exited with status {self.process.returncode}:\n{self.log_tail()}")
            # kedro-viz moves to another port when the one asked for was taken meanwhile.
            found = re.search(r"running at\s+(http://[\d.]+:\d+)/", self.log.read_text(errors="replace"))
            base = found.group(1) if found else f"http://{self.host}:{self.port}"
            try:
                get_json(f"{base}/api/main")
                return base
            except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
                time.sleep(1)
        raise CannotCheck(f"kedro-viz did not answer within {timeout:.0f} s:\n{self.log_tail()}")


def check_api(base: str, pipelines: list[str]) -> tuple[list[str], dict[str, dict]]:
    """Problems found through the REST API, and each checked pipeline's graph."""
    problems, graphs = [], {}
    registered = {p["id"] for p in get_json(f"{base}/api/main")["pipelines"]}
    for name in pipelines:
        if name not in registered:
            problems.append(f"pipeline '{name}' is not registered (kedro-viz lists {sorted(registered)})")
            continue
        graph = graphs[name] = get_json(f"{base}/api/pipelines/{name}")
        kinds = {node["type"] for node in graph["nodes"]}
        if not {"task", "data"} <= kinds:
            lacking = "nodes" if "task" not in kinds else "datasets"
            problems.append(f"pipeline '{name}': kedro-viz has no {lacking} for it")
        datasets = {node["name"] for node in graph["nodes"] if node["type"] == "data"}
        missing = [d for d in CONTRACT.get(name, []) if d not in datasets]
        if missing:
            problems.append(f"pipeline '{name}' lacks datasets of the contract: {', '.join(missing)}")
    return problems, graphs


def plot_datasets(base: str) -> tuple[list[dict], list[str]]:
    """The plotly datasets of the project whose file exists, and those not written yet."""
    written, not_yet = [], []
    for node in get_json(f"{base}/api/main")["nodes"]:
        if node["type"] != "data" or "plotly" not in (node.get("dataset_type") or ""):
            continue
        metadata = get_json(f"{base}/api/nodes/{node['id']}")
        path = metadata.get("filepath")
        if path and Path(path).exists():
            written.append({**node, "metadata": metadata})
        else:
            not_yet.append(node["name"])
    return written, not_yet


def drawn_nodes(page) -> set[str]:
    return set(page.eval_on_selector_all("g.pipeline-node", DRAWN_NODES))


def select_pipeline(page, name: str, graph: dict, timeout: float) -> tuple[set[str], set[str], set[str]]:
    """Pick ``name`` in the sidebar's pipeline dropdown and wait until the page draws its graph:
    every task and dataset node (parameters are hidden by default; a namespace is one node),
    and no node of the pipeline shown before. The nodes expected, those drawn, and those drawn
    that are not the pipeline's."""
    names = {node.get("full_name") or node["name"] for node in graph["nodes"]}
    names |= {node["name"] for node in graph["nodes"]}
    expected = {node.get("full_name") or node["name"] for node in graph["nodes"]
                if node["type"] in ("task", "data") and not node.get("modular_pipelines")}
    label = page.locator(f"{SELECTOR} .dropdown__label")
    if label.inner_text().strip() != name:
        label.click()
        page.locator(f'{SELECTOR} .menu-option__content[title="{name}"]').click()
    page.wait_for_function(
        f"() => document.querySelector('{SELECTOR} .dropdown__label').innerText.trim() === {json.dumps(name)}",
        timeout=timeout * 1000,
    )
    deadline = time.monotonic() + timeout
    while True:
        drawn = drawn_nodes(page)
        if expected <= drawn <= names or time.monotonic() > deadline:
            return expected, drawn, drawn - names
        time.sleep(0.5)


def screenshot(page, path: Path) -> None:
    # Clicking a dropdown option scrolls kedro-viz's app frame sideways; put it back first.
    page.evaluate("() => document.querySelectorAll('*').forEach(e => { if (e.scrollLeft) e.scrollLeft = 0; })")
    time.sleep(1)  # nodes and panels fade in
    page.screenshot(path=str(path))


def dismiss_notices(page) -> None:
    """Close kedro-viz's release banner if it shows (feature hints are off, see below)."""
    for button in page.get_by_role("button", name="Dismiss").all():
        if button.is_visible():
            button.click()


def check_page(base: str, graphs: dict[str, dict], plots: list[dict], out: Path, chromium: str,
               timeout: float) -> list[str]:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    problems = []
    step = min(timeout, 60)  # the page answers in seconds once it is up
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        except PlaywrightError as error:
            raise CannotCheck(f"Chromium at {chromium} did not start: {error}") from error
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        # Offline and self-contained: the page may load from the server only (its web fonts
        # would come from Google), and kedro-viz's feature tour stays closed.
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(base) else route.abort())
        page.add_init_script("localStorage.setItem('KedroViz', JSON.stringify({showFeatureHints: false}))")
        page.goto(f"{base}/", wait_until="domcontentloaded")
        try:
            page.wait_for_selector("g.pipeline-node", timeout=timeout * 1000)
        except PlaywrightError:
            screenshot(page, out / "flowchart.png")
            browser.close()
            return [f"the flowchart page at {base}/ draws no node within {timeout:.0f} s"]
        dismiss_notices(page)

        graphs = {**graphs, "__default__": get_json(f"{base}/api/pipelines/__default__")}
        for name, graph in graphs.items():
            try:
                expected, drawn, foreign = select_pipeline(page, name, graph, step)
            except PlaywrightError as error:
                problems.append(f"flowchart of '{name}': cannot select it in the pipeline dropdown ({error.message})")
                continue
            not_drawn = sorted(expected - drawn)
            if not drawn:
                problems.append(f"flowchart of '{name}': no node drawn")
            elif not_drawn:
                problems.append(f"flowchart of '{name}': {len(not_drawn)} nodes not drawn: {', '.join(not_drawn[:8])}")
            elif foreign:
                foreign_names = ", ".join(sorted(foreign)[:8])
                problems.append(f"flowchart of '{name}': draws nodes not in the pipeline: {foreign_names}")
            else:
                print(f"  flowchart of {name}: all {len(expected)} nodes and datasets drawn")
            screenshot(page, out / ("flowchart.png" if name == "__default__" else f"flowchart_{name}.png"))

        for index, plot in enumerate(plots):
            name = plot["name"]
            shown_in = next((p for p in plot["pipelines"] if p in graphs and p != "__default__"), "__default__")
            panel = page.locator(".pipeline-metadata--visible")
            try:
                select_pipeline(page, shown_in, graphs[shown_in], step)
                page.locator(f'g.pipeline-node[data-node-fullname="{name}"]').first.click(timeout=step * 1000)
                panel.locator(".pipeline-metadata__title", has_text=name).wait_for(timeout=step * 1000)
                plot_svg = panel.locator(".pipeline-metadata__preview .js-plotly-plot .main-svg").first
                plot_svg.wait_for(timeout=step * 1000)
            except PlaywrightError:
                problems.append(f"plot '{name}': clicking its node shows no plotly preview in the metadata panel")
                screenshot(page, out / f"plot_preview_{name}.png")
                continue
            drawn = panel.locator(".pipeline-metadata__preview .js-plotly-plot").first.evaluate(DRAWN_PLOT)
            if not (drawn["traces"] and drawn["marks"]):
                problems.append(f"plot '{name}': the preview in the metadata panel draws no data ({drawn})")
            else:
                print(f"  plot {name}: preview with {drawn['traces']} trace(s) in the metadata panel")
            screenshot(page, out / f"plot_preview_{name}.png")
            if index == 0:
                shutil.copyfile(out / f"plot_preview_{name}.png", out / "plot_preview.png")
            page.locator(".pipeline-metadata__close-button").first.click()
        browser.close()
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", type=Path, default=PROJECT, help="the Kedro project (default: this one)")
    parser.add_argument("--env", default=None, help="Kedro environment for kedro-viz (default: local)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="default: a free port from 4141 up")
    parser.add_argument("--out", type=Path, default=None, help="default: <project>/data/08_reporting/viz")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="the Chromium executable")
    parser.add_argument("--pipelines", default=",".join(CONTRACT), help="the pipelines that must be drawn")
    parser.add_argument("--require-plot", default="filter_report_plot", help="a plot dataset that must preview")
    parser.add_argument("--timeout", type=float, default=240, help="seconds to wait for the server, then for each step")
    args = parser.parse_args(argv)

    project = args.project.resolve()
    out = (args.out or project / "data" / "08_reporting" / "viz").resolve()
    out.mkdir(parents=True, exist_ok=True)
    for old in [*out.glob("flowchart*.png"), *out.glob("plot_preview*.png")]:
        old.unlink()  # a screenshot shows this run or is not there
    pipelines = [p.strip() for p in args.pipelines.split(",") if p.strip()]
    try:
        if not Path(args.chromium).exists():
            raise CannotCheck(f"no Chromium at {args.chromium} (Debian: apt-get install -y chromium)")
        try:
            import playwright  # noqa: F401
        except ImportError as error:
            raise CannotCheck('playwright is not installed: pip install -e ".[viz]"') from error

        port = args.port or free_port(args.host)
        print(f"check_viz: starting kedro viz for {project} on {args.host}:{port}")
        with VizServer(project, args.host, port, args.env, out / "kedro-viz.log") as server:
            base = server.wait_ready(args.timeout)
            print(f"check_viz: kedro-viz answers at {base}")
            problems, graphs = check_api(base, pipelines)
            plots, not_written = plot_datasets(base)
            if not_written:
                print(f"  plots not written yet (run their pipeline first), not checked: {', '.join(not_written)}")
            if args.require_plot and args.require_plot not in {plot["name"] for plot in plots}:
                problems.append(f"plot '{args.require_plot}' has no file to preview: run its pipeline first "
                                f"(e.g. kedro run --to-outputs={args.require_plot})")
            for plot in plots:
                if plot["metadata"].get("preview_type") != "PlotlyPreview" or not plot["metadata"].get("preview"):
                    problems.append(f"plot '{plot['name']}': kedro-viz's API gives no plotly preview for it")
            plots.sort(key=lambda plot: plot["name"] != args.require_plot)
            problems += check_page(base, graphs, plots, out, args.chromium, args.timeout)
    except CannotCheck as error:
        print(f"check_viz: cannot check: {error}", file=sys.stderr)
        return 2

    for problem in problems:
        print(f"check_viz: MISSING: {problem}", file=sys.stderr)
    print(f"check_viz: screenshots in {out}")
    if problems:
        print(f"check_viz: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"check_viz: OK: {len(graphs)} pipelines drawn, {len(plots)} plot(s) previewed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

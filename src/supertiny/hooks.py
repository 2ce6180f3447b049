"""Project hooks: settings are checked before a run starts, a run that evaluated ends by
printing its table, that table's numbers go to the run's MLflow record, and under
``accelerate launch`` only the main process writes the catalog."""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Callable
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.io import AbstractDataset, MemoryDataset

from supertiny.compression.settings import check_params as check_compression
from supertiny.compression.settings import check_precision as check_compression_precision
from supertiny.errors import SupertinyError
from supertiny.parameters import check_shape
from supertiny.pipelines.data.nodes import check_params as check_data
from supertiny.pipelines.filtering.nodes import check_params as check_filtering
from supertiny.pipelines.evaluation.cascade import fallback_settings
from supertiny.pipelines.evaluation.nodes import check_params as check_evaluation
from supertiny.teacher.config import check_params as check_teacher
from supertiny.runtime import (
    Device,
    is_main_process,
    join_processes,
    launched_processes,
    leave_processes,
    resolve_device,
    wait_for_everyone,
)
from supertiny.training.settings import check_params as check_student

# A parameter section, and the function that raises ConfigError when it cannot work.
PARAMETER_CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "data": check_data,
    "teacher": check_teacher,
    "filtering": check_filtering,
    "compression": check_compression,
    "evaluation": check_evaluation,
    "serving": fallback_settings,
}
# Sections whose check also needs the device that runtime.device resolves to.
DEVICE_CHECKS: dict[str, Callable[[dict[str, Any], Device], None]] = {
    "student": check_student,
    "compression": check_compression_precision,
}


class ParameterChecks:
    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        # Every section's keys and types, whichever pipeline runs: a typo anywhere stops the run.
        if "parameters" in catalog:
            check_shape(catalog.load("parameters"))
        used = {name.split(".")[0].removeprefix("params:") for name in pipeline.inputs() if name.startswith("params:")}
        for section, check in PARAMETER_CHECKS.items():
            if section in used:
                check(catalog.load(f"params:{section}"))
        if "runtime" in used:
            device = resolve_device(catalog.load("params:runtime"))
            for section, check in DEVICE_CHECKS.items():
                if section in used:
                    check(catalog.load(f"params:{section}"), device)


class SavedByMainProcess(AbstractDataset):
    """A catalog dataset as a non-main process of a launch sees it: it loads what the main
    process saved; its own saves are skipped."""

    def __init__(self, dataset: AbstractDataset) -> None:
        self._dataset = dataset

    def load(self) -> Any:
        return self._dataset.load()

    def save(self, data: Any) -> None:
        pass  # the main process saves it

    def _exists(self) -> bool:
        return self._dataset.exists()

    def _describe(self) -> dict[str, Any]:
        return {"saved_by_main_process": str(self._dataset)}


class MainProcessWrites:
    """Under ``accelerate launch`` every process runs ``kedro run`` (each trainer needs them all),
    but only the main process writes the catalog: the other processes' saves are skipped, and
    every process waits after each save until it is written, so that a later node anywhere
    reads what the main process saved. The other processes' hooks of plugins (MLflow) are off
    (``settings.DISABLE_HOOKS_FOR_PLUGINS``)."""

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        if launched_processes() == 1:
            return
        # Only the student's training needs every process; anything else would run N times.
        from supertiny.pipelines.student.pipeline import create_pipeline

        others = sorted({node.name for node in pipeline.nodes} - {node.name for node in create_pipeline().nodes})
        if others:
            raise SupertinyError(
                f"accelerate launch started {launched_processes()} processes, and each of them would run {others[:4]}"
                f"{' ...' if len(others) > 4 else ''}: launch only `kedro run --pipelines student`, "
                "and run the other pipelines with a plain `kedro run`"
            )
        mixed_precision = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
        if mixed_precision != "no":
            raise SupertinyError(
                f"accelerate launch asks for {mixed_precision} mixed precision: set it per stage in "
                "student.<stage>.args.bf16 (checked against the device), and launch with --mixed_precision no"
            )
        join_processes(resolve_device(catalog.load("params:runtime")))
        if not is_main_process():
            replacing = logging.getLogger("kedro.io.data_catalog")
            level = replacing.level
            replacing.setLevel(logging.ERROR)  # else one "Replacing dataset" warning a dataset
            try:
                for name in sorted(pipeline.all_outputs()):
                    dataset = catalog.get(name)
                    if dataset is not None and not isinstance(dataset, MemoryDataset):  # memory is each process's own
                        catalog[name] = SavedByMainProcess(dataset)
            finally:
                replacing.setLevel(level)

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node: Any) -> None:
        wait_for_everyone()

    @hook_impl
    def after_pipeline_run(self) -> None:
        leave_processes()


class StageTable:
    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        if "stage_metrics" not in pipeline.all_outputs():
            return
        from supertiny.pipelines.evaluation.nodes import stage_table_markdown

        print("\nsupertiny: every stage on the same test requests\n")
        print(stage_table_markdown(catalog.load("stage_metrics")))
        print()


# Letters, digits, _ - . and spaces: what MLflow takes in a metric's name on every system (it
# also takes "/", which can make a name read as another path, and ":" except on Windows).
_NOT_IN_METRIC_NAME = re.compile(r"[^\w\-. ]")


def stage_metric_values(table: Any) -> dict[str, float]:
    """``{"<stage>.<column>": value}`` for every number in the ``stage_metrics`` table.

    Text columns (``model_path``) and missing values (a stage that could not measure one) are
    left out: MLflow's metrics are numbers.
    """
    values = {}
    for row in table.to_dict(orient="records"):
        stage = _NOT_IN_METRIC_NAME.sub("_", str(row["stage"]))
        for column, value in row.items():
            if column == "stage" or isinstance(value, str) or value is None:
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue
            if math.isfinite(number):
                values[f"{stage}.{_NOT_IN_METRIC_NAME.sub('_', str(column))}"] = number
    return values


class StageMetricsToMlflow:
    """Logs ``stage_metrics`` to the MLflow run that kedro-mlflow opened for this ``kedro run``.

    kedro-mlflow logs the parameters every node reads; the metrics are the evaluation's table,
    logged when it is saved. ``after_dataset_saved`` rather than ``after_pipeline_run``: plugin
    hooks run before project hooks there, and kedro-mlflow's ends the run. With no active run
    (tracking disabled for the pipeline, a session outside ``kedro run``) it does nothing.
    """

    dataset_name = "stage_metrics"

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node: Any) -> None:
        if dataset_name != self.dataset_name:
            return
        import mlflow

        if mlflow.active_run() is None:
            return
        mlflow.log_metrics(stage_metric_values(data))


class SharedTeacherServer:
    """Stops the embedded teacher server when a run ends: one server serves all of a run's
    teacher nodes (labelling, judging, the evaluation's teacher row), started on first use.
    Their spending is one account too, started afresh with each run (``teacher.max_cost_usd``)."""

    @hook_impl
    def before_pipeline_run(self) -> None:
        from supertiny.teacher.client import RUN_SPENDING

        RUN_SPENDING.reset()

    @hook_impl
    def after_pipeline_run(self) -> None:
        from supertiny.teacher.server import stop_shared_servers

        stop_shared_servers()

    @hook_impl
    def on_pipeline_error(self) -> None:
        from supertiny.teacher.server import stop_shared_servers

        stop_shared_servers()

"""Project hooks: settings are checked before a run starts, a run that evaluated ends by
printing its table, and that table's numbers go to the run's MLflow record."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from kedro.framework.hooks import hook_impl

from supertiny.compression.settings import check_params as check_compression
from supertiny.pipelines.filtering.nodes import check_params as check_filtering
from supertiny.training.settings import check_params as check_student

# A parameter section, and the function that raises ConfigError when it cannot work.
PARAMETER_CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "filtering": check_filtering,
    "student": check_student,
    "compression": check_compression,
}


class ParameterChecks:
    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        used = {name.split(".")[0].removeprefix("params:") for name in pipeline.inputs() if name.startswith("params:")}
        for section, check in PARAMETER_CHECKS.items():
            if section in used:
                check(catalog.load(f"params:{section}"))


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
    teacher nodes (labelling, judging, the evaluation's teacher row), started on first use."""

    @hook_impl
    def after_pipeline_run(self) -> None:
        from supertiny.teacher.server import stop_shared_servers

        stop_shared_servers()

    @hook_impl
    def on_pipeline_error(self) -> None:
        from supertiny.teacher.server import stop_shared_servers

        stop_shared_servers()

"""Project hooks: settings are checked before a run starts, and a run that evaluated ends
by printing its table."""

from __future__ import annotations

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

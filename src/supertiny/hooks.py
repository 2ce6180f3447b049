"""Project hooks: settings are checked before a run starts, not when a node reaches them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kedro.framework.hooks import hook_impl

from supertiny.pipelines.filtering.nodes import check_params as check_filtering

# A parameter section, and the function that raises ConfigError when it cannot work.
PARAMETER_CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "filtering": check_filtering,
}


class ParameterChecks:
    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        used = {name.split(".")[0].removeprefix("params:") for name in pipeline.inputs() if name.startswith("params:")}
        for section, check in PARAMETER_CHECKS.items():
            if section in used:
                check(catalog.load(f"params:{section}"))

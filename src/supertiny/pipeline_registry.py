"""Project pipelines: one per step, and ``__default__`` chaining every step but those run on demand."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline


# Run on demand, after the default run: ``supertiny shadow`` replays requests against the teacher
# and the served model.
ON_DEMAND = {"shadow"}


def register_pipelines() -> dict[str, Pipeline]:
    # Kedro loads only the pipelines a run asks for; __default__ is every pipeline found,
    # and Kedro orders their nodes by the datasets they pass on.
    pipelines = find_pipelines(raise_errors=True)
    pipelines["__default__"] = sum((p for name, p in pipelines.items() if name != "__default__" and name not in ON_DEMAND), Pipeline([]))
    return pipelines

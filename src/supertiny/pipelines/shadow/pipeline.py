"""Shadow (``supertiny shadow``, or ``kedro run --pipelines shadow``): replay test requests against
the teacher and the served model; not part of the default run."""

from kedro.pipeline import Pipeline, node, pipeline

from supertiny.pipelines.shadow.nodes import shadow_compare


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(
                shadow_compare,
                ["test_requests", "teacher_seed_examples", "base_model", "quantized_model", "params:student.tools_mode",
                 "params:teacher", "params:evaluation", "params:shadow"],
                "shadow_report",
                name="shadow_compare",
            ),
        ]
    )

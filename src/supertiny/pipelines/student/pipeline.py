"""Student: base model preparation (SFT, RL and distillation build on it)."""

from kedro.pipeline import Pipeline, node, pipeline

from supertiny.pipelines.student.nodes import prepare_base_model


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(prepare_base_model, "params:base_model", ["base_model", "base_model_info"], name="prepare_base_model"),
        ]
    )

"""Model: the base model every other step starts from, from ``params:base_model``."""

from kedro.pipeline import Pipeline, node, pipeline

from supertiny.pipelines.model.nodes import prepare_base_model


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline([node(prepare_base_model, "params:base_model", ["base_model", "base_model_info"], name="prepare_base_model")])

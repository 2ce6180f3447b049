"""Data: raw rows from any source -> validated requests -> train / val / test."""

from kedro.pipeline import Pipeline, node, pipeline

from supertiny.pipelines.data.nodes import split_requests, summarise_data, validate_requests


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(
                validate_requests,
                ["raw_requests", "tool_catalog", "params:data"],
                ["requests", "rejected_requests"],
                name="validate_requests",
            ),
            node(
                split_requests,
                ["requests", "params:data.split"],
                ["train_requests", "val_requests", "test_requests"],
                name="split_requests",
            ),
            node(
                summarise_data,
                ["train_requests", "val_requests", "test_requests", "rejected_requests", "tool_catalog"],
                "data_report",
                name="summarise_data",
            ),
        ]
    )

"""Data: raw rows from any source -> validated requests -> train / val / test."""

from kedro.pipeline import Pipeline, node, pipeline

from supertiny.pipelines.data.nodes import check_rejections, split_requests, summarise_data, validate_requests


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(
                validate_requests,
                ["raw_requests", "tool_catalog", "params:data"],
                ["validated_requests", "rejected_requests", "source_profile"],
                name="validate_requests",
            ),
            # A separate node, so that rejected_requests is written before a bad source stops the run.
            node(
                check_rejections,
                ["validated_requests", "rejected_requests", "source_profile", "params:data"],
                "requests",
                name="check_rejections",
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

"""Filtering: teacher candidates -> verified training examples, rejections and a report."""

from kedro.pipeline import Pipeline, node, pipeline

from supertiny.formats import export_openai_chat
from supertiny.pipelines.filtering.nodes import filter_candidates, plot_filter_report


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(
                filter_candidates,
                ["teacher_candidates", "teacher_requests", "test_requests", "params:filtering", "params:teacher"],
                ["distill_train", "filter_rejections", "filter_report", "filter_summary"],
                name="filter_train_candidates",
            ),
            node(plot_filter_report, "filter_report", "filter_report_plot", name="plot_filter_report"),
            # The verified data for a hosted model's fine-tuning or another trainer.
            node(export_openai_chat, ["distill_train", "params:data.openai_export"], "distill_train_openai",
                 name="export_distill_train_openai"),
            # The same filter on the teacher's validation labels: early stopping on teacher-quality data.
            node(
                filter_candidates,
                ["val_teacher_candidates", "val_requests", "test_requests", "params:filtering", "params:teacher"],
                ["distill_val", "val_filter_rejections", "val_filter_report", "val_filter_summary"],
                name="filter_val_candidates",
            ),
        ]
    )

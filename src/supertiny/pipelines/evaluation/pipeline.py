"""Evaluation: every stage measured the same way on the same test requests, then one table,
plots and a report."""

from __future__ import annotations

from functools import partial, update_wrapper

from kedro.pipeline import Pipeline, node, pipeline

from supertiny.pipelines.evaluation.cascade import cascade_curve, evaluate_cascade, plot_cascade_curve, plot_reliability
from supertiny.pipelines.evaluation.nodes import (
    collect_predictions,
    collect_stage_metrics,
    evaluate_always_no_call,
    evaluate_local_model,
    evaluate_quantized_model,
    evaluate_teacher,
    evaluate_trained_stage,
    teacher_validation_predictions,
    evaluation_requests,
    local_predictions,
    per_function_table,
    plot_accuracy_per_function,
    plot_accuracy_vs_latency,
    plot_size_per_stage,
    record_run,
    with_teacher_references,
    write_report,
)

# Stage name -> the catalog dataset of its model, in the order of the recipe (DESIGN.md).
LOCAL_STAGES = {
    "base": "base_model",
    "student_sft": "student_sft",
    "student_rl": "student_rl",
    "student_kd": "student_kd",
    "pruned": "pruned_model",
    "pruned_recovered": "pruned_recovered",
}
# Stages measured only when student.stages trains them (otherwise their model is the one before).
OPTIONAL_STAGES = {"student_rl": "rl", "student_kd": "kd"}


def _stage_pipeline(stage: str, model: str) -> Pipeline:
    """One stage's evaluation, in its own namespace (a group of its own in kedro-viz): its model
    answers the evaluation requests; its row and predictions keep their catalog names."""
    inputs = ["model", "evaluation_requests", "params:student.tools_mode", "params:evaluation", "params:runtime"]
    if stage in OPTIONAL_STAGES:
        function = partial(evaluate_trained_stage, stage=stage, training_stage=OPTIONAL_STAGES[stage])
        evaluate, inputs = update_wrapper(function, evaluate_trained_stage), [*inputs, "params:student.stages"]
    else:
        evaluate = update_wrapper(partial(evaluate_local_model, stage=stage), evaluate_local_model)
    return pipeline(
        [node(evaluate, inputs, ["eval_row", "predictions"], name="evaluate")],
        namespace=stage,
        inputs={"model": model, "evaluation_requests": "evaluation_requests"},
        outputs={"eval_row": f"{stage}_eval_row", "predictions": f"{stage}_predictions"},
        parameters={name for name in inputs if name.startswith("params:")},
    )


def _cascade_nodes() -> list:
    """The final model with the teacher behind it: both answer validation requests, the threshold
    is swept there, and the chosen rule is measured on the test requests (``cascade``)."""
    final_on_val = update_wrapper(partial(local_predictions, stage="quantized"), local_predictions)
    return [
        node(evaluation_requests, ["val_requests", "params:evaluation"], "sampled_val_requests", name="choose_validation_requests"),
        node(teacher_validation_predictions, ["sampled_val_requests", "teacher_seed_examples", "base_model", "params:teacher"],
             "teacher_val_predictions", name="answer_validation_with_teacher"),
        node(final_on_val, ["quantized_model", "sampled_val_requests", "params:student.tools_mode", "params:evaluation", "params:runtime"],
             "final_val_predictions", name="answer_validation_with_final_model"),
        node(cascade_curve, ["final_val_predictions", "teacher_val_predictions", "quantized_eval_row", "teacher_eval_row", "params:serving"],
             ["cascade_curve", "cascade_choice", "cascade_validation_predictions"], name="sweep_cascade_threshold"),
        node(evaluate_cascade, ["evaluation_requests", "quantized_predictions", "teacher_predictions", "quantized_eval_row",
                                "teacher_eval_row", "cascade_choice"], ["cascade_eval_row", "cascade_predictions"], name="evaluate_cascade"),
        node(plot_cascade_curve, ["cascade_curve", "cascade_choice"], "cascade_curve_plot", name="plot_cascade_curve"),
        node(plot_reliability, ["cascade_validation_predictions", "cascade_choice"], "confidence_reliability_plot", name="plot_confidence_reliability"),
    ]


def create_pipeline(**kwargs) -> Pipeline:
    stages = ["teacher", "always_no_call", *LOCAL_STAGES, "quantized", "cascade"]
    rows = [f"{stage}_eval_row" for stage in stages]
    return pipeline(
        [
            node(evaluation_requests, ["test_requests", "params:evaluation"], "sampled_test_requests", name="choose_evaluation_requests"),
            node(
                evaluate_teacher,
                ["sampled_test_requests", "teacher_seed_examples", "base_model", "params:teacher", "params:evaluation"],
                ["teacher_eval_row", "teacher_predictions", "teacher_eval_usage"],
                name="evaluate_teacher",
            ),
            # Unlabelled requests take the teacher's greedy answer as their reference (evaluation.unlabelled_reference).
            node(with_teacher_references, ["sampled_test_requests", "teacher_predictions", "params:evaluation"], "evaluation_requests",
                 name="reference_unlabelled_requests"),
            node(evaluate_always_no_call, ["evaluation_requests"], ["always_no_call_eval_row", "always_no_call_predictions"],
                 name="evaluate_always_no_call"),
            *[_stage_pipeline(stage, model) for stage, model in LOCAL_STAGES.items()],
            node(
                evaluate_quantized_model,
                ["quantized_model", "evaluation_requests", "params:student.tools_mode", "params:evaluation", "params:runtime",
                 "pruned_recovered_eval_row"],
                ["quantized_eval_row", "quantized_predictions"],
                name="evaluate_quantized",
            ),
            *_cascade_nodes(),
            node(collect_stage_metrics, rows, "stage_metrics", name="collect_stage_metrics"),
            node(collect_predictions, [f"{stage}_predictions" for stage in stages], "predictions", name="collect_predictions"),
            node(per_function_table, rows, "function_accuracy", name="per_function_table"),
            node(plot_accuracy_vs_latency, "stage_metrics", "accuracy_vs_latency_plot", name="plot_accuracy_vs_latency"),
            node(plot_size_per_stage, "stage_metrics", "size_per_stage_plot", name="plot_size_per_stage"),
            node(plot_accuracy_per_function, "function_accuracy", "accuracy_per_function_plot", name="plot_accuracy_per_function"),
            node(record_run, ["parameters", "stage_metrics"], "run_record", name="record_run"),
            node(
                write_report,
                ["stage_metrics", "function_accuracy", "predictions", "evaluation_requests", "distill_train", "data_report",
                 "filter_summary", "teacher_usage", "run_record", "accuracy_vs_latency_plot", "size_per_stage_plot",
                 "accuracy_per_function_plot", "cascade_choice", "cascade_curve_plot", "confidence_reliability_plot",
                 "params:evaluation.report"],
                ["report_markdown", "report_html"],
                name="write_report",
            ),
        ]
    )

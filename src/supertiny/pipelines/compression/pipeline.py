"""Compression: student_model -> pruned_model -> pruned_recovered -> quantized_model."""

from kedro.pipeline import Pipeline, node, pipeline

from supertiny.pipelines.compression.nodes import prune_student, quantize_recovered, recover_pruned, summarize_compression


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(
                prune_student,
                ["student_model", "distill_train", "params:compression", "params:student", "params:runtime"],
                ["pruned_model", "compression_pruning_log"],
                name="prune_student",
            ),
            node(
                recover_pruned,
                ["pruned_model", "student_model", "distill_train", "params:compression", "params:student", "params:runtime"],
                ["pruned_recovered", "compression_recovery_log"],
                name="recover_pruned",
            ),
            node(
                quantize_recovered,
                ["pruned_recovered", "distill_train", "params:compression", "params:student", "params:runtime"],
                ["quantized_model", "compression_quantization_log"],
                name="quantize_recovered",
            ),
            node(
                summarize_compression,
                [
                    "compression_pruning_log",
                    "compression_recovery_log",
                    "compression_quantization_log",
                    "pruned_model",
                    "quantized_model",
                    "student_model",
                ],
                "compression_log",
                name="summarize_compression",
            ),
        ]
    )

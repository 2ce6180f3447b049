"""Student: from the base model, SFT -> RL -> distillation, each stage's model and log in the catalog."""

from kedro.pipeline import Pipeline, node, pipeline

from supertiny.pipelines.student.nodes import finish_student, train_kd, train_rl, train_sft


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(
                train_sft,
                ["base_model", "distill_train", "distill_val", "params:student", "params:runtime"],
                ["student_sft", "student_sft_log"],
                name="train_sft",
            ),
            node(
                train_rl, ["student_sft", "distill_train", "params:student", "params:runtime"], ["student_rl", "student_rl_log"], name="train_rl"
            ),
            node(
                train_kd, ["student_rl", "distill_train", "params:student", "params:runtime"], ["student_kd", "student_kd_log"], name="train_kd"
            ),
            node(
                finish_student,
                ["student_kd", "student_sft_log", "student_rl_log", "student_kd_log"],
                ["student_model", "student_training_summary"],
                name="finish_student",
            ),
        ]
    )

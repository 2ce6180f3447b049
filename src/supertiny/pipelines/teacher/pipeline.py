"""Teacher: seed examples aside, then k teacher candidates for each train (and some val) request."""

from kedro.pipeline import Pipeline, node, pipeline

from supertiny.pipelines.teacher.nodes import label_with_teacher, select_seed_examples, select_teacher_requests


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(
                select_seed_examples,
                ["train_requests", "params:teacher"],
                ["teacher_seed_examples", "teacher_requests"],
                name="select_seed_examples",
            ),
            node(
                select_teacher_requests,
                ["teacher_requests", "params:teacher", "params:student.tools_mode", "params:evaluation", "params:runtime"],
                ["teacher_selected_requests", "teacher_selection"],
                name="select_teacher_requests",
            ),
            # The selected requests are at most max_requests already: labelling samples none away.
            node(
                label_with_teacher,
                ["teacher_selected_requests", "teacher_seed_examples", "base_model", "params:teacher", "params:teacher.max_requests"],
                ["teacher_candidates", "teacher_usage"],
                name="label_with_teacher",
            ),
            # Teacher labels for validation requests, so later steps can measure on teacher-quality data.
            node(
                label_with_teacher,
                ["val_requests", "teacher_seed_examples", "base_model", "params:teacher", "params:teacher.val_max_requests"],
                ["val_teacher_candidates", "val_teacher_usage"],
                name="label_val_with_teacher",
            ),
        ]
    )

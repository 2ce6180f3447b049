"""A run's MLflow record: kedro-mlflow logs the parameters, the project's hook the stage table.

No model is loaded: the table is made up, and the `kedro run` below runs one node that writes it.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from supertiny.hooks import StageMetricsToMlflow, stage_metric_values

# MLflow's SQLite store, on SQLAlchemy 2.1: a notice about MLflow's code, not the project's.
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")

COLUMNS = {
    "stage": ["base", "quantized_rtn"],
    "model_path": ["data/06_models/base_model", "data/06_models/quantized_model"],
    "params": [134_515_008, 134_515_008],
    "size_mb": [513.1, 171.0],
    "exact_match": [0.25, 0.5],
    "similarity": [0.5, 0.75],
    "valid_rate": [1.0, 0.75],
    "no_call_accuracy": [0.0, None],
    "p50_ms": [120.0, 80.0],
    "p95_ms": [150.0, 95.5],
    "tokens_per_s": [40.0, 55.0],
    "requests_per_s": [8.0, 12.5],
    "cost_per_1k_requests": [None, 0.002],
    "n": [4, 4],
}


def table() -> pd.DataFrame:
    return pd.DataFrame(COLUMNS)


def test_every_number_of_the_table_is_a_stage_metric():
    values = stage_metric_values(table())
    assert values["base.exact_match"] == 0.25
    assert values["quantized_rtn.p95_ms"] == 95.5
    assert values["base.n"] == 4.0 and values["base.params"] == 134_515_008.0
    # Text and missing values are not metrics.
    assert not any(name.endswith((".model_path", ".stage")) for name in values)
    assert "base.cost_per_1k_requests" not in values and "quantized_rtn.no_call_accuracy" not in values
    assert len(values) == 2 * (len(COLUMNS) - 2) - 2


def test_a_stage_name_mlflow_refuses_is_made_safe():
    row = table().iloc[:1].assign(stage="quantized:w4/g128")
    assert "quantized_w4_g128.exact_match" in stage_metric_values(row)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """A SQLite store for the module's tests (making its tables takes seconds, once)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def tracking(store):
    """MLflow pointed at the store for one test, and back to its default afterwards."""
    mlflow.set_tracking_uri(store)
    yield MlflowClient()
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(None)


def test_the_hook_logs_the_table_into_the_active_run(tracking):
    hook = StageMetricsToMlflow()
    experiment = tracking.create_experiment("supertiny")
    with mlflow.start_run(experiment_id=experiment) as run:
        hook.after_dataset_saved("predictions", table(), node=None)  # another dataset: nothing
        assert tracking.get_run(run.info.run_id).data.metrics == {}
        hook.after_dataset_saved("stage_metrics", table(), node=None)
    assert tracking.get_run(run.info.run_id).data.metrics == stage_metric_values(table())


def test_with_no_active_run_the_hook_starts_none(tracking):
    runs = len(mlflow.search_runs(search_all_experiments=True, output_format="list"))
    StageMetricsToMlflow().after_dataset_saved("stage_metrics", table(), node=None)
    assert mlflow.active_run() is None
    assert len(mlflow.search_runs(search_all_experiments=True, output_format="list")) == runs


# The project copy's pipelines: one node, reading a parameter section, writing the table.
ONE_NODE_REGISTRY = textwrap.dedent(
    '''
    import pandas as pd
    from kedro.pipeline import Pipeline, node

    def made_up_table(evaluation):
        return pd.DataFrame({COLUMNS!r})

    def register_pipelines():
        pipeline = Pipeline([node(made_up_table, "params:evaluation", "stage_metrics", name="made_up_table")])
        return {{"__default__": pipeline, "evaluation": pipeline}}
    '''
).format(COLUMNS=COLUMNS)


def test_kedro_run_records_parameters_and_stage_metrics_inside_the_project(project_copy: Path, kedro):
    (project_copy / "src" / "supertiny" / "pipeline_registry.py").write_text(ONE_NODE_REGISTRY)
    result = kedro(project_copy, "run", "--env", "smoke", "--pipelines", "evaluation")
    assert result.returncode == 0, result.stderr[-4000:]

    # conf/base/mlflow.yml: a SQLite store next to the run's outputs, in the project that ran.
    store = project_copy / "data" / "smoke" / "mlflow.db"
    assert store.is_file()
    client = MlflowClient(f"sqlite:///{store}")
    experiment = client.get_experiment_by_name("supertiny")
    [run] = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "evaluation"
    # Parameters, one per setting (flattened), with the smoke environment's values.
    assert run.data.params["evaluation.max_requests"] == "4"
    assert run.data.params["evaluation.latency.prompts"] == "2"
    assert run.data.metrics == stage_metric_values(table())

"""Kedro settings of supertiny."""

import warnings
from pathlib import Path

from kedro.config import OmegaConfigLoader
from kedro.utils import find_kedro_project

from supertiny.hooks import MainProcessWrites, ParameterChecks, SharedTeacherServer, StageMetricsToMlflow, StageTable
from supertiny.runtime import is_main_process

# Kedro 1.7 itself calls an OmegaConf function that warns it is deprecated, on every run;
# the notice is about Kedro's code, not the project's configuration.
warnings.filterwarnings("ignore", message=r"register_new_resolver\(\) is deprecated", category=UserWarning)

# kedro-mlflow's own hook (the run, the parameters) registers itself from its package; in the
# other processes of an `accelerate launch` it is off, so that a launch is one MLflow run.
HOOKS = (ParameterChecks(), MainProcessWrites(), StageTable(), StageMetricsToMlflow(), SharedTeacherServer())
DISABLE_HOOKS_FOR_PLUGINS = () if is_main_process() else ("kedro_mlflow",)


def project_path(path: str) -> str:
    """``${project_path:data/x}`` in config: ``data/x`` as an absolute path in the project.

    The project is the Kedro project around the working directory (``kedro run`` in a copy of
    the project writes into that copy; a notebook in notebooks/ finds its parent), else the
    one this file is in. conf/base/mlflow.yml needs it: a ``sqlite:///`` URI with a relative
    path is relative to the working directory, not to the project.
    """
    root = find_kedro_project(Path.cwd()) or Path(__file__).resolve().parents[2]
    return (root / path).as_posix()


CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # An environment (smoke, local) overrides single keys of parameters (and of mlflow.yml),
    # not whole sections.
    "merge_strategy": {"parameters": "soft", "globals": "soft", "mlflow": "soft"},
    "custom_resolvers": {"project_path": project_path},
}

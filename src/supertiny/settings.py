"""Kedro settings of supertiny."""

import warnings

from kedro.config import OmegaConfigLoader

from supertiny.hooks import ParameterChecks, StageTable

# Kedro 1.7 itself calls an OmegaConf function that warns it is deprecated, on every run;
# the notice is about Kedro's code, not the project's configuration.
warnings.filterwarnings("ignore", message=r"register_new_resolver\(\) is deprecated", category=UserWarning)

HOOKS = (ParameterChecks(), StageTable())

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # An environment (smoke, local) overrides single keys of parameters, not whole sections.
    "merge_strategy": {"parameters": "soft", "globals": "soft"},
}

"""Every parameters key is known: a typo or a wrong type anywhere is one ConfigError naming the
dotted setting (supertiny.parameters), before any node runs."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
from kedro.config import OmegaConfigLoader

from supertiny import hooks, parameters
from supertiny.errors import ConfigError
from supertiny.parameters import check_shape
from supertiny.settings import CONFIG_LOADER_ARGS
from supertiny.teacher.config import LocalServerConfig, SelectionConfig, TeacherConfig

CONF = Path(__file__).resolve().parents[1] / "conf"
# Values that are open maps, not settings: TRL's own args, model names in prices, config of a random model.
OPEN_MAPS = {"args", "prices", "random_init"}


def project_parameters(env: str) -> dict:
    return OmegaConfigLoader(str(CONF), **{**CONFIG_LOADER_ARGS, "default_run_env": env})["parameters"]


def setting_paths(value: dict, prefix: tuple = ()) -> list[tuple]:
    """Every dotted key of the base parameters, down to the open maps."""
    paths = []
    for key, inner in value.items():
        paths.append((*prefix, key))
        if isinstance(inner, dict) and key not in OPEN_MAPS:
            paths.extend(setting_paths(inner, (*prefix, key)))
    return paths


BASE = project_parameters("local")


@pytest.mark.parametrize("env", ["local", "smoke", "gpu"])
def test_every_project_environment_fits_the_parameters_models(env):
    check_shape(project_parameters(env))


@pytest.mark.parametrize("path", [".".join(p) for p in setting_paths(BASE)])
def test_each_key_misspelt_is_named_with_the_key_it_meant(path):
    keys = path.split(".")
    broken = copy.deepcopy(BASE)
    parent = broken
    for key in keys[:-1]:
        parent = parent[key]
    typo = keys[-1][:-1] + keys[-1][-1] * 2 if len(keys) > 1 else keys[-1] + "s"
    parent[typo] = parent.pop(keys[-1])
    with pytest.raises(ConfigError) as raised:
        check_shape(broken)
    message = str(raised.value)
    assert message.startswith(".".join([*keys[:-1], typo]) + " is not a"), message
    assert f"did you mean {path}?" in message, message


@pytest.mark.parametrize(
    ("section", "value", "message"),
    [
        ("teacher", {"k_samples": "3"}, r"teacher.k_samples: input should be a valid integer; got '3'"),
        ("teacher", {"temperature": True}, r"teacher.temperature: input should be a valid number; got True"),
        ("teacher", {"strategy": "magic"}, r"teacher.strategy must be one of 'native', 'prompted' or 'decomposed'; got 'magic'"),
        ("teacher", {"prices": {"gpt-4o-mini": {"promt": 0.1, "completion": 0.6}}},
         r"teacher.prices.gpt-4o-mini.promt is not a teacher setting \(did you mean teacher.prices.gpt-4o-mini.prompt\?\)"),
        ("teacher", {"local_server": {"dtype": "int4"}}, r"teacher.local_server.dtype must be one of 'auto', 'bfloat16' or 'float32'; got 'int4'"),
        ("runtime", {"device": "tpu"}, r"runtime.device must be one of 'auto', 'cpu' or 'cuda'"),
        ("student", {"sft": {"lora": {"rank": 8}}}, r"student.sft.lora.rank is not a student setting"),
        ("filtering", {"judge": {"teacher": {"modle": "m"}}}, r"filtering.judge.teacher.modle is not a filtering setting \(did you mean filtering.judge.teacher.model\?\)"),
        ("evaluation", {"latency": {"new_tokens": 24}}, r"evaluation.latency.new_tokens is not an evaluation setting; known: prompts, warmup"),
        ("studnet", {}, r"studnet is not a parameters section \(did you mean student\?\)"),
    ],
)
def test_a_wrong_type_or_word_names_the_setting(section, value, message):
    with pytest.raises(ConfigError, match=message):
        check_shape({section: value})


def test_trl_args_and_price_names_are_open():
    check_shape({"student": {"sft": {"args": {"any_trl_setting": 1}}}, "teacher": {"prices": {"my-model": {"prompt": 1, "completion": 2}}}})


def test_default_tools_takes_all_or_a_list_of_tools():
    check_shape({"data": {"default_tools": "all"}})
    check_shape({"data": {"default_tools": [{"type": "function", "function": {"name": "lights_on"}}]}})
    with pytest.raises(ConfigError, match=r"data.default_tools"):
        check_shape({"data": {"default_tools": "every"}})


def test_the_data_fields_model_knows_every_record_field():
    """data.fields maps the request record's fields (formats.RECORD_FIELDS): the model checks their names."""
    from supertiny.formats import RECORD_FIELDS

    assert set(parameters.DataFields.model_fields) == set(RECORD_FIELDS)


def test_the_teacher_model_knows_every_field_of_the_typed_teacher_config():
    """TeacherConfig is what the teacher code reads: a field it has and the model lacks would be refused."""
    for config, model in [(TeacherConfig, parameters.Teacher), (LocalServerConfig, parameters.LocalServer),
                          (SelectionConfig, parameters.TeacherSelection)]:
        assert {f.name for f in dataclasses.fields(config)} == set(model.model_fields), config.__name__


def test_the_hook_checks_every_section_whichever_pipeline_runs():
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.pipeline import Pipeline

    broken = copy.deepcopy(BASE)
    broken["compression"]["quantization"]["smoth_alpha"] = broken["compression"]["quantization"].pop("smooth_alpha")
    catalog = DataCatalog(datasets={"parameters": MemoryDataset(broken)})
    with pytest.raises(ConfigError, match=r"compression.quantization.smoth_alpha is not a compression setting \(did you mean compression.quantization.smooth_alpha\?\)"):
        hooks.ParameterChecks().before_pipeline_run({}, Pipeline([]), catalog)

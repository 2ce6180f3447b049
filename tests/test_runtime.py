"""runtime.device: the device every device-dependent step takes, and what it can do.

No GPU here: a CUDA machine is torch's answers to `torch.cuda.*`, replaced in the test."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import yaml
from kedro.io import DataCatalog, MemoryDataset

from supertiny import hooks
from supertiny.compression.fine_tuning import _config as compression_config
from supertiny.errors import ConfigError
from supertiny.pipelines.student.pipeline import create_pipeline as student_pipeline
from supertiny.runtime import CPU, Device, resolve_device, torch_threads
from supertiny.training.settings import check_params, trainer_settings

CONF = Path(__file__).resolve().parents[1] / "conf"
H200 = Device("cuda", "NVIDIA H200", bf16=True, fp16=True)
V100 = Device("cuda", "Tesla V100-SXM2-16GB", bf16=False, fp16=True)


@pytest.fixture
def student() -> dict:
    return yaml.safe_load((CONF / "base" / "parameters_student.yml").read_text())["student"]


@pytest.fixture
def gpu_machine(monkeypatch):
    """What torch says on a machine with one GPU: ``gpu_machine(bf16=...)``."""
    def machine(name: str = "NVIDIA H200", bf16: bool = True) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_: name)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16)

    return machine


def with_args(student: dict, stage: str, **args) -> dict:
    changed = copy.deepcopy(student)
    changed[stage]["args"] |= args
    return changed


def test_auto_is_cuda_when_torch_sees_a_gpu_else_the_cpu(gpu_machine, monkeypatch):
    monkeypatch.delenv("ACCELERATE_USE_CPU", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device({"device": "auto"}) == CPU
    gpu_machine(bf16=True)
    assert resolve_device({"device": "auto"}) == H200
    assert resolve_device({"device": "cpu"}) == CPU
    gpu_machine(name="Tesla V100-SXM2-16GB", bf16=False)
    assert resolve_device({"device": "cuda"}) == V100
    # `accelerate launch --cpu` asks for the CPU: auto follows it, an explicit cuda is refused.
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    assert resolve_device({"device": "auto"}) == CPU
    with pytest.raises(ConfigError, match=r"runtime.device is cuda, but `accelerate launch --cpu` asked for the CPU"):
        resolve_device({"device": "cuda"})


def test_a_device_that_cannot_be_had_is_named(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"runtime.device is cuda, but torch .* sees no CUDA device: install the CUDA build"):
        resolve_device({"device": "cuda"})
    with pytest.raises(ConfigError, match=r"runtime.device must be one of \['auto', 'cpu', 'cuda'\]; got 'gpu'"):
        resolve_device({"device": "gpu"})


def test_the_shipped_environments_name_a_device():
    assert yaml.safe_load((CONF / "base" / "parameters_runtime.yml").read_text())["runtime"] == {"device": "auto"}
    assert yaml.safe_load((CONF / "gpu" / "parameters_runtime.yml").read_text())["runtime"] == {"device": "cuda"}


@pytest.mark.parametrize("device", [CPU, H200], ids=["cpu", "h200"])
def test_bf16_passes_where_the_device_has_it(student, device):
    check_params(with_args(student, "sft", bf16=True), device)
    check_params(with_args(student, "rl", bf16=True, bf16_full_eval=True), device)


def test_bf16_fails_clearly_where_the_device_lacks_it(student):
    with pytest.raises(ConfigError) as error:
        check_params(with_args(student, "sft", bf16=True), V100)
    message = str(error.value)
    assert message.startswith("student.sft.args.bf16: bfloat16 mixed precision needs the CPU or a CUDA GPU of compute capability 8.0")
    assert "runtime.device resolved to Tesla V100-SXM2-16GB (cuda)" in message
    check_params(with_args(student, "sft", fp16=True), V100)  # what that GPU does have


@pytest.mark.parametrize(
    ("stage", "args", "message"),
    [
        ("rl", {"fp16": True}, "student.rl.args.fp16: float16 mixed precision needs a CUDA GPU"),
        ("kd", {"bf16": "yes"}, "student.kd.args.bf16 must be true or false; got 'yes'"),
        ("sft", {"bf16": True, "fp16": True}, "student.sft.args: bf16 and fp16 are both true"),
    ],
)
def test_other_precision_settings_that_cannot_work_are_named(student, stage, args, message):
    device = H200 if args.get("fp16") and args.get("bf16") else CPU
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_params(with_args(student, stage, **args), device)


def test_training_runs_on_the_configured_device(student, tmp_path):
    """The trainers' device is runtime.device's, not whatever torch happens to see."""
    assert trainer_settings("sft", student, str(tmp_path), CPU)["use_cpu"] is True
    assert trainer_settings("sft", student, str(tmp_path), H200)["use_cpu"] is False
    assert trainer_settings("rl", with_args(student, "rl", bf16=True), str(tmp_path), H200)["bf16"] is True
    # Fine-tuning while pruning and recovery take their settings the same way: args through, device added.
    args = {"max_steps": 1, "per_device_train_batch_size": 2, "warmup_steps": 3}
    on_cpu = compression_config(str(tmp_path), args, 64, 0, CPU)
    assert on_cpu.use_cpu is True and on_cpu.warmup_steps == 3 and on_cpu.max_steps == 1 and on_cpu.report_to == []
    assert compression_config(str(tmp_path), args, 64, 0, H200).use_cpu is False


def test_the_parameter_checks_hook_checks_the_student_against_the_device(student, monkeypatch):
    monkeypatch.setattr(hooks, "resolve_device", lambda runtime: V100)
    base_model = yaml.safe_load((CONF / "base" / "parameters_student.yml").read_text())["base_model"]
    catalog = DataCatalog(datasets={
        "params:student": MemoryDataset(with_args(student, "sft", bf16=True)),
        "params:runtime": MemoryDataset({"device": "cuda"}),
        "params:base_model": MemoryDataset(base_model),
    })
    with pytest.raises(ConfigError, match=r"student.sft.args.bf16: .* Tesla V100"):
        hooks.ParameterChecks().before_pipeline_run({}, student_pipeline(), catalog)
    catalog["params:student"] = MemoryDataset(student)
    hooks.ParameterChecks().before_pipeline_run({}, student_pipeline(), catalog)


def test_the_gpu_environment_passes_the_checks_on_a_bf16_gpu_and_names_bf16_on_an_older_one():
    """conf/gpu as Kedro merges it over conf/base: what `kedro run --env gpu` checks first."""
    from kedro.config import OmegaConfigLoader

    from supertiny.compression.settings import check_params as check_compression
    from supertiny.settings import CONFIG_LOADER_ARGS

    params = OmegaConfigLoader(str(CONF), **{**CONFIG_LOADER_ARGS, "default_run_env": "gpu"})["parameters"]
    assert params["runtime"]["device"] == "cuda" and params["teacher"]["max_requests"] is None
    assert params["student"]["tools_mode"] == yaml.safe_load((CONF / "base" / "parameters_student.yml").read_text())["student"]["tools_mode"]
    check_params(params["student"], H200)
    check_compression(params["compression"])
    with pytest.raises(ConfigError, match="student.sft.args.bf16"):
        check_params(params["student"], V100)


def test_torch_threads_sets_them_inside_the_block_and_puts_them_back_after_an_error():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="inside"), torch_threads(before + 1):
        assert torch.get_num_threads() == before + 1
        raise RuntimeError("inside")
    assert torch.get_num_threads() == before

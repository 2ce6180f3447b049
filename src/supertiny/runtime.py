"""Where a run computes: the device from ``runtime.device``, and the processes of a launch.

``runtime.device``: ``auto`` (a CUDA GPU when torch sees one, unless ``accelerate launch
--cpu`` asked for the CPU), ``cpu`` or ``cuda``. Training, recovery and evaluation take their
device from here; what a device can do (bfloat16, float16 mixed precision) is checked against
it before anything trains.

``accelerate launch`` (torchrun underneath) starts one process per GPU, each running the whole
``kedro run``: the trainers need every process, and the catalog must be written once. The
helpers here say which process this is, from the launcher's environment (``RANK``,
``WORLD_SIZE``), so that they work before any process group exists.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from supertiny.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")
# What each mixed precision needs, as accelerate and transformers enforce it.
PRECISION_NEEDS = {
    "bf16": "bfloat16 mixed precision needs the CPU or a CUDA GPU of compute capability 8.0 or later (A100, L4, H100, RTX 30xx and later)",
    "fp16": "float16 mixed precision needs a CUDA GPU (accelerate refuses it on the CPU)",
}


@dataclass(frozen=True)
class Device:
    """A resolved device and the mixed precisions that run on it (weights stay float32)."""

    type: str  # "cpu" or "cuda", as torch names it
    name: str  # what it is, for logs and the stage table
    bf16: bool
    fp16: bool

    @property
    def use_cpu(self) -> bool:
        return self.type == "cpu"


CPU = Device("cpu", "cpu", bf16=True, fp16=False)  # torch autocasts to bfloat16 on every CPU


def launched_on_cpu() -> bool:
    """``accelerate launch --cpu`` (or ``use_cpu`` in its config) asked for the CPU."""
    return os.environ.get("ACCELERATE_USE_CPU", "false").lower() in ("1", "true", "yes")


def resolve_device(runtime: dict[str, Any]) -> Device:
    """The device ``runtime.device`` names on this machine; ConfigError when it cannot be had."""
    import torch

    setting = (runtime or {}).get("device", "auto")
    if setting not in DEVICES:
        raise ConfigError(f"runtime.device must be one of {list(DEVICES)}; got {setting!r}")
    if setting == "cpu" or (setting == "auto" and (launched_on_cpu() or not torch.cuda.is_available())):
        return CPU
    if not torch.cuda.is_available():
        raise ConfigError(
            f"runtime.device is cuda, but torch {torch.__version__} sees no CUDA device: install the CUDA build of torch "
            "(README, 'On a GPU server'), or set runtime.device: cpu"
        )
    if launched_on_cpu():
        raise ConfigError("runtime.device is cuda, but `accelerate launch --cpu` asked for the CPU: drop --cpu, or set runtime.device: cpu")
    return Device(
        "cuda",
        torch.cuda.get_device_name(),
        # Native bfloat16 only: older GPUs emulate it, far slower than float16.
        bf16=torch.cuda.is_bf16_supported(including_emulation=False),
        fp16=True,
    )


def launched_processes() -> int:
    """How many processes the launcher started (1 for a plain ``kedro run``)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Process 0 of a launch, or the only process: the one that writes the catalog."""
    return int(os.environ.get("RANK", "0")) == 0


def join_processes(device: Device) -> None:
    """Join the launch's process group (gloo on the CPU, NCCL on CUDA), before the first wait;
    the trainers then reuse it."""
    if launched_processes() > 1:
        from accelerate import PartialState

        state = PartialState(cpu=device.use_cpu)
        if state.num_processes != launched_processes():
            raise RuntimeError(f"accelerate joined {state.num_processes} of the {launched_processes()} launched processes")


def leave_processes() -> None:
    """Leave the launch's process group when the run ends (NCCL warns about one left open)."""
    if launched_processes() > 1:
        import torch.distributed

        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def wait_for_everyone() -> None:
    """Every process of a launch waits here for the others (nothing in a single process)."""
    if launched_processes() > 1:
        import torch.distributed

        torch.distributed.barrier()


@contextmanager
def shared_workdir(prefix: str) -> Iterator[str]:
    """A scratch directory for a trainer's checkpoints that every process of a launch sees: the
    main process writes the best checkpoint there and every process loads it at the end. One
    machine: the directory is under this machine's temporary directory."""
    if launched_processes() == 1:
        with tempfile.TemporaryDirectory(prefix=prefix) as path:
            yield path
        return
    import torch.distributed

    shared = [tempfile.mkdtemp(prefix=prefix) if is_main_process() else None]
    torch.distributed.broadcast_object_list(shared, src=0)
    try:
        yield shared[0]
    finally:
        wait_for_everyone()  # nobody reads it any more
        if is_main_process():
            shutil.rmtree(shared[0], ignore_errors=True)


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's intra-op threads set to ``threads`` inside the block, and put back after it."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)

"""The embedded vLLM server's dtype: bfloat16 only where the CPU computes in it, from the settings
to the server's command line (no server is started here; tests/teacher/test_vllm.py starts one)."""

from __future__ import annotations

import pytest
from project_fixtures import project_teacher_settings

from supertiny.teacher import TeacherConfig
from supertiny.teacher.label import local_server_settings, open_teacher_client
from supertiny.teacher.server import LocalServer, vllm_cpu_dtype


@pytest.mark.parametrize(
    ("flags", "dtype"),
    [("fpu avx2 avx512f avx512_bf16 avx512_vnni", "bfloat16"), ("fpu avx2 amx_bf16 amx_tile", "bfloat16"), ("fpu sse2 avx avx2", "float32")],
)
def test_auto_is_bfloat16_only_on_a_cpu_with_bfloat16_instructions(tmp_path, flags, dtype):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    assert vllm_cpu_dtype(cpuinfo) == dtype


def test_without_cpu_flags_to_read_vllm_keeps_its_own_default(tmp_path):
    assert vllm_cpu_dtype(tmp_path / "missing") == "auto"


def test_the_setting_reaches_the_servers_command_line(tmp_path):
    project = project_teacher_settings(tmp_path / "cache")
    assert project["local_server"]["dtype"] == "auto"  # the default: chosen by the CPU
    for setting, served in [("auto", vllm_cpu_dtype()), ("float32", "float32"), ("bfloat16", "bfloat16")]:
        config = TeacherConfig.from_params({**project, "local_server": {**project["local_server"], "engine": "vllm", "dtype": setting}})
        server = LocalServer(tmp_path, **local_server_settings(config))
        command, _ = server._command()
        assert command[command.index("--dtype") + 1] == served


def test_answers_cached_under_one_dtype_are_not_replayed_under_another(tmp_path):
    """The precision changes the answers, so it is part of the embedded teacher's cache key."""
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    project = project_teacher_settings(tmp_path / "cache")

    def key(engine: str, dtype: str) -> str:
        config = TeacherConfig.from_params({**project, "local_server": {**project["local_server"], "engine": engine, "dtype": dtype}})
        client = open_teacher_client(config, tmp_path / "model")
        return client._key([{"role": "user", "content": "lights on"}], None, 64, None, 0)

    assert key("vllm", "float32") != key("vllm", "bfloat16")
    assert key("vllm", "auto") == key("vllm", vllm_cpu_dtype())  # the same server, the same answers
    assert key("transformers", "float32") == key("transformers", "bfloat16")  # vLLM's setting only

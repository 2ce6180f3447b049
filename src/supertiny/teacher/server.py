"""The embedded teacher: a local OpenAI-compatible server on 127.0.0.1, started and stopped by this run.

Two engines (``teacher.local_server.engine``):

- ``vllm`` (the default): vLLM's OpenAI server, from its own virtual environment
  (``teacher.local_server.python``; vLLM's pins clash with Neural Compressor's, so it cannot
  share the project's). It batches continuously, caches shared prompt prefixes, draws a
  request's k samples from one prefill (``n``) and holds answers to a JSON Schema (structured
  outputs). Here 2.1x more candidates/s came from giving its engine both cores
  (``threads: 0-1``; by default it keeps one for the API process) and compact JSON
  (no free whitespace in the grammar: fewer tokens per answer).
- ``transformers``: ``transformers serve``, the fallback that needs nothing more than the
  project's environment.

One server serves a whole run (``shared_local_server``): the teacher's train and validation
labelling, the judge and the evaluation's teacher row all send to it, and it stops when the
run ends (``stop_shared_servers``, called by a Kedro hook and at exit). vLLM takes about
90-130 s to start, once.

Quirks of ``transformers serve`` (5.23) decide how it is started:

- it samples only when the model's generation config says ``do_sample: true`` (a request's
  ``temperature`` alone leaves it greedy), and
- with ``--continuous-batching`` the first request fixes the sampling settings of every later one,
  and on CPU it sizes its KV cache at 60% of free RAM unless told otherwise (tens of seconds of
  allocation, and memory the rest of the machine needs).

So the server gets a view of the model directory (links to its files) whose generation config
samples at the run's temperature, one server serves one temperature, and the KV cache is
sized explicitly. Its pages are small (32 tokens, not 256), so the k samples of a request, which
share their whole prompt, share all but the last page of its prefill: prefill is what a CPU
pays for, and this made a decomposed run about 1.6x faster here.
"""

from __future__ import annotations

import atexit
import ctypes
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType

from supertiny.errors import SupertinyError
from supertiny.teacher.config import ENGINES

log = logging.getLogger(__name__)

LOG_TAIL_CHARS = 3000
STOP_GRACE_S = 10.0


class LocalServerError(SupertinyError):
    """The local server did not start; the message holds the end of its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def model_fingerprint(model_dir: str | Path) -> str:
    """SHA-256 of a model directory's files (names and contents): the model's identity in the
    teacher's cache, so retrained weights at the same path miss it."""
    digest = hashlib.sha256()
    root = Path(model_dir)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def _die_with_parent() -> None:
    """In the child before exec: Linux sends it SIGTERM if this process dies, even by SIGKILL."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except OSError:
        pass


# CPU flags that give bfloat16 matmuls in hardware; without them vLLM's CPU kernels convert to
# float32 and back around every op.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def vllm_cpu_dtype(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """``teacher.local_server.dtype: auto``: bfloat16 on a CPU with bfloat16 instructions, else
    float32. Measured with ``benchmarks/teacher_engines.py --engines vllm --dtypes bfloat16
    float32 --structured on --n 32 --test-n 0`` on a 2-core AVX2-only CPU (no AVX-512): float32
    labelled 1.44 candidates/s against bfloat16's 0.25 (5.7x), with the same share of requests
    given an exact candidate (0.44); bfloat16 is what vLLM's CPU backend was first checked with,
    on a CPU with AVX-512 BF16."""
    try:
        flags = set(next((line.split(":", 1)[1].split() for line in cpuinfo.read_text().splitlines() if line.startswith("flags")), []))
    except OSError:  # not Linux: leave the choice to vLLM's own default
        return "auto"
    return "bfloat16" if flags & set(BF16_CPU_FLAGS) else "float32"


def served_dtype(dtype: str) -> str:
    """The dtype vLLM is started with for ``teacher.local_server.dtype``."""
    return vllm_cpu_dtype() if dtype == "auto" else dtype


class LocalServer:
    """``with LocalServer(model_dir, temperature=0.7) as server:`` serves ``server.base_url``
    (OpenAI-compatible, ``.../v1``) with model name ``server.model_id``.

    Entering starts the process on a free port and waits for ``/health``; leaving (also on an
    error, Ctrl-C or SIGTERM) stops it by its process id: SIGTERM, then SIGKILL.
    """

    def __init__(
        self,
        model_dir: str | Path,
        *,
        temperature: float = 0.0,
        engine: str = "transformers",
        python: str | Path | None = None,
        threads: str = "auto",
        kv_cache_gib: float = 2.0,
        max_model_len: int = 2048,
        dtype: str = "auto",
        startup_timeout_s: float = 300.0,
        continuous_batching: bool = True,
        kv_cache_tokens: int = 16384,
        kv_page_tokens: int = 32,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        if engine not in ENGINES:
            raise LocalServerError(f"teacher.local_server.engine must be one of {', '.join(ENGINES)}; got {engine!r}")
        self.model_dir = Path(model_dir).resolve()
        self.engine = engine
        self.python = Path(python) if python else Path(sys.executable)
        self.threads = threads
        self.kv_cache_gib = kv_cache_gib
        self.max_model_len = max_model_len
        self.dtype = served_dtype(dtype)
        self.temperature = temperature
        self.startup_timeout_s = startup_timeout_s
        self.continuous_batching = continuous_batching
        self.kv_cache_tokens = kv_cache_tokens
        self.kv_page_tokens = kv_page_tokens
        self.extra_args = tuple(extra_args)
        self.process: subprocess.Popen | None = None
        self.port: int | None = None
        self._workdir: Path | None = None
        self._previous_sigterm = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def model_id(self) -> str:
        """The name requests must send: the server is pinned to the directory it was given."""
        return self.model_dir.name if self.engine == "vllm" else str(self._served_dir)

    @property
    def log_path(self) -> Path:
        return self._workdir / "server.log"

    @property
    def _served_dir(self) -> Path:
        return self._workdir / "model"

    def __enter__(self) -> LocalServer:
        if not (self.model_dir / "config.json").exists():
            raise LocalServerError(f"teacher.local_server.model_dir: {self.model_dir} is not a model directory (no config.json)")
        if self.engine == "vllm" and not self.python.exists():
            raise LocalServerError(
                f"teacher.local_server.python: {self.python} does not exist; `make setup` builds vLLM's environment "
                "there, or set teacher.local_server.engine: transformers"
            )
        self._workdir = Path(tempfile.mkdtemp(prefix="supertiny-teacher-"))
        try:
            if self.engine == "transformers":
                self._prepare_served_dir()
            self._start()
            self._wait_until_healthy()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop()
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)

    def _prepare_served_dir(self) -> None:
        """Links to the model's files, with a generation config that samples at our temperature."""
        served = self._served_dir
        served.mkdir()
        for path in self.model_dir.iterdir():
            if path.name != "generation_config.json":
                (served / path.name).symlink_to(path)
        generation_file = self.model_dir / "generation_config.json"
        generation = json.loads(generation_file.read_text()) if generation_file.exists() else {}
        generation["do_sample"] = self.temperature > 0
        if self.temperature > 0:
            generation["temperature"] = self.temperature
        else:
            generation.pop("temperature", None)
        (served / "generation_config.json").write_text(json.dumps(generation, indent=2))

    def _command(self) -> tuple[list[str], dict[str, str]]:
        """The server's command line and the environment variables it needs besides ours."""
        if self.engine == "vllm":
            # The `vllm` console script fails in a plain venv (it asks for the metadata of a
            # distribution named `vllm`); the module runs the same server.
            command = [
                str(self.python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(self.model_dir),
                "--host", "127.0.0.1", "--port", str(self.port), "--served-model-name", self.model_id,
                "--dtype", self.dtype, "--max-model-len", str(self.max_model_len), "--enable-prefix-caching",
                "--structured-outputs-config", json.dumps({"backend": "xgrammar", "disable_any_whitespace": True}),
                *self.extra_args,
            ]  # fmt: skip
            env = {"VLLM_CPU_KVCACHE_SPACE": f"{self.kv_cache_gib:g}", "VLLM_CPU_OMP_THREADS_BIND": self.threads,
                   "VLLM_NO_USAGE_STATS": "1", "VLLM_LOGGING_LEVEL": "WARNING"}
            return command, env
        command = [
            sys.executable, "-m", "transformers.cli.transformers", "serve", str(self._served_dir),
            "--host", "127.0.0.1", "--port", str(self.port), "--device", "cpu",
            *(self._batching_args() if self.continuous_batching else []),
            *self.extra_args,
        ]  # fmt: skip
        return command, {}

    def _start(self) -> None:
        self.port = free_port()
        command, engine_env = self._command()
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **engine_env}
        log.info("Starting the local teacher: %s serving %s on port %d", self.engine, self.model_dir, self.port)
        with open(self.log_path, "wb") as log_file:
            self.process = subprocess.Popen(
                command,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                # Its own session: a Ctrl-C in the terminal reaches this process, which stops the
                # server in order, instead of killing both at once.
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        if threading.current_thread() is threading.main_thread():
            # SIGTERM would end this process without running __exit__; make it unwind instead.
            self._previous_sigterm = signal.signal(signal.SIGTERM, _raise_system_exit)

    def _batching_args(self) -> list[str]:
        pages = -(-self.kv_cache_tokens // self.kv_page_tokens)
        # --cb-block-size is the page size in tokens (transformers 5.23 names it so on the CLI).
        return ["--continuous-batching", "--cb-block-size", str(self.kv_page_tokens), "--cb-num-blocks", str(pages)]

    def _wait_until_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LocalServerError(
                    f"{self.engine} server exited with code {self.process.returncode} while starting "
                    f"(model {self.model_dir}); its log ends with:\n{self._log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as response:
                    if response.status == 200:
                        log.info("Local teacher is up (pid %d)", self.process.pid)
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        raise LocalServerError(
            f"{self.engine} server did not answer /health within {self.startup_timeout_s:.0f} s "
            f"(teacher.local_server.startup_timeout_s); its log ends with:\n{self._log_tail()}"
        )

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
        except OSError:
            return "(no log)"

    def _stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.info("Stopped the local teacher (pid %d)", process.pid)


# One server per (engine, model, settings) for the whole process: every teacher node of a run
# shares it. Started on first use, stopped by stop_shared_servers (a Kedro hook, and at exit).
_SHARED: dict[tuple, LocalServer] = {}


def shared_local_server(model_dir: str | Path, **settings) -> LocalServer:
    """The running server for this model and settings, started now if there is none."""
    key = (str(Path(model_dir).resolve()), tuple(sorted((k, str(v)) for k, v in settings.items())))
    server = _SHARED.get(key)
    if server is not None and server.process is not None and server.process.poll() is None:
        return server
    if server is not None:  # it died: release its working folder and signal handler first
        server.__exit__(None, None, None)
    server = LocalServer(model_dir, **settings).__enter__()
    _SHARED[key] = server
    return server


def stop_shared_servers() -> None:
    """Stop every server shared_local_server started."""
    while _SHARED:
        _, server = _SHARED.popitem()
        server.__exit__(None, None, None)


atexit.register(stop_shared_servers)


def _raise_system_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)

"""The teacher's settings (``teacher:`` in conf/base/parameters_teacher.yml), checked once.

Every problem is a :class:`ConfigError` naming the ``teacher.<key>`` to fix, raised before a
server starts or a request is sent.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from supertiny.errors import ConfigError

log = logging.getLogger(__name__)

STRATEGIES = ("native", "prompted", "decomposed")
ENGINES = ("vllm", "transformers")
SERVER_DTYPES = ("auto", "bfloat16", "float32")  # teacher.local_server.dtype (vllm)
STRUCTURED_MODES = ("auto", "on", "off")
SELECTIONS = ("random", "least_confident")
# An environment variable's name; anything else in teacher.api_key_env is likely the key itself.
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class LocalServerConfig:
    """How to run the embedded server when no ``base_url`` is set."""

    model_dir: str | None  # None: the prepared base model
    engine: str
    python: str  # vllm: the interpreter of its own virtual environment
    threads: str  # vllm: the CPUs its engine binds ("0-1"; "auto" keeps one for the API process)
    kv_cache_gib: float
    max_model_len: int
    dtype: str  # vllm: "auto" is bfloat16 where the CPU has bfloat16 instructions, else float32
    startup_timeout_s: float
    continuous_batching: bool
    kv_cache_tokens: int
    kv_page_tokens: int
    extra_args: tuple[str, ...]


@dataclass(frozen=True)
class SelectionConfig:
    """How ``teacher.select: least_confident`` ranks the train requests (``teacher.selection``)."""

    model_dir: str | None  # an earlier round's model, answering as the evaluation does
    signal: str  # decoding.CONFIDENCE_SIGNALS
    pool: int | None  # requests it answers to rank them (a seeded random subset; None: all)
    labelled: str | None  # an earlier round's teacher_selection: its chosen requests are kept


@dataclass(frozen=True)
class TeacherConfig:
    """Validated ``teacher`` parameters; see parameters_teacher.yml for what each one means."""

    base_url: str | None
    model: str | None
    api_key_env: str | None
    strategy: str
    structured_outputs: str
    k_samples: int
    temperature: float
    max_tokens: int
    max_tokens_select: int
    concurrency: int
    timeout_s: float
    max_retries: int
    seed_examples: int
    few_shot: int
    max_requests: int | None
    val_max_requests: int | None
    select: str
    selection: SelectionConfig
    seed: int
    cache_dir: str
    prices: dict[str, dict[str, float]]
    max_cost_usd: float | None
    local_server: LocalServerConfig

    @property
    def embedded(self) -> bool:
        """True when the teacher is the local server this run starts itself."""
        return not self.base_url

    @property
    def on_this_machine(self) -> bool:
        """True for the embedded server or a loopback ``base_url``: no key needed, priced as machine time."""
        return self.embedded or is_loopback(self.base_url)

    def price(self, model: str | None) -> dict[str, float] | None:
        """USD per 1M prompt / completion tokens of ``model``; a model on this machine costs
        nothing unless priced; None: an endpoint elsewhere without a price."""
        if model in self.prices:
            return self.prices[model]
        if self.on_this_machine:
            return {"prompt": 0.0, "completion": 0.0}
        return None

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> TeacherConfig:
        """The config of a ``teacher`` parameters section. Every setting comes from it: the
        defaults are the project's ``conf/base/parameters_teacher.yml``, nowhere else; the
        parameters model checks the types and ranges first."""
        p = dict(params or {})
        from supertiny.parameters import check_section  # it imports this module's names

        check_section("teacher", p)
        setting = _reader(p, "")
        structured = setting("structured_outputs")
        structured = {True: "on", False: "off"}.get(structured, structured)  # YAML reads a bare on/off as a boolean
        base_url = setting("base_url") or None
        if base_url is not None:
            _check_url(base_url)
        model = setting("model") or None
        if base_url and not model:
            raise ConfigError(f"teacher.model is not set: name the model that {base_url} should answer with")
        api_key_env = setting("api_key_env") or None
        if api_key_env is not None and not _is_variable_name(api_key_env):
            # The value is not shown: it may be the key itself, pasted where its variable's name goes.
            raise ConfigError(
                "teacher.api_key_env must be the name of an environment variable (letters, digits, _), "
                "never the key itself: export the key in a variable and put that variable's name here"
            )
        local = _reader(setting("local_server") or {}, "local_server.")
        prices = {str(name): {"prompt": float(price.get("prompt", 0.0)), "completion": float(price.get("completion", 0.0))}
                  for name, price in (setting("prices") or {}).items()}
        max_cost_usd = None if setting("max_cost_usd") is None else float(setting("max_cost_usd"))
        max_requests = setting("max_requests")
        select = setting("select")
        selection = _selection(select, dict(setting("selection") or {}), max_requests)
        config = cls(
            base_url=base_url.rstrip("/") if base_url else None,
            model=model,
            api_key_env=api_key_env,
            strategy=setting("strategy"),
            structured_outputs=structured,
            k_samples=setting("k_samples"),
            temperature=float(setting("temperature")),
            max_tokens=setting("max_tokens"),
            max_tokens_select=setting("max_tokens_select"),
            concurrency=setting("concurrency"),
            timeout_s=float(setting("timeout_s")),
            max_retries=setting("max_retries"),
            seed_examples=setting("seed_examples"),
            few_shot=setting("few_shot"),
            max_requests=max_requests,
            val_max_requests=setting("val_max_requests"),
            select=select,
            selection=selection,
            seed=setting("seed"),
            cache_dir=str(setting("cache_dir")),
            prices=prices,
            max_cost_usd=max_cost_usd,
            local_server=LocalServerConfig(
                model_dir=local("model_dir") or None,
                engine=local("engine"),
                python=str(local("python")),
                threads=str(local("threads")),
                kv_cache_gib=float(local("kv_cache_gib")),
                max_model_len=local("max_model_len"),
                dtype=local("dtype"),
                startup_timeout_s=float(local("startup_timeout_s")),
                continuous_batching=local("continuous_batching"),
                kv_cache_tokens=local("kv_cache_tokens"),
                kv_page_tokens=local("kv_page_tokens"),
                extra_args=tuple(str(arg) for arg in local("extra_args") or ()),
            ),
        )
        if max_cost_usd is not None and config.price(model) is None:
            raise ConfigError(
                f"teacher.max_cost_usd is set, but teacher.prices has no price for model {model!r}: "
                f"add teacher.prices.{model}: {{prompt: ..., completion: ...}} (USD per 1M tokens)"
            )
        return config


def _reader(section: dict[str, Any], prefix: str) -> Callable[[str], Any]:
    """``read(key)``: the setting, or a ConfigError naming it when the section lacks it."""
    def read(key: str) -> Any:
        if key not in section:
            raise ConfigError(f"teacher.{prefix}{key} is not set (conf/base/parameters_teacher.yml sets every teacher setting)")
        return section[key]
    return read


def check_params(params: dict[str, Any]) -> None:
    """The teacher settings, checked before a run starts: every ConfigError of
    :meth:`TeacherConfig.from_params`, and the API key. A missing key stops the run here when
    the response cache is empty (every request will need it); with cached responses it may
    not be needed, so a warning, and the run stops at the first request that is not cached."""
    config = TeacherConfig.from_params(params)
    if config.on_this_machine or (config.api_key_env and os.environ.get(config.api_key_env)):
        return
    where = f"the environment variable {config.api_key_env} (teacher.api_key_env)" if config.api_key_env else "teacher.api_key_env"
    if not any(Path(config.cache_dir).glob("??/*.json")):
        raise ConfigError(f"{where} is not set: set it to the API key for {config.base_url} (the response cache is empty)")
    log.warning("%s is not set: only responses already in %s can be used; the teacher stops at the first other request",
                where, config.cache_dir)



def _selection(select: Any, selection: dict[str, Any], max_requests: int | None) -> SelectionConfig:
    setting = _reader(selection, "selection.")
    config = SelectionConfig(model_dir=setting("model_dir") or None, signal=setting("signal"), pool=setting("pool"),
                             labelled=setting("labelled") or None)
    if config.labelled is not None and not Path(config.labelled).is_file():
        raise ConfigError(f"teacher.selection.labelled: {config.labelled} does not exist (an earlier run's teacher_selection.jsonl)")
    if select == "least_confident":
        if max_requests is None:
            raise ConfigError("teacher.select: least_confident chooses teacher.max_requests requests: set a budget, "
                              "or select: random (null labels every request)")
        if config.model_dir is None:
            raise ConfigError("teacher.select: least_confident needs teacher.selection.model_dir: an earlier round's model "
                              "directory, e.g. a copy of data/06_models/quantized_model")
        if not (Path(config.model_dir) / "config.json").is_file():
            raise ConfigError(f"teacher.selection.model_dir: {config.model_dir} is not a saved model directory (no config.json)")
    return config


def _is_variable_name(value: Any) -> bool:
    """An environment variable's name, and not something long and mixed like a key."""
    if not (isinstance(value, str) and ENV_NAME.fullmatch(value)):
        return False
    return not (len(value) >= 20 and re.search(r"[a-z]", value) and re.search(r"[0-9]", value))


def _check_url(base_url: Any) -> None:
    parsed = urlparse(base_url) if isinstance(base_url, str) else None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(f"teacher.base_url must be an http(s) URL such as https://api.openai.com/v1 or http://127.0.0.1:8000/v1; got {base_url!r}")


def is_loopback(base_url: str) -> bool:
    """True for a server on this machine (which needs no real key)."""
    host = urlparse(base_url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

"""The shape of the parameters: one pydantic model per section of ``conf/*/parameters_*.yml``.

Each model lists every key its section may hold, with its type, its range where it has one
(``Share``, ``Positive``, ...) and, where a setting is one of a few words, those words. An
unknown key (a typo) is a ConfigError naming the dotted key and the nearest known one, and a
value out of its type or range one naming the setting, before any node runs
(``supertiny.hooks``). The values themselves, and so the defaults, stay in the YAML: these
models only check, they are not what the nodes read. What one setting cannot say alone (a
stage order, a range that depends on the method, the device, the model) is the sections' own
``check_params``, which check their section against its model first. TRL's ``args:`` pass
through as they are; ``training.settings`` checks them against TRL's own config fields.
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from supertiny.compression.settings import CRITERIA, RUNTIMES, SPARSITY_DECAYS
from supertiny.errors import ConfigError
from supertiny.formats import READERS
from supertiny.model_sources import SOURCE_KINDS
from supertiny.pipelines.filtering.nodes import SELECTIONS as FILTER_SELECTIONS
from supertiny.pipelines.filtering.verifiers import VERIFIERS
from supertiny.prompt import TOOLS_MODES
from supertiny.runtime import DEVICES
from supertiny.training.settings import STAGES
from supertiny.teacher.config import ENGINES, SELECTIONS, SERVER_DTYPES, STRATEGIES, STRUCTURED_MODES

# How sure an answer is (``decoding.Decoded.confidence``): the least, or the mean, probability of
# the tokens the model chose where the grammar left a choice.
CONFIDENCE_SIGNALS = ("min", "mean")
FILTER_VERIFIERS = tuple(VERIFIERS)
Number = float  # strict float takes an int too (1 for 1.0), never a bool or a string
Share = Annotated[Number, Field(ge=0, le=1)]  # a share of something: [0, 1]
PositiveShare = Annotated[Number, Field(gt=0, le=1)]  # (0, 1]
PositiveNumber = Annotated[Number, Field(gt=0)]
NonNegativeNumber = Annotated[Number, Field(ge=0)]
Positive = Annotated[int, Field(ge=1)]
NonNegative = Annotated[int, Field(ge=0)]


class Section(BaseModel):
    # strict: "3" is not 3 and true is not 1; every key present is known; a missing key is the YAML's business.
    model_config = ConfigDict(extra="forbid", strict=True)


class Runtime(Section):
    device: Literal[DEVICES] | None = None


class DataFields(Section):
    id: str | None = None
    messages: str | None = None
    query: str | None = None
    tools: str | None = None
    reference: str | None = None


class OpenAIExport(Section):
    no_call_reply: Annotated[str, Field(pattern=r"\S")] | None = None  # a text, not blank


class DataSplit(Section):
    group_by: str | None = None
    stratify_by: str | None = None
    val_fraction: Annotated[Number, Field(ge=0, lt=1)] | None = None
    test_fraction: Annotated[Number, Field(ge=0, lt=1)] | None = None
    seed: int | None = None


class Data(Section):
    format: Literal[tuple(READERS)] | None = None
    fields: DataFields | None = None
    default_tools: Literal["all"] | list[Any] | None = None  # "all": every function the source's rows offer
    source_split: str | None = None
    max_line_bytes: Positive | None = None  # null: no limit
    max_rejected_share: Share | None = None
    openai_export: OpenAIExport | None = None
    split: DataSplit | None = None


class LocalServer(Section):
    model_dir: str | None = None
    engine: Literal[ENGINES] | None = None
    python: str | None = None
    threads: str | None = None
    kv_cache_gib: PositiveNumber | None = None
    max_model_len: Annotated[int, Field(ge=64)] | None = None
    dtype: Literal[SERVER_DTYPES] | None = None
    startup_timeout_s: PositiveNumber | None = None
    continuous_batching: bool | None = None
    kv_cache_tokens: Positive | None = None
    kv_page_tokens: Annotated[int, Field(ge=4)] | None = None
    extra_args: list[str] | None = None


class TeacherSelection(Section):
    model_dir: str | None = None
    labelled: str | None = None
    signal: Literal[CONFIDENCE_SIGNALS] | None = None
    pool: NonNegative | None = None  # null: every request


class Price(Section):
    prompt: NonNegativeNumber | None = None
    completion: NonNegativeNumber | None = None


class Teacher(Section):
    base_url: str | None = None
    model: str | None = None
    api_key_env: str | None = None
    strategy: Literal[STRATEGIES] | None = None
    structured_outputs: Literal[STRUCTURED_MODES] | bool | None = None  # YAML reads a bare on/off as a boolean
    k_samples: Positive | None = None
    temperature: NonNegativeNumber | None = None
    max_tokens: Positive | None = None
    max_tokens_select: Positive | None = None
    concurrency: Positive | None = None
    timeout_s: PositiveNumber | None = None
    max_retries: NonNegative | None = None
    seed_examples: NonNegative | None = None
    few_shot: NonNegative | None = None
    max_requests: NonNegative | None = None  # null: every request
    val_max_requests: NonNegative | None = None
    select: Literal[SELECTIONS] | None = None
    selection: TeacherSelection | None = None
    seed: int | None = None
    cache_dir: str | None = None
    prices: dict[str, Price] | None = None
    max_cost_usd: PositiveNumber | None = None  # null: no cap
    local_server: LocalServer | None = None


class FilterReference(Section):
    min_similarity: PositiveShare | None = None  # null: exact match


class FilterConsistency(Section):
    min_share: PositiveShare | None = None


class Judge(Section):
    only_unlabelled: bool | None = None
    max_tokens: Positive | None = None
    model_dir: str | None = None
    teacher: Teacher | None = None  # the judge's own teacher settings, over the teacher section


class Filtering(Section):
    verifiers: list[Literal[FILTER_VERIFIERS]] | None = None
    reference: FilterReference | None = None
    consistency: FilterConsistency | None = None
    judge: Judge | None = None
    selection: Literal[FILTER_SELECTIONS] | None = None
    max_per_function: Positive | None = None  # null: no cap
    no_call_margin: Share | None = None  # null: no check
    max_no_call_share: Share | None = None
    fill_from_references: bool | None = None
    seed: int | None = None


class Lora(Section):
    enabled: bool | None = None
    r: Positive | None = None
    alpha: Positive | None = None
    dropout: Annotated[Number, Field(ge=0, lt=1)] | None = None
    target_modules: Annotated[list[str], Field(min_length=1)] | Literal["all-linear"] | None = None


class SFTStage(Section):
    early_stopping_patience: Positive | None = None  # null: no early stopping
    lora: Lora | None = None
    args: dict[str, Any] | None = None


class Reward(Section):
    similarity: NonNegativeNumber | None = None
    format: NonNegativeNumber | None = None


class RLStage(Section):
    reward: Reward | None = None
    lora: Lora | None = None
    args: dict[str, Any] | None = None


class KDStage(Section):
    teacher_model_dir: str | None = None
    lora: Lora | None = None
    args: dict[str, Any] | None = None


class Student(Section):
    stages: Annotated[list[Literal[STAGES]], Field(min_length=1)] | None = None  # in the pipeline's order (check_params)
    tools_mode: Literal[TOOLS_MODES] | None = None
    max_length: Annotated[int, Field(ge=8)] | None = None  # tokens
    seed: int | None = None
    sft: SFTStage | None = None
    rl: RLStage | None = None
    kd: KDStage | None = None


class ModelSource(Section):
    kind: Literal[SOURCE_KINDS] | None = None
    path: str | None = None
    package: str | None = None
    file: str | None = None
    hub_id: str | None = None


class BaseModelSettings(Section):
    source: ModelSource | None = None
    random_init: dict[str, Any] | None = None  # transformers config values of a random tiny model
    seed: int | None = None


class Depth(Section):
    drop_layers: NonNegative | None = None
    calibration_rows: Positive | None = None


class MLPPruning(Section):
    op_names: Annotated[list[str], Field(min_length=1)] | None = None  # at least one pattern of layer names
    target_sparsity: Annotated[Number, Field(gt=0, lt=1)] | None = None
    channel_multiple: Positive | None = None


class Schedule(Section):
    start_step: NonNegative | None = None
    end_step: NonNegative | None = None  # at least start_step, below the training's max_steps
    frequency: Positive | None = None
    decay: Literal[SPARSITY_DECAYS] | None = None


class PruningTraining(Section):
    args: dict[str, Any] | None = None  # TRL SFTConfig's settings


class Pruning(Section):
    depth: Depth | None = None
    mlp: MLPPruning | None = None
    criterion: Literal[CRITERIA] | None = None
    schedule: Schedule | None = None
    training: PruningTraining | None = None


class Recovery(Section):
    temperature: PositiveNumber | None = None
    kl_weight: Share | None = None
    args: dict[str, Any] | None = None  # TRL SFTConfig's settings


class Quantization(Section):
    method: str | None = None  # compression.settings names the methods that cannot run here, and why
    bits: int | None = None
    group_size: int | None = None
    quantize_embedding: bool | None = None
    keep_float: list[str] | None = None
    smooth_alpha: Share | None = None  # null: no smoothing
    calibration_rows: NonNegative | None = None
    runtime: Literal[RUNTIMES] | None = None


class Compression(Section):
    seed: int | None = None
    train_rows: Positive | None = None
    pruning: Pruning | None = None
    recovery: Recovery | None = None
    quantization: Quantization | None = None


class Latency(Section):
    prompts: Positive | None = None
    warmup: NonNegative | None = None


class FastPath(Section):
    jump_forward: bool | None = None
    prefix_cache: bool | None = None


class Report(Section):
    confusions: NonNegative | None = None


class Evaluation(Section):
    max_requests: Positive | None = None  # null: every request
    seed: int | None = None
    unlabelled_reference: Literal["teacher"] | None = None
    max_new_tokens: Positive | None = None
    constrained: bool | None = None
    max_calls: Positive | None = None  # null: no limit
    batch_size: Positive | None = None
    threads: Positive | None = None
    latency: Latency | None = None
    fast_path: FastPath | None = None
    answers: Literal["served", "batched"] | None = None
    no_call_threshold: Annotated[Number, Field(gt=0, lt=1)] | None = None  # a probability; null: greedy
    price_per_hour_usd: NonNegativeNumber | None = None
    report: Report | None = None


class Fallback(Section):
    threshold: Share | Literal["auto"] | None = None
    signal: Literal[("auto", *CONFIDENCE_SIGNALS)] | None = None


class Serving(Section):
    model: str | None = None
    host: str | None = None
    port: Annotated[int, Field(ge=0, le=65535)] | None = None  # 0: any free port
    fallback: Fallback | None = None


class Shadow(Section):
    max_requests: int | None = None
    served_url: str | None = None


SECTIONS: dict[str, type[Section]] = {
    "runtime": Runtime,
    "data": Data,
    "teacher": Teacher,
    "filtering": Filtering,
    "base_model": BaseModelSettings,
    "student": Student,
    "compression": Compression,
    "evaluation": Evaluation,
    "serving": Serving,
    "shadow": Shadow,
}


def check_shape(parameters: dict[str, Any]) -> None:
    """Raise ConfigError for the first unknown section or key, or a value of the wrong type, in
    ``parameters`` (the whole merged parameters, or any subset of its sections)."""
    for section, value in parameters.items():
        if section not in SECTIONS:
            raise ConfigError(f"{section} is not a parameters section{_hint(section, list(SECTIONS), '')}")
        check_section(section, value)


def check_section(section: str, value: Any) -> None:
    """Raise ConfigError naming the dotted setting when ``value`` does not fit ``section``'s model."""
    model = SECTIONS[section]
    try:
        model.model_validate(value if value is not None else {})
    except ValidationError as error:
        # A misspelt key first: it also explains the key "missing" beside it.
        errors = sorted(error.errors(), key=lambda e: e["type"] != "extra_forbidden")
        raise ConfigError(_message(section, model, errors[0])) from None


def _message(section: str, model: type[Section], error: dict[str, Any]) -> str:
    path, known = _setting_path(model, error["loc"])
    # A list's item by its position: filtering.verifiers[1]
    setting = section + "".join(f"[{part}]" if part.isdigit() else f".{part}" for part in path)
    if error["type"] == "extra_forbidden":
        article = "an" if section[0] in "aeiou" else "a"
        return f"{setting} is not {article} {section} setting{_hint(path[-1], known, '.'.join([section, *path[:-1]]) + '.')}"
    if error["type"] == "literal_error":
        return f"{setting} must be one of {error['ctx']['expected']}; got {error.get('input')!r}"
    if error["type"] == "too_short":
        count = error["ctx"]["min_length"]
        return f"{setting} must have at least {count} item{'s' if count != 1 else ''}; got {error.get('input')!r}"
    if error["type"] in BOUNDS:
        word, key = BOUNDS[error["type"]]
        bound = error["ctx"][key]
        return f"{setting} must be {word} {bound:g}; got {error.get('input')!r}"
    message = error["msg"][0].lower() + error["msg"][1:]
    return f"{setting}: {message}; got {error.get('input')!r}"


# pydantic's range errors, as a setting's message says them.
BOUNDS = {"greater_than_equal": ("at least", "ge"), "greater_than": ("greater than", "gt"),
          "less_than_equal": ("at most", "le"), "less_than": ("less than", "lt")}


def _setting_path(model: type[BaseModel], location: tuple) -> tuple[list[str], list[str]]:
    """The settings along a pydantic error location (a union's member tags such as ``int`` are
    not settings, so the walk stops at a plain value), and the keys known where it stopped."""
    path: list[str] = []
    current: Any = model
    known: list[str] = []
    for part in location:
        if isinstance(current, type) and issubclass(current, BaseModel):
            known = list(current.model_fields)
            path.append(str(part))
            if part not in current.model_fields:
                break  # an unknown key
            current = _container(current.model_fields[part].annotation)
        elif typing.get_origin(current) is dict or (typing.get_origin(current) is list and isinstance(part, int)):
            path.append(str(part))
            current = _container(typing.get_args(current)[-1])
        else:
            break  # a plain value, or a union's member tag
    return path, known


def _container(annotation: Any) -> Any:
    """The model, dict or list type inside an ``X | None`` annotation (or an ``Annotated`` one
    with its range); None for a plain value."""
    annotation = _plain(annotation)
    for option in typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) else (annotation,):
        option = _plain(option)
        if (isinstance(option, type) and issubclass(option, BaseModel)) or typing.get_origin(option) in (dict, list):
            return option
    return None


def _plain(annotation: Any) -> Any:
    """``X`` of ``Annotated[X, ...]``, anything else as it is."""
    return typing.get_args(annotation)[0] if typing.get_origin(annotation) is Annotated else annotation


def _hint(key: str, known: list[str], prefix: str) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return f" (did you mean {prefix}{close[0]}?)" if close else (f"; known: {', '.join(sorted(known))}" if known else "")

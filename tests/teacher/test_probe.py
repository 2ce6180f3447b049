"""Bad input is reported before any paid request: the message names the setting to fix."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from fake_openai import FakeOpenAI

from supertiny.errors import ConfigError
from supertiny.teacher import TeacherConfig, label_requests
from supertiny.teacher import config as teacher_config

CONF = Path(__file__).resolve().parents[2] / "conf"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_missing_key_for_a_remote_endpoint_is_caught_before_any_request(requests, make_config, monkeypatch):
    monkeypatch.delenv("SUPERTINY_TEST_KEY", raising=False)
    config = make_config(base_url="https://api.openai.example/v1", api_key_env="SUPERTINY_TEST_KEY")
    with pytest.raises(ConfigError, match=r"SUPERTINY_TEST_KEY \(teacher.api_key_env\) is not set"):
        label_requests(requests, [], config)


def test_a_local_server_needs_no_key(requests, make_config, monkeypatch):
    monkeypatch.delenv("SUPERTINY_TEST_KEY", raising=False)
    with FakeOpenAI() as server:
        candidates, _ = label_requests(requests[:1], [], make_config(server, api_key_env="SUPERTINY_TEST_KEY"))
    assert candidates[0]["error_kind"] is None


def test_a_wrong_key_names_the_environment_variable(requests, make_config, monkeypatch):
    monkeypatch.setenv("SUPERTINY_TEST_KEY", "wrong")
    with FakeOpenAI(api_key="right") as server:
        with pytest.raises(ConfigError, match=r"refused the API key.*teacher.api_key_env \(SUPERTINY_TEST_KEY\)"):
            label_requests(requests, [], make_config(server, api_key_env="SUPERTINY_TEST_KEY"))
        assert server.bodies == []  # stopped at the model listing, before any completion


def test_an_unreachable_base_url_names_the_setting(requests, make_config):
    config = make_config(base_url=f"http://127.0.0.1:{closed_port()}/v1", max_retries=0)
    with pytest.raises(ConfigError, match=r"teacher.base_url http://127.0.0.1:\d+/v1 is unreachable"):
        label_requests(requests, [], config)


def test_a_model_the_server_does_not_list_names_the_setting(requests, make_config):
    with FakeOpenAI(models=["gpt-x", "gpt-y"]) as server:
        with pytest.raises(ConfigError, match=r"teacher.model 'teacher' is not served by .* \(it serves: gpt-x, gpt-y\)"):
            label_requests(requests, [], make_config(server))
        assert server.bodies == []


def test_a_model_the_server_refuses_names_the_setting(requests, make_config):
    # No model listing: the chat probe's 404 decides, and nothing else is sent.
    with FakeOpenAI(list_models=False) as server:
        with pytest.raises(ConfigError, match=r"teacher.model 'nope' is not served by .*fix teacher.model"):
            label_requests(requests, [], make_config(server, model="nope"))
        assert server.chat_requests == [] and server.probes == 1


def test_a_rejected_tool_schema_names_the_request_and_the_way_out(requests, make_config):
    with FakeOpenAI(reject_tools=True) as server:
        with pytest.raises(ConfigError, match=r"rejected the tool schema of request r1: .*try teacher.strategy: prompted"):
            label_requests(requests, [], make_config(server, strategy="native"))
        assert server.chat_requests == []


def test_a_server_failing_the_probe_stops_the_run(requests, make_config):
    with FakeOpenAI(status=500, spare_probe=False) as server:
        with pytest.raises(ConfigError, match=r"failed a probe request \(server_error"):
            label_requests(requests, [], make_config(server, max_retries=0))
        assert server.chat_requests == []


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"strategy": "magic"}, r"teacher.strategy must be one of 'native', 'prompted' or 'decomposed'; got 'magic'"),
        ({"base_url": "https://api.openai.com/v1", "model": None}, r"teacher.model is not set"),
        ({"k_samples": 0}, r"teacher.k_samples must be at least 1; got 0"),
        ({"timeout_s": 0}, r"teacher.timeout_s must be greater than 0; got 0"),
        ({"prices": {"gpt": {"prompt": -1}}}, r"teacher.prices.gpt.prompt must be at least 0; got -1"),
        ({"local_server": {"kv_page_tokens": 2}}, r"teacher.local_server.kv_page_tokens must be at least 4; got 2"),
    ],
)
def test_bad_settings_name_the_key(params, message, teacher_settings):
    with pytest.raises(ConfigError, match=message):
        TeacherConfig.from_params({**teacher_settings, **params})


def test_a_fully_cached_run_needs_no_api_key(requests, make_config, make_request, monkeypatch):
    monkeypatch.setattr(teacher_config, "is_loopback", lambda base_url: False)  # as an endpoint elsewhere
    with FakeOpenAI(api_key="sk-right") as server:
        config = make_config(server, api_key_env="SUPERTINY_TEST_KEY")
        monkeypatch.setenv("SUPERTINY_TEST_KEY", "sk-right")
        first, _ = label_requests(requests, [], config)
        monkeypatch.delenv("SUPERTINY_TEST_KEY")
        sent = len(server.bodies)
        again, usage = label_requests(requests, [], config)
        assert len(server.bodies) == sent
    assert usage["cache_hits"] == len(requests) and [c["calls"] for c in again] == [c["calls"] for c in first]
    # One request that is not cached needs the key, and says so before sending anything.
    with pytest.raises(ConfigError, match=r"SUPERTINY_TEST_KEY \(teacher.api_key_env\) is not set"):
        label_requests([make_request(9, "switch the bedroom lights off")], [], config)


def test_a_native_endpoint_that_ignores_tools_is_caught_by_the_probe(requests, make_config):
    # transformers serve with a chat template without tools: every answer is text.
    with FakeOpenAI(reply=lambda body: {"role": "assistant", "content": "OK"}) as server:
        with pytest.raises(ConfigError, match=r"answered the probe, which asks for a call of set_lights .* ignores `tools`.*teacher.strategy: prompted"):
            label_requests(requests, [], make_config(server, strategy="native"))
        assert server.chat_requests == [] and server.probes == 1
        assert server.bodies[0]["tools"] == requests[0]["tools"]


def test_a_first_answer_without_a_call_is_said_for_every_strategy(requests, make_config, caplog):
    # An endpoint that answers everything with [] ("no call"): the first request that needs a call says so.
    with FakeOpenAI(reply=lambda body: {"role": "assistant", "content": "[]"}) as server, caplog.at_level("WARNING", logger="supertiny"):
        label_requests(requests[4:] + requests[:2], [], make_config(server, strategy="decomposed", k_samples=2))
        # r1 (the first that needs a call) went before the others.
        assert "kitchen" in server.chat_requests[0]["messages"][-1]["content"]
    warning = next(r.getMessage() for r in caplog.records if "which needs a call" in r.getMessage())
    assert "request r1, which needs a call (set_lights), with no call in 2 of 2 samples" in warning
    assert "filtering.max_no_call_share" in warning


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("This model's maximum context length is 2048 tokens. However, you requested 2100 tokens.",
         r"refused the probe request as longer than the model's context .*lower teacher.max_tokens"),
        ("Unrecognized request argument supplied: response_format", r"does not take a parameter .*teacher.structured_outputs: off"),
        ("temperature: extra inputs are not permitted", r"does not take a parameter .*check teacher.temperature"),
        ("The model `teacher` does not exist", r"teacher.model 'teacher' is not served"),
        ("something else entirely", r"rejected the probe request \(Error code: 400 - something else entirely\)"),
    ],
)
def test_a_400_during_the_probe_is_reported_by_what_the_endpoint_said(requests, make_config, message, expected):
    with FakeOpenAI(status=400, status_message=message, spare_probe=False) as server:
        with pytest.raises(ConfigError, match=expected):
            label_requests(requests, [], make_config(server, max_retries=0))
        assert server.chat_requests == []


def test_a_400_on_the_first_request_stops_the_run_with_what_the_endpoint_said(requests, make_config):
    # The probe is short; the first real prompt is too long for the model.
    with FakeOpenAI(status=400, status_message="Please reduce the length of the messages: maximum context length is 512") as server:
        with pytest.raises(ConfigError, match=r"refused request r1 as longer than the model's context"):
            label_requests(requests, [], make_config(server, max_retries=0, concurrency=1))
        assert len(server.chat_requests) == 1


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"stratgy": "native"}, r"teacher.stratgy is not a teacher setting \(did you mean teacher.strategy\?\)"),
        ({"local_server": {"engin": "vllm"}}, r"teacher.local_server.engin is not a teacher setting"),
        ({"base_url": "api.openai.com/v1", "model": "gpt-4o-mini"}, r"teacher.base_url must be an http\(s\) URL"),
        ({"base_url": "ftp://example.com", "model": "m"}, r"teacher.base_url must be an http\(s\) URL"),
        ({"max_cost_usd": -1}, r"teacher.max_cost_usd must be greater than 0; got -1"),
    ],
)
def test_more_bad_settings_name_the_key(params, message, teacher_settings):
    with pytest.raises(ConfigError, match=message):
        TeacherConfig.from_params({**teacher_settings, **params})


def test_a_setting_left_out_is_named_not_defaulted(teacher_settings):
    """The YAML is where the defaults are: the code has none that could disagree with it."""
    settings = {key: value for key, value in teacher_settings.items() if key != "k_samples"}
    with pytest.raises(ConfigError, match=r"teacher.k_samples is not set"):
        TeacherConfig.from_params(settings)
    config = TeacherConfig.from_params(teacher_settings)
    assert (config.k_samples, config.max_tokens, config.concurrency) == (
        teacher_settings["k_samples"], teacher_settings["max_tokens"], teacher_settings["concurrency"])


def test_teacher_settings_are_checked_before_any_node_runs(tmp_path, monkeypatch):
    from kedro.config import OmegaConfigLoader
    from kedro.io import DataCatalog, MemoryDataset

    from supertiny import hooks
    from supertiny.settings import CONFIG_LOADER_ARGS
    from supertiny.pipelines.teacher.pipeline import create_pipeline

    monkeypatch.delenv("SUPERTINY_TEST_KEY", raising=False)
    # The project's own settings for the sections the teacher pipeline reads.
    project = OmegaConfigLoader(str(CONF), **CONFIG_LOADER_ARGS)["parameters"]
    remote = {**project["teacher"], "base_url": "https://api.example.com/v1", "model": "gpt-4o-mini",
              "api_key_env": "SUPERTINY_TEST_KEY", "cache_dir": str(tmp_path / "cache")}
    catalog = DataCatalog(datasets={f"params:{section}": MemoryDataset(project[section]) for section in ("student", "evaluation", "runtime")})
    catalog["params:teacher"] = MemoryDataset({"strategy": "magic"})
    with pytest.raises(ConfigError, match=r"teacher.strategy must be one of"):
        hooks.ParameterChecks().before_pipeline_run({}, create_pipeline(), catalog)
    # A missing key with nothing cached: every request will need it.
    catalog["params:teacher"] = MemoryDataset(remote)
    with pytest.raises(ConfigError, match=r"SUPERTINY_TEST_KEY \(teacher.api_key_env\) is not set.*the response cache is empty"):
        hooks.ParameterChecks().before_pipeline_run({}, create_pipeline(), catalog)
    # With responses cached, the run may not need it: it goes on (and stops at the first miss).
    (tmp_path / "cache" / "ab").mkdir(parents=True)
    (tmp_path / "cache" / "ab" / "ab12.json").write_text("{}")
    hooks.ParameterChecks().before_pipeline_run({}, create_pipeline(), catalog)

"""Bad input is reported before any paid request: the message names the setting to fix."""

from __future__ import annotations

import socket

import pytest
from fake_openai import FakeOpenAI

from supertiny.errors import ConfigError
from supertiny.teacher import TeacherConfig, label_requests


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
        ({"strategy": "magic"}, r"teacher.strategy must be one of native, prompted, decomposed"),
        ({"base_url": "https://api.openai.com/v1", "model": None}, r"teacher.model is not set"),
        ({"k_samples": 0}, r"teacher.k_samples must be an integer >= 1"),
        ({"timeout_s": 0}, r"teacher.timeout_s must be a positive number"),
        ({"prices": {"gpt": {"prompt": -1}}}, r"teacher.prices.gpt.prompt must be a number >= 0"),
        ({"local_server": {"kv_page_tokens": 2}}, r"teacher.local_server.kv_page_tokens must be an integer >= 4"),
    ],
)
def test_bad_settings_name_the_key(params, message):
    with pytest.raises(ConfigError, match=message):
        TeacherConfig.from_params(params)

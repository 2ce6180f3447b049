"""The API key is never written: not to the logs, the cache, the catalog's outputs or run_record,
even when the endpoint quotes it back in its errors."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest
from fake_openai import FakeOpenAI
from kedro_datasets.json import JSONDataset

from supertiny.datasets import JSONLinesDataset
from supertiny.errors import ConfigError
from supertiny.pipelines.evaluation.nodes import record_run
from supertiny.teacher import TeacherConfig, label_requests
from supertiny.teacher import config as teacher_config

CANARY = "sk-supertiny-canary-7f3a9c2e51d04b8e"


def _files_with(root, secret: str) -> list[str]:
    return [str(path) for path in root.rglob("*") if path.is_file() and secret.encode() in path.read_bytes()]


def test_a_labelling_writes_the_key_nowhere(requests, make_config, tmp_path, monkeypatch, caplog, capsys, teacher_settings):
    monkeypatch.setattr(teacher_config, "is_loopback", lambda base_url: False)  # a key is needed, as elsewhere
    monkeypatch.setenv("SUPERTINY_TEST_KEY", CANARY)
    out = tmp_path / "out"
    caplog.set_level(logging.DEBUG)  # every logger, the SDK's and httpx's included
    with FakeOpenAI(api_key=CANARY, quote_key=True) as server:
        params = {**teacher_settings, "base_url": server.base_url, "model": "teacher", "api_key_env": "SUPERTINY_TEST_KEY", "strategy": "prompted",
                  "k_samples": 2, "max_retries": 1, "few_shot": 0, "cache_dir": str(tmp_path / "cache"),
                  "prices": {"teacher": {"prompt": 1.0, "completion": 1.0}}}
        candidates, usage = label_requests(requests, [], TeacherConfig.from_params(params))
        # A server that fails every request, quoting the key it was sent in each error.
        server.status = 500
        failed, failed_usage = label_requests(requests[:2], [], TeacherConfig.from_params({**params, "temperature": 0.1}))
    assert all(c["error_kind"] is None for c in candidates)
    assert all(c["error_kind"] == "server_error" and "[API key]" in c["error"] for c in failed)
    JSONLinesDataset(filepath=str(out / "teacher_candidates.jsonl")).save(candidates + failed)
    JSONDataset(filepath=str(out / "teacher_usage.json")).save([usage, failed_usage])
    JSONDataset(filepath=str(out / "run_record.json"), save_args={"default": str}).save(record_run({"teacher": params}, pd.DataFrame()))

    assert (tmp_path / "cache").is_dir() and len(list((tmp_path / "cache").rglob("*.json"))) == 2 * len(requests)
    assert _files_with(tmp_path, CANARY) == []
    logged = "\n".join(record.getMessage() for record in caplog.records) + json.dumps([str(r.args) for r in caplog.records])
    captured = capsys.readouterr()
    assert CANARY not in logged and CANARY not in captured.out + captured.err


def test_a_refused_key_is_not_quoted_in_the_error(requests, make_config, monkeypatch):
    monkeypatch.setenv("SUPERTINY_TEST_KEY", CANARY)
    with FakeOpenAI(api_key="sk-the-right-one", quote_key=True, list_models=False) as server:
        with pytest.raises(ConfigError, match=r"refused the API key") as refused:
            label_requests(requests, [], make_config(server, api_key_env="SUPERTINY_TEST_KEY"))
    assert CANARY not in str(refused.value) and "[API key]" in str(refused.value)


def test_a_key_pasted_into_api_key_env_is_refused_without_being_shown(teacher_settings):
    with pytest.raises(ConfigError, match=r"teacher.api_key_env must be the name of an environment variable") as refused:
        TeacherConfig.from_params({**teacher_settings, "api_key_env": CANARY})
    assert CANARY not in str(refused.value)


@pytest.mark.parametrize("value", ["AIzaSyD4x9Qk2mP7vLw3Rt8YbN1cF6hJ0sUe5Go", "sk-abc"])
def test_key_like_values_are_refused_and_variable_names_accepted(value, teacher_settings):
    with pytest.raises(ConfigError, match="api_key_env must be the name"):
        TeacherConfig.from_params({**teacher_settings, "api_key_env": value})
    assert TeacherConfig.from_params({**teacher_settings, "api_key_env": "AZURE_OPENAI_API_KEY_PRODUCTION_2"}).api_key_env == "AZURE_OPENAI_API_KEY_PRODUCTION_2"

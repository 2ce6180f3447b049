"""Each data.format reads its committed sample (tests/pipelines/data/samples/<format>.jsonl, written
for these tests) into request records, from JSON Lines, Parquet and a Hugging Face dataset alike;
rows a reader cannot read are rejected with the format, the field and the reason; and verified
examples are written back as OpenAI chat fine-tuning rows that read again as the same requests."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from kedro.io import DataCatalog

from supertiny.errors import ConfigError
from supertiny.formats import RowError, export_openai_chat, from_openai_chat, python_type_schema, to_openai_chat
from supertiny.pipelines.data.nodes import source_settings, validate_requests

SAMPLES = Path(__file__).parent / "samples"
FIELDS = source_settings({})["fields"]


def _read(format_: str, entry: dict | None = None) -> tuple[list[dict], list[dict]]:
    entry = entry or {"type": "supertiny.datasets.JSONLinesDataset", "filepath": str(SAMPLES / f"{format_}.jsonl"),
                      "on_bad_line": "keep", "lazy": True}
    raw = DataCatalog.from_config({"raw_requests": entry}).load("raw_requests")
    requests, rejected, _ = validate_requests(raw, [], {"format": format_})
    return requests, rejected


def _rejections(rejected: list[dict]) -> list[tuple]:
    return [(row["row"], row["format"], row["field"]) for row in rejected]


def _sample_rows(format_: str) -> list[dict]:
    return [json.loads(line) for line in (SAMPLES / f"{format_}.jsonl").read_text().splitlines()]


def test_openai_chat_last_assistant_turn_is_the_reference():
    requests, rejected = _read("openai_chat")
    assert len(requests) == 5
    single, parallel, reply, multi_turn, unlabelled = requests
    assert single["messages"] == [{"role": "system", "content": "You are a helpful assistant."},
                                  {"role": "user", "content": "What's the weather in Paris?"}]
    assert single["reference"] == [{"name": "get_weather", "arguments": {"city": "Paris"}}]
    assert [tool["function"]["name"] for tool in single["tools"]] == ["get_weather", "set_timer"]
    assert [call["name"] for call in parallel["reference"]] == ["get_weather", "set_timer"]
    assert reply["reference"] == [], "a plain text reply is the answer 'no call'"
    # Earlier turns stay, an earlier assistant turn's calls as their text form.
    assert [m["role"] for m in multi_turn["messages"]] == ["user", "assistant", "tool", "assistant", "user"]
    assert json.loads(multi_turn["messages"][1]["content"]) == [{"name": "get_weather", "arguments": {"city": "Rome"}}]
    assert multi_turn["reference"] == [{"name": "set_timer", "arguments": {"minutes": 5}}]
    assert unlabelled["reference"] is None, "no assistant turn: an unlabelled request"
    assert _rejections(rejected) == [(6, "openai_chat", "messages"), (7, "openai_chat", "reference")]
    assert "tool_calls" in rejected[0]["reason"] and "not valid JSON" in rejected[0]["reason"]
    assert "'kelvin' is not one of" in rejected[1]["reason"]


def test_openai_chat_reads_content_parts_and_the_developer_role():
    row = {"messages": [{"role": "developer", "content": "Be brief."},
                        {"role": "user", "content": [{"type": "text", "text": "Weather in "}, {"type": "text", "text": "Oslo"}]},
                        {"role": "assistant", "content": None, "function_call": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]}
    parts = from_openai_chat(row, FIELDS)
    assert parts["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Oslo"}]
    assert parts["reference"] == [{"name": "get_weather", "arguments": {"city": "Oslo"}}]
    with pytest.raises(RowError, match="neither tool_calls nor content"):
        from_openai_chat({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": None}]}, FIELDS)


def test_xlam_tools_become_json_schema():
    requests, rejected = _read("xlam")
    assert [request["id"] for request in requests] == ["1", "2", "3", "4", "5"]
    weather = requests[0]["tools"][0]["function"]
    assert weather["parameters"] == {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "City name."},
                       "unit": {"type": "string", "description": "celsius or fahrenheit"}},
        "required": ["city"],  # "str, optional" is not required
    }
    average = requests[1]["tools"][1]["function"]["parameters"]
    assert average["properties"]["numbers"]["type"] == "array" and average["properties"]["numbers"]["items"] == {"type": "integer"}
    assert average["required"] == ["numbers"], "an argument with a default is not required"
    search = requests[2]["tools"][0]["function"]["parameters"]
    assert search["required"] == [] and search["properties"]["filters"]["type"] == "object"
    assert requests[1]["reference"][0] == {"name": "average", "arguments": {"numbers": [3, 5, 10]}}
    assert requests[3]["reference"] == [] and requests[4]["reference"] is None
    assert _rejections(rejected) == [(6, "xlam", "tools"), (7, "xlam", "answers"), (8, "xlam", "reference")]
    assert "tool 'run', argument 'callback': unknown type 'Callable'" in rejected[0]["reason"]
    assert "missing required argument 'numbers'" in rejected[2]["reason"]


@pytest.mark.parametrize(
    ("annotation", "schema"),
    [
        ("str", {"type": "string"}),
        ("float", {"type": "number"}),
        ("List[str]", {"type": "array", "items": {"type": "string"}}),
        ("list[List[int]]", {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}}),
        ("Tuple[int, float]", {"type": "array", "items": {"anyOf": [{"type": "integer"}, {"type": "number"}]}}),
        ("Dict[str, int]", {"type": "object", "additionalProperties": {"type": "integer"}}),
        ("Union[int, str]", {"anyOf": [{"type": "integer"}, {"type": "string"}]}),
        ("Optional[bool]", {"type": "boolean"}),
        ("Any", {}),
    ],
)
def test_python_type_names_map_to_json_schema(annotation, schema):
    assert python_type_schema(annotation) == schema


@pytest.mark.parametrize("annotation", ["Callable", "List[int", "Dict[str]", "np.ndarray"])
def test_unknown_python_types_are_refused(annotation):
    with pytest.raises(ValueError, match="type"):
        python_type_schema(annotation)


def test_sharegpt_hermes_tools_and_calls_come_from_their_tags():
    requests, rejected = _read("sharegpt_hermes")
    assert [request["id"] for request in requests] == ["h1", "h2", "h3", "h4", "h5", "h6"]
    first = requests[0]
    assert first["messages"] == [{"role": "user", "content": "What's the weather in Paris?"}], "the tools' system turn is not a message"
    assert [tool["function"]["name"] for tool in first["tools"]] == ["get_weather", "set_timer"]
    assert first["reference"] == [{"name": "get_weather", "arguments": {"city": "Paris"}}]
    assert [call["name"] for call in requests[1]["reference"]] == ["get_weather", "set_timer"]
    python_repr = requests[2]
    assert [tool["function"]["name"] for tool in python_repr["tools"]] == ["set_timer", "get_weather"]
    assert python_repr["reference"] == [{"name": "set_timer", "arguments": {"minutes": 4}}]
    assert requests[3]["reference"] == []
    multi_turn = requests[4]
    assert [m["role"] for m in multi_turn["messages"]] == ["user", "assistant", "tool", "assistant", "user"]
    assert [tool["function"]["name"] for tool in multi_turn["tools"]] == ["get_weather", "set_timer"], "one JSON tool a line"
    assert multi_turn["reference"] == [{"name": "set_timer", "arguments": {"minutes": 5}}]
    assert requests[5]["reference"] is None
    assert first["meta"] == {"category": "weather"}, "other columns are kept for the split"
    assert _rejections(rejected) == [(7, "sharegpt_hermes", "conversations"), (8, "sharegpt_hermes", "conversations")]
    assert "<tool_call> tag is not closed" in rejected[0]["reason"] and "'bot'" in rejected[1]["reason"]


def _columnar(format_: str) -> list[dict]:
    """The sample as a columnar dataset holds it: nested lists of records stay nested, tool
    schemas (objects of varying shape, which Arrow would merge) are JSON text."""
    rows = _sample_rows(format_)
    if format_ == "openai_chat":
        return [{**row, "tools": json.dumps(row["tools"])} for row in rows]
    return rows


@pytest.mark.parametrize("format_", ["openai_chat", "xlam", "sharegpt_hermes"])
def test_parquet_and_huggingface_sources_read_like_json_lines(tmp_path, format_):
    from_jsonl, rejected_jsonl = _read(format_)
    rows = _columnar(format_)
    parquet = tmp_path / "requests.parquet"
    pd.DataFrame(rows).to_parquet(parquet)
    parts = tmp_path / "parts"  # a folder of Parquet files, as a dataset hub exports them
    parts.mkdir()
    pd.DataFrame(rows[:4]).to_parquet(parts / "train-00000-of-00002.parquet")
    pd.DataFrame(rows[4:]).to_parquet(parts / "train-00001-of-00002.parquet")
    datasets = pytest.importorskip("datasets")
    hf_dir = tmp_path / "hf"
    datasets.Dataset.from_list(rows).save_to_disk(str(hf_dir))

    for entry in ({"type": "pandas.ParquetDataset", "filepath": str(parquet)},
                  {"type": "pandas.ParquetDataset", "filepath": str(parts)},
                  {"type": "huggingface.ArrowDataset", "path": str(hf_dir)}):
        requests, rejected = _read(format_, entry)
        assert requests == from_jsonl, entry
        assert _rejections(rejected) == _rejections(rejected_jsonl), entry


def _examples(requests: list[dict]) -> list[dict]:
    """Verified examples as filtering writes them: the request and its accepted calls."""
    return [{**request, "calls": request["reference"], "sample": 0} for request in requests if request["reference"] is not None]


def test_openai_export_has_tool_calls_and_a_reply_for_no_call():
    requests, _ = _read("openai_chat")
    rows = export_openai_chat(_examples(requests), {"no_call_reply": "Nothing to do."})
    single, parallel, reply, multi_turn = rows
    answer = single["messages"][-1]
    assert answer == {"role": "assistant", "tool_calls": [
        {"id": "call_0", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]}
    assert single["tools"] == requests[0]["tools"]
    assert [call["id"] for call in parallel["messages"][-1]["tool_calls"]] == ["call_0", "call_1"]
    assert reply["messages"][-1] == {"role": "assistant", "content": "Nothing to do."}
    # The earlier call is tool_calls again and the tool turn answers its id.
    earlier, tool = multi_turn["messages"][1], multi_turn["messages"][2]
    assert earlier["tool_calls"][0]["function"]["name"] == "get_weather"
    assert tool == {"role": "tool", "tool_call_id": earlier["tool_calls"][0]["id"], "content": '{"rain": true}'}


@pytest.mark.parametrize("format_", ["openai_chat", "xlam", "sharegpt_hermes"])
def test_openai_export_reads_back_as_the_same_requests(tmp_path, format_):
    requests, _ = _read(format_)
    exported = tmp_path / "exported.jsonl"
    exported.write_text("".join(json.dumps(row) + "\n" for row in to_openai_chat(_examples(requests), "No call needed.")))
    again, rejected = _read("openai_chat", {"type": "supertiny.datasets.JSONLinesDataset", "filepath": str(exported)})
    assert rejected == []
    labelled = [request for request in requests if request["reference"] is not None]
    assert [(r["messages"], r["tools"], r["reference"]) for r in again] == [(r["messages"], r["tools"], r["reference"]) for r in labelled]


def test_openai_export_needs_a_no_call_reply():
    with pytest.raises(ConfigError, match="data.openai_export.no_call_reply"):
        export_openai_chat([], {"no_call_reply": " "})

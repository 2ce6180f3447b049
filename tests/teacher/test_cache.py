"""The response cache: keys that change exactly when the response could, atomic entries, clearing."""

from __future__ import annotations

import json
import subprocess
import sys

from supertiny.teacher.cache import ResponseCache, cache_key

MESSAGES = [{"role": "user", "content": "turn on the kitchen lights"}]
SAMPLING = {"temperature": 0.7, "max_tokens": 32}


def key(**changes) -> str:
    parts = {"endpoint": "http://x/v1", "model": "m", "messages": MESSAGES, "tools": None, "sampling": SAMPLING, "sample": 0}
    parts.update(changes)
    return cache_key(**parts)


def test_key_is_stable_and_ignores_dict_order():
    assert key() == key()
    assert key(sampling={"max_tokens": 32, "temperature": 0.7}) == key()


def test_key_changes_with_everything_that_decides_a_response():
    changed = [
        key(endpoint="http://y/v1"),
        key(model="m2"),
        key(messages=[{"role": "user", "content": "turn on the kitchen light"}]),
        key(tools=[{"type": "function", "function": {"name": "f"}}]),
        key(sampling={"temperature": 0.8, "max_tokens": 32}),
        key(sampling={"temperature": 0.7, "max_tokens": 33}),
        key(sample=1),
    ]
    assert len(set(changed + [key()])) == len(changed) + 1


def test_put_then_get_round_trips_and_leaves_no_temporary_files(tmp_path):
    cache = ResponseCache(tmp_path / "cache")
    assert cache.get(key()) is None
    cache.put(key(), {"text": "[]", "prompt_tokens": 3})
    assert cache.get(key()) == {"text": "[]", "prompt_tokens": 3}
    assert len(cache) == 1
    assert [p.name for p in (tmp_path / "cache").rglob("*") if p.is_file()] == [f"{key()}.json"]


def test_an_unreadable_entry_is_a_miss(tmp_path):
    cache = ResponseCache(tmp_path)
    cache.put(key(), {"text": "x"})
    path = next(tmp_path.rglob("*.json"))
    path.write_text('{"text": "trunc')  # what a torn write would look like without the atomic rename
    assert cache.get(key()) is None


def test_clear_command_removes_every_entry(tmp_path):
    cache = ResponseCache(tmp_path / "cache")
    for sample in range(3):
        cache.put(key(sample=sample), {"text": json.dumps(sample)})
    stats = subprocess.run([sys.executable, "-m", "supertiny.teacher.cache", "stats", str(tmp_path / "cache")], capture_output=True, text=True, check=True)
    assert stats.stdout.startswith("3 cached responses")
    cleared = subprocess.run([sys.executable, "-m", "supertiny.teacher.cache", "clear", str(tmp_path / "cache")], capture_output=True, text=True, check=True)
    assert "Removed 3" in cleared.stdout
    assert len(cache) == 0

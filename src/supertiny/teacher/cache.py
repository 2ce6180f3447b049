"""The teacher's response cache: one JSON file per request, written the moment it arrives.

A key is the SHA-256 of a canonical JSON of everything that decides a response (endpoint,
model, messages, tools, sampling parameters, sample index), so a re-run or a resumed run sends
only what is missing, and a changed prompt or parameter misses as it should. Each entry is
written to a temporary file and renamed over its final name (``os.replace`` is atomic), so a
run killed mid-write leaves either the whole entry or none; an unreadable entry counts as a miss.

Clear it with ``python -m supertiny.teacher.cache clear [DIR]`` (DIR defaults to the default
env's cache, data/02_intermediate/teacher_cache); ``stats`` counts its entries.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

DEFAULT_DIR = "data/02_intermediate/teacher_cache"


def cache_key(
    endpoint: str,
    model: str,
    messages: list[dict],
    tools: list[dict] | None,
    sampling: dict[str, Any],
    sample: int,
) -> str:
    """Hex SHA-256 of the canonical JSON of what decides one response."""
    payload = {
        "endpoint": endpoint,
        "model": model,
        "messages": messages,
        "tools": tools or None,
        "sampling": sampling,
        "sample": sample,
    }
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ResponseCache:
    """A directory of JSON entries, sharded by the key's first two hex digits."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._made: set[Path] = set()

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored entry, or None when absent or unreadable."""
        try:
            with open(self._path(key), encoding="utf-8") as handle:
                entry = json.load(handle)
        except (OSError, ValueError):
            return None
        return entry if isinstance(entry, dict) else None

    def put(self, key: str, entry: dict[str, Any]) -> None:
        """Store an entry atomically: readers see no entry or the whole entry, never a part."""
        path = self._path(key)
        if path.parent not in self._made:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._made.add(path.parent)
        # One writer per process and key at a time (the event loop runs one put at once), and
        # the process id keeps writers in different processes apart.
        partial = path.with_name(f".{key}.{os.getpid()}.tmp")
        try:
            with open(partial, "w", encoding="utf-8") as handle:
                json.dump(entry, handle, ensure_ascii=False)
            os.replace(partial, path)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise

    def __len__(self) -> int:
        return sum(1 for _ in self.directory.glob("??/*.json"))

    def clear(self) -> int:
        """Delete every entry; returns how many there were."""
        count = len(self)
        shutil.rmtree(self.directory, ignore_errors=True)
        self._made.clear()
        return count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m supertiny.teacher.cache", description="Inspect or clear the teacher's response cache.")
    parser.add_argument("command", choices=["stats", "clear"])
    parser.add_argument("directory", nargs="?", default=DEFAULT_DIR, help=f"cache directory (default: {DEFAULT_DIR})")
    args = parser.parse_args(argv)
    cache = ResponseCache(args.directory)
    if args.command == "clear":
        print(f"Removed {cache.clear()} cached responses from {cache.directory}")
    else:
        print(f"{len(cache)} cached responses in {cache.directory}")


if __name__ == "__main__":
    main()

"""Fixtures for compression: distill_train rows, the shipped settings, a fresh tiny model."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

CONF = Path(__file__).resolve().parents[2] / "conf"


def _merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        merged[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return merged


@pytest.fixture
def compression_params() -> dict:
    """conf/base's compression settings with conf/smoke's overrides (what the smoke run uses)."""
    base = yaml.safe_load((CONF / "base" / "parameters_compression.yml").read_text())["compression"]
    smoke = yaml.safe_load((CONF / "smoke" / "parameters_compression.yml").read_text())["compression"]
    return _merge(base, smoke)


@pytest.fixture
def distill_rows(good_rows, tool_catalog) -> list[dict]:
    """distill_train rows: requests with their tool schemas and the calls to learn."""
    return [dict(row, tools=tool_catalog, calls=row["reference"]) for row in good_rows]


@pytest.fixture
def fresh_tiny(tiny_model):
    """A copy of the session's tiny model that a test may change."""
    return copy.deepcopy(tiny_model)

"""What the tests share, importable as ``project_fixtures`` from every test (tests/conftest.py
registers it): the tools they offer, one definition of each, so that a schema detail a test
relies on is the same everywhere; and the project's own teacher settings."""

from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parents[1]


def project_teacher_settings(cache_dir: str | Path) -> dict:
    """conf/base/parameters_teacher.yml's teacher section, where every teacher setting is given
    (the code has no defaults of its own), with a response cache in ``cache_dir``."""
    settings = yaml.safe_load((PROJECT / "conf" / "base" / "parameters_teacher.yml").read_text())["teacher"]
    settings["cache_dir"] = str(cache_dir)
    settings["local_server"]["python"] = str(PROJECT / ".venv-teacher" / "bin" / "python")
    return settings


LIGHTS = {
    "type": "function",
    "function": {
        "name": "set_lights",
        "description": "Turn lights on or off in a room.",
        "parameters": {
            "type": "object",
            "properties": {
                "room": {"type": "string", "enum": ["kitchen", "bedroom"]},
                "on": {"type": "boolean"},
                "brightness": {"type": "integer", "minimum": 0, "maximum": 100, "default": 100},
            },
            "required": ["room", "on"],
            "additionalProperties": False,
        },
    },
}
TIMER = {
    "type": "function",
    "function": {
        "name": "start_timer",
        "description": "Start a countdown timer.",
        "parameters": {
            "type": "object",
            "properties": {"minutes": {"type": "integer", "minimum": 1}, "label": {"type": "string"}},
            "required": ["minutes"],
            "additionalProperties": False,
        },
    },
}

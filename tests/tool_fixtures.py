"""The tools the tests offer (importable as ``tool_fixtures`` from every test, by tests/conftest.py):
one definition of each, so that a schema detail a test relies on is the same everywhere."""

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

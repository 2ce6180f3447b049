"""Shared tools for the calls tests."""

import pytest

from project_fixtures import LIGHTS  # put on the import path by tests/conftest.py

THERMOSTAT = {
    "type": "function",
    "function": {
        "name": "set_thermostat",
        "description": "Set the heating mode and target temperature.",
        "parameters": {
            "type": "object",
            "properties": {
                "mode": {"type": "string", "enum": ["heat", "cool", "auto"]},
                "temperature": {"type": "number"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"},
            },
            "required": ["mode", "temperature"],
        },
    },
}
FAN = {
    "type": "function",
    "function": {
        "name": "set_fan",
        "description": "Set the fan speed.",
        "parameters": {
            "type": "object",
            "properties": {"speed": {"type": "string", "enum": ["low speed", "high speed"]}},
            "required": ["speed"],
        },
    },
}
MESSAGE = {
    "type": "function",
    "function": {
        "name": "send_message",
        "description": "Send a text message.",
        "parameters": {
            "type": "object",
            "properties": {
                "to": {"type": "string"},
                "body": {"type": "string"},
                "attachments": {
                    "type": "array",
                    "items": {"type": "object", "properties": {"url": {"type": "string"}}, "required": ["url"]},
                },
            },
            "required": ["to", "body"],
        },
    },
}
TOOLS = [LIGHTS, THERMOSTAT, FAN, MESSAGE]


@pytest.fixture(scope="session")
def tools() -> list[dict]:
    return TOOLS

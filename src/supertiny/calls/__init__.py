"""What a function call is: parsing, schema validation, exact matching and graded scoring.

A call is `{"name": str, "arguments": dict}`; an answer is a list of calls, `[]` meaning
no call is needed; a tool is an OpenAI tool schema.
"""

from supertiny.calls.match import canonical_key, exact_match
from supertiny.calls.parse import ParseResult, call_names, format_calls, parse_calls
from supertiny.calls.schema import check_tool_schema, tool_names, validate_calls
from supertiny.calls.score import VALID_ANSWER_FLOOR, similarity

__all__ = [
    "VALID_ANSWER_FLOOR",
    "ParseResult",
    "call_names",
    "canonical_key",
    "check_tool_schema",
    "exact_match",
    "format_calls",
    "parse_calls",
    "similarity",
    "tool_names",
    "validate_calls",
]

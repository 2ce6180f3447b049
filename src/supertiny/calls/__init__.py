"""What a function call is: parsing, schema validation, exact matching and graded scoring.

A call is `{"name": str, "arguments": dict}`; an answer is a list of calls, `[]` meaning
no call is needed; a tool is an OpenAI tool schema.
"""

from supertiny.calls.match import canonical_key, exact_match
from supertiny.calls.parse import NO_CALL, ParseResult, call_names, called_functions, format_calls, parse_calls
from supertiny.calls.schema import answer_schema, check_tool_schema, guiding_schema, selection_schema, tool_names, validate_calls
from supertiny.calls.score import VALID_ANSWER_FLOOR, similarity

__all__ = [
    "NO_CALL",
    "VALID_ANSWER_FLOOR",
    "ParseResult",
    "answer_schema",
    "call_names",
    "called_functions",
    "canonical_key",
    "check_tool_schema",
    "exact_match",
    "format_calls",
    "guiding_schema",
    "parse_calls",
    "selection_schema",
    "similarity",
    "tool_names",
    "validate_calls",
]

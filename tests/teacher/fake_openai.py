"""A scripted OpenAI-compatible server for tests and benchmarks (127.0.0.1, a free port).

``/v1/models`` and ``/v1/chat/completions``, with: a fixed latency, failures for the first
requests (429 with Retry-After, 500, ...), the models it serves (and whether it lists them), a
status for every request or never answering (for timeouts), both sparing the client's probe
unless ``spare_probe=False``, an API key to check, tool schemas to reject, and a
``reply(body)`` that writes the answer. The default reply follows the teacher's prompts: the
first listed function for the ``decomposed`` selection step, a call to the named function for
its filling step, and a call to the first function for ``prompted`` (as native ``tool_calls``
when the request has tools).

Run it alone for benchmarks: ``python tests/teacher/fake_openai.py --latency 0.2`` prints
``PORT <port>`` and serves until killed.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PROBE_TEXT = "Reply OK."
STRUCTURED_PROBE_KEYS = {"ok"}


def is_probe(body: dict) -> bool:
    """The client's probes start with PROBE_TEXT (the native one goes on to ask for a call)."""
    return (body["messages"][-1]["content"] or "").startswith(PROBE_TEXT)


def default_reply(body: dict) -> dict:
    """An assistant message that answers the teacher's prompts in their expected format."""
    system = next((m["content"] for m in body["messages"] if m["role"] == "system"), "")
    if body.get("tools"):
        name = body["tools"][0]["function"]["name"]
        return {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": name, "arguments": "{}"}}]}
    if system.startswith("Pick the functions"):
        name = re.search(r"^- (\w+)", system, re.MULTILINE).group(1)
        return {"role": "assistant", "content": json.dumps([{"name": name}])}
    fill = re.match(r"Call (\w+) for", system)
    if fill:
        return {"role": "assistant", "content": json.dumps([{"name": fill.group(1), "arguments": {}}])}
    listed = re.search(r"^(\w+): ", system, re.MULTILINE)
    name = listed.group(1) if listed else "none"
    return {"role": "assistant", "content": "Sure: " + json.dumps([{"name": name, "arguments": {}}])}


class FakeOpenAI:
    """``with FakeOpenAI(...) as server:`` serves ``server.base_url`` from a background thread."""

    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        failures: list[tuple[int, dict[str, str]]] | None = None,
        status: int | None = None,
        status_message: str | None = None,
        hang: bool = False,
        spare_probe: bool = True,
        models: list[str] | None = ("teacher",),
        list_models: bool = True,
        api_key: str | None = None,
        reject_tools: bool = False,
        reply: Callable[[dict], dict] = default_reply,
        structured: bool = False,
        reject_schema: Callable[[dict], bool] | None = None,
        honour_n: bool = False,
        quote_key: bool = False,
        port: int = 0,
    ) -> None:
        self.latency_s = latency_s
        self.failures = list(failures or [])
        self.status = status
        self.status_message = status_message  # what the scripted status says (a 400's reason)
        self.hang = hang
        self.spare_probe = spare_probe
        self.models = list(models) if models is not None else None  # None: any model name is served
        self.list_models = list_models
        self.api_key = api_key
        self.reject_tools = reject_tools
        self.reply = reply
        self.structured = structured  # follows response_format (answers the probe's schema)
        self.reject_schema = reject_schema  # 400 for a response_format schema it says True to
        self.honour_n = honour_n  # n choices per request (else one, as transformers serve)
        self.quote_key = quote_key  # every error message quotes the key it was sent (as careless servers do)
        self.bodies: list[dict] = []  # every chat completion body received, probes included
        self.arrivals: list[float] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def chat_requests(self) -> list[dict]:
        """Chat completion bodies other than the client's probe."""
        with self._lock:
            return [body for body in self.bodies if not is_probe(body)]

    @property
    def probes(self) -> int:
        with self._lock:
            return sum(1 for body in self.bodies if is_probe(body))

    def __enter__(self) -> FakeOpenAI:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def _answer_chat(self, body: dict, headers: Any) -> tuple[int, dict[str, str], dict]:
        status, extra, payload = self._chat(body, headers)
        if self.quote_key and "error" in payload:
            presented = (headers.get("Authorization") or "").removeprefix("Bearer ")
            payload["error"]["message"] += f" (request sent with key {presented})"
        return status, extra, payload

    def _chat(self, body: dict, headers: Any) -> tuple[int, dict[str, str], dict]:
        with self._lock:
            self.bodies.append(body)
            self.arrivals.append(time.monotonic())
            failure = self.failures.pop(0) if self.failures else None
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        scripted = not (self.spare_probe and is_probe(body))
        try:
            if self.hang and scripted:
                self._stopping.wait(60)
                return 503, {}, {"error": {"message": "shutting down"}}
            if self.latency_s:
                time.sleep(self.latency_s)
            if self.api_key is not None and headers.get("Authorization") != f"Bearer {self.api_key}":
                return 401, {}, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}
            if failure is not None:
                status, extra = failure
                return status, extra, {"error": {"message": f"scripted failure {status}"}}
            if self.status is not None and scripted:
                return self.status, {}, {"error": {"message": self.status_message or f"scripted status {self.status}"}}
            if self.models is not None and body.get("model") not in self.models:
                return 404, {}, {"error": {"message": f"The model `{body.get('model')}` does not exist"}}
            if self.reject_tools and body.get("tools"):
                return 400, {}, {"error": {"message": "Invalid schema for function 'x'"}}
            schema = (body.get("response_format") or {}).get("json_schema", {}).get("schema")
            if schema is not None and self.reject_schema is not None and self.reject_schema(schema):
                return 400, {}, {"error": {"message": "Grammar error: Unimplemented keys"}}
            if schema is not None and self.structured and set(schema.get("properties", {})) == STRUCTURED_PROBE_KEYS:
                message = {"role": "assistant", "content": json.dumps({"ok": True})}
            else:
                message = self.reply(body)
                if schema is not None and self.structured and message.get("content"):
                    # Held to the grammar: only the JSON, no prose around it.
                    text = message["content"]
                    message = {**message, "content": text[text.find("["):] if "[" in text else text}
            content = message.get("content") or ""
            choices = body.get("n", 1) if self.honour_n else 1
            return 200, {}, {
                "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": body.get("model"),
                "choices": [{"index": i, "message": message, "finish_reason": "tool_calls" if message.get("tool_calls") else "stop"}
                            for i in range(choices)],
                "usage": {"prompt_tokens": sum(len(m["content"] or "") for m in body["messages"]) // 4,
                          "completion_tokens": max(len(content) // 4, 1), "total_tokens": 0},
            }  # fmt: skip
        finally:
            with self._lock:
                self.in_flight -= 1

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
            disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms stall between

            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, headers: dict[str, str], payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path.rstrip("/") == "/v1/models" and server.list_models and server.models is not None:
                    if server.api_key is not None and self.headers.get("Authorization") != f"Bearer {server.api_key}":
                        self._send(401, {}, {"error": {"message": "Incorrect API key provided"}})
                        return
                    self._send(200, {}, {"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in server.models]})
                else:
                    self._send(404, {}, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, {}, {"error": {"message": "not found"}})
                    return
                try:
                    self._send(*server._answer_chat(body, self.headers))
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

        return Handler


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Serve a fake OpenAI-compatible endpoint until killed.")
    parser.add_argument("--latency", type=float, default=0.2, help="seconds before each chat completion answers")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    with FakeOpenAI(latency_s=args.latency, port=args.port) as fake:
        print(f"PORT {fake.port}", flush=True)
        threading.Event().wait()

"""``supertiny serve``: a model from the catalog behind an OpenAI-compatible chat endpoint.

A caller that sends ``messages`` and ``tools`` to ``POST /v1/chat/completions`` and reads
``tool_calls`` changes only its ``base_url``. Each request is answered as the evaluation timed
and scored it: the student's prompt format (``prompt.prompt_text`` with ``student.tools_mode``),
greedy, under the grammar of the request's own tools (``inference.AnswerGrammars``), on the fast
path (``decoding.Decoder``). Answers are returned in the OpenAI shape: ``tool_calls`` with
``finish_reason: tool_calls``, or a plain assistant message (empty content) when no call applies.

With a ``Fallback`` (``supertiny serve --fallback``), an answer whose confidence is below the
threshold (``serving.fallback``, chosen on validation requests by the evaluation's cascade) is
replaced by the teacher's, asked through the teacher's own client, cache, retries and accounting
(``teacher.*``). The ``x-supertiny-model`` header and the body's ``supertiny`` field say which
model answered; a teacher that fails leaves the tiny model's answer, marked and counted.

One model on a 2-core CPU answers one request at a time (its threads already use the cores):
concurrent requests wait in turn on a lock, never interleave on the model or its cache.
Every malformed request gets a 4xx with an OpenAI-style error body naming the field
(``{"error": {"message", "type", "param", "code"}}``), and the server keeps serving.
"""

from __future__ import annotations

import hmac
import json
import logging
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import anyio
import torch
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from kedro.io import DatasetError

from supertiny.calls import parse_calls, validate_calls
from supertiny.calls.parse import format_calls
from supertiny.calls.schema import check_tool_schema
from supertiny.datasets import ModelBundle, ModelDirectory
from supertiny.errors import SupertinyError
from supertiny.decoding import build_decoder
from supertiny.inference import AnswerGrammars, GrammarError
from supertiny.prompt import prompt_text

log = logging.getLogger(__name__)

ROLES = {"system", "developer", "user", "assistant", "tool"}
ANSWERED_BY_HEADER = "x-supertiny-model"  # which model wrote the answer (the cascade adds the teacher)


class RequestError(Exception):
    """A request the server cannot answer, as an OpenAI-style error (HTTP status, field, code)."""

    def __init__(self, message: str, *, param: str | None = None, status: int = 400, code: str | None = None,
                 kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.message, self.param, self.status, self.code, self.kind = message, param, status, code, kind

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status)


@dataclass
class Fallback:
    """Where the served model is unsure, the teacher answers: below ``threshold`` of ``signal``
    confidence (``decoding.CONFIDENCE_SIGNALS``), ``ask(request)`` gives the teacher's calls, or
    raises when the teacher could not answer."""

    threshold: float
    signal: str
    ask: Any  # Callable[[dict], list[dict]]
    teacher_name: str = "teacher"
    sent: int = 0
    failed: int = 0


@dataclass
class ServedModel:
    """A loaded model and how it answers: prompt format, grammar, fast path, limits."""

    name: str
    bundle: ModelBundle
    tools_mode: str
    constrained: bool = True
    max_calls: int | None = None
    max_new_tokens: int = 64
    threads: int = 2
    jump_forward: bool = True
    prefix_cache: bool = True
    no_call_threshold: float | None = None
    fallback: Fallback | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_evaluation(cls, name: str, bundle: ModelBundle, tools_mode: str, evaluation: dict[str, Any]) -> ServedModel:
        """A model answering as the evaluation measured it (``evaluation.constrained``, ``max_calls``,
        ``max_new_tokens``, ``threads``, ``fast_path``)."""
        from supertiny.decoding import decoder_settings
        from supertiny.pipelines.evaluation.nodes import decoding_settings

        constrained, max_calls = decoding_settings(evaluation)
        return cls(name=name, bundle=bundle, tools_mode=tools_mode, constrained=constrained, max_calls=max_calls,
                   max_new_tokens=evaluation["max_new_tokens"], threads=evaluation["threads"], **decoder_settings(evaluation))

    def __post_init__(self) -> None:
        model, tokenizer = self.bundle.model.eval(), self.bundle.tokenizer
        self.decoder = build_decoder(model, tokenizer, self.tools_mode, jump_forward=self.jump_forward, prefix_cache=self.prefix_cache,
                                     no_call_threshold=self.no_call_threshold)
        self.grammars = AnswerGrammars(tokenizer, model.config.vocab_size, self.max_calls)
        self.context_length = getattr(model.config, "max_position_embeddings", None)
        self.answered = 0

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        """The chat completion for a request body; RequestError for anything malformed."""
        model_name = body.get("model")
        if model_name not in (None, self.name):
            raise RequestError(f"The model {model_name!r} does not exist; this server serves {self.name!r}",
                               param="model", status=404, code="model_not_found")
        if body.get("stream"):
            raise RequestError("stream is not supported: request the whole answer", param="stream")
        if body.get("n", 1) != 1:
            raise RequestError("n must be 1: answers are greedy, so every choice would be the same", param="n")
        request = {"messages": _messages(body.get("messages")), "tools": _tools(body.get("tools"))}
        if body.get("tool_choice") == "none":
            request["tools"] = []  # the caller wants no call: the only answer left is none
        max_new_tokens = _max_tokens(body, self.max_new_tokens)
        tokenizer = self.bundle.tokenizer
        prompt = prompt_text(request, tokenizer, self.tools_mode)
        prompt_tokens = len(self.decoder.encode(prompt))
        if self.context_length and prompt_tokens + max_new_tokens > self.context_length:
            raise RequestError(
                f"The prompt is {prompt_tokens} tokens and the answer may take {max_new_tokens}: more than the model's "
                f"context of {self.context_length} tokens. Shorten the messages or offer fewer tools.",
                param="messages", code="context_length_exceeded")
        grammar = None
        if self.constrained:
            try:
                grammar = self.grammars.compile(request["tools"])
            except GrammarError as error:
                log.warning("Answering unconstrained: the tools' answer schema is not a grammar (%s)", error)
        previous_threads = torch.get_num_threads()
        with self._lock:  # one answer at a time on the model and its cache
            torch.set_num_threads(self.threads)
            try:
                decoded = self.decoder.generate(prompt, grammar, max_new_tokens)
            finally:
                torch.set_num_threads(previous_threads)
            self.answered += 1
        text, answered_by, note = decoded.text, self.name, {}
        if self.fallback is not None:
            confidence = decoded.confidence(self.fallback.signal)
            note = {"confidence": round(confidence, 6), "threshold": self.fallback.threshold}
            if confidence < self.fallback.threshold:
                text, answered_by, note = self._ask_teacher(request, text, note)
        completion = self._completion(text, decoded.finished, prompt_tokens, len(decoded.token_ids), request["tools"], answered_by)
        if note:
            completion["supertiny"] = {"answered_by": answered_by, **note}
        return completion

    def _ask_teacher(self, request: dict[str, Any], text: str, note: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
        """The teacher's answer in place of ``text``; the tiny model's, marked, when the teacher fails."""
        fallback = self.fallback
        fallback.sent += 1
        try:
            calls = fallback.ask(request)  # outside the model's lock: other requests go on meanwhile
        except Exception as error:  # the teacher is down, refuses, or times out: the tiny model's answer stands
            fallback.failed += 1
            log.warning("The teacher did not answer a fallback request (%s): the tiny model's answer is returned", error)
            return text, self.name, {**note, "fallback_error": str(error)}
        return format_calls(calls), fallback.teacher_name, note

    def _completion(self, text: str, finished: bool, prompt_tokens: int, completion_tokens: int, tools: list[dict],
                    answered_by: str | None = None) -> dict[str, Any]:
        parsed = parse_calls(text)
        calls = parsed.calls if parsed.ok and not validate_calls(parsed.calls, tools) else None
        if calls:
            message = {"role": "assistant", "content": None, "tool_calls": [
                {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
                 "function": {"name": call["name"], "arguments": json.dumps(call["arguments"], ensure_ascii=False)}}
                for call in calls]}
            finish_reason = "tool_calls"
        elif calls == []:
            message, finish_reason = {"role": "assistant", "content": ""}, "stop"
        else:  # not a valid answer (unconstrained, or cut off at max_tokens): the text as it came
            message, finish_reason = {"role": "assistant", "content": text}, "stop" if finished else "length"
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": answered_by or self.name,
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }


def _messages(messages: Any) -> list[dict[str, str]]:
    """OpenAI chat messages as the prompt's ``{role, content}``: text parts joined, an earlier
    assistant turn's ``tool_calls`` written as the model writes calls."""
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages must be a non-empty list of {role, content}", param="messages")
    converted = []
    for position, message in enumerate(messages):
        where = f"messages[{position}]"
        if not isinstance(message, dict):
            raise RequestError(f"{where} must be an object with role and content", param=where)
        role = message.get("role")
        if role not in ROLES:
            raise RequestError(f"{where}.role must be one of {sorted(ROLES)}; got {role!r}", param=f"{where}.role")
        content = message.get("content")
        if isinstance(content, list):
            if not all(isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str) for part in content):
                raise RequestError(f"{where}.content: only text parts are supported", param=f"{where}.content")
            content = "".join(part["text"] for part in content)
        if content is None and role == "assistant" and message.get("tool_calls"):
            parsed = parse_calls(tool_calls=message["tool_calls"])
            if not parsed.ok:
                raise RequestError(f"{where}.tool_calls: {parsed.error}", param=f"{where}.tool_calls")
            content = format_calls(parsed.calls)
        if not isinstance(content, str):
            raise RequestError(f"{where}.content must be a string or a list of text parts", param=f"{where}.content")
        converted.append({"role": "system" if role == "developer" else role, "content": content})
    if not any(m["role"] == "user" and m["content"].strip() for m in converted):
        raise RequestError("messages has no non-empty user message", param="messages")
    return converted


def _tools(tools: Any) -> list[dict]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise RequestError("tools must be a list of function tools", param="tools")
    for position, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise RequestError(f"tools[{position}] must be a function tool ({{type: function, function: {{...}}}})", param=f"tools[{position}]")
        problems = check_tool_schema(tool)
        if problems:
            raise RequestError(f"tools[{position}]: {'; '.join(problems)}", param=f"tools[{position}].function")
    return tools


def _max_tokens(body: dict[str, Any], default: int) -> int:
    value = body.get("max_completion_tokens", body.get("max_tokens"))
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RequestError(f"max_tokens must be a positive integer; got {value!r}", param="max_tokens")
    return min(value, default)  # the grammar's longest answer fits in the default


class BackgroundServer:
    """``with BackgroundServer(app) as server:`` serves ``app`` with uvicorn from a thread on a free
    loopback port (``server.url``) until the block ends: a replay or a test talks to it over HTTP."""

    def __init__(self, app: FastAPI, startup_timeout_s: float = 60) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, name="supertiny-serve", daemon=True)
        self._startup_timeout_s = startup_timeout_s

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + self._startup_timeout_s
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                self.__exit__()
                raise RuntimeError("the model server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)


def teacher_fallback(catalog: Any, params: dict[str, Any]) -> Fallback:
    """The fallback ``serving.fallback`` describes: its threshold and signal (``auto``: the
    evaluation's ``cascade_choice``), and the teacher asked as the pipelines ask it (greedy, one
    sample, through ``label_requests``: cache, retries, spending cap, accounting)."""
    from supertiny.pipelines.evaluation.cascade import AUTO, fallback_settings
    from supertiny.teacher import TeacherConfig, label_requests

    settings = fallback_settings(params.get("serving", {}))
    threshold, signal = settings["threshold"], settings["signal"]
    if AUTO in (threshold, signal):
        try:
            choice = catalog.load("cascade_choice")
        except DatasetError:
            raise SupertinyError("serving.fallback is 'auto', but there is no cascade_choice yet: run `kedro run --pipelines "
                                 "evaluation` first, or set serving.fallback.threshold and signal") from None
        if choice.get("threshold") is None:
            raise SupertinyError(f"serving.fallback is 'auto', but the evaluation chose no threshold ({choice.get('reason')}); "
                                 "set serving.fallback.threshold and signal")
        threshold = choice["threshold"] if threshold == AUTO else threshold
        signal = choice["signal"] if signal == AUTO else signal
    teacher = params["teacher"]
    config = TeacherConfig.from_params({**teacher, "k_samples": 1, "temperature": 0.0})
    seeds = catalog.load("teacher_seed_examples")
    base_model = catalog.load("base_model").path if config.embedded else None

    def ask(request: dict[str, Any]) -> list[dict]:
        candidates, _ = label_requests([{"id": f"serve-{uuid.uuid4().hex[:12]}", "meta": {}, "reference": None, **request}],
                                       seeds, config, model_dir=base_model)
        candidate = candidates[0]
        if candidate["error_kind"] is not None or candidate["calls"] is None:
            raise SupertinyError(f"teacher {candidate['error_kind'] or 'answer did not parse'}: {candidate.get('error') or candidate.get('text')}")
        return candidate["calls"]

    return Fallback(threshold=float(threshold), signal=signal, ask=ask, teacher_name=f"teacher:{config.model or 'embedded'}")


def served_model_directory(catalog: Any, name: str) -> ModelDirectory:
    """The model directory of catalog dataset ``name``; SupertinyError, naming it, when there is none."""
    if name not in catalog:
        raise SupertinyError(f"serving.model {name!r}: no such dataset in the catalog")
    try:
        model_dir = catalog.load(name)
    except DatasetError as error:
        raise SupertinyError(f"serving.model {name!r} cannot be loaded; run the pipelines that write it first ({error})") from None
    if not isinstance(model_dir, ModelDirectory) or not (model_dir.path / "config.json").is_file():
        where = getattr(model_dir, "path", "it")
        raise SupertinyError(f"serving.model {name!r}: {where} is not a model directory; run the pipelines that write it first")
    return model_dir


def create_app(served: ServedModel, api_key: str | None = None) -> FastAPI:
    """The FastAPI application serving ``served``; ``api_key``: callers must send it as a bearer token."""
    app = FastAPI(title="supertiny", docs_url=None, redoc_url=None)

    def authorised(request: Request) -> bool:
        if api_key is None:
            return True
        given = request.headers.get("authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {api_key}".encode())

    def unauthorised() -> JSONResponse:
        return RequestError("Missing or wrong API key (send it as Authorization: Bearer ...)", status=401,
                            code="invalid_api_key", kind="authentication_error").response()

    @app.get("/health")
    def health() -> dict[str, Any]:
        status = {"status": "ok", "model": served.name, "answered": served.answered}
        if served.fallback is not None:
            status["fallback"] = {"threshold": served.fallback.threshold, "signal": served.fallback.signal,
                                  "sent": served.fallback.sent, "failed": served.fallback.failed}
        return status

    @app.get("/v1/models")
    def models(request: Request) -> Any:
        if not authorised(request):
            return unauthorised()
        return {"object": "list", "data": [{"id": served.name, "object": "model", "created": 0, "owned_by": "supertiny"}]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        if not authorised(request):
            return unauthorised()
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            return RequestError(f"The body is not valid JSON: {error}").response()
        if not isinstance(body, dict):
            return RequestError("The body must be a JSON object").response()
        try:
            # Off the event loop, so /health answers while a request decodes.
            completion = await anyio.to_thread.run_sync(served.answer, body)
        except RequestError as error:
            return error.response()
        return JSONResponse(completion, headers={ANSWERED_BY_HEADER: completion["model"]})

    return app

"""The teacher's connection: an async OpenAI client with a cache, bounded concurrency and accounting.

Retries are the ``openai`` SDK's own (``max_retries``): it retries timeouts, connection errors,
408/409/429 and 5xx with exponential backoff and jitter, and honours ``Retry-After`` /
``retry-after-ms`` up to two minutes (a longer wait fails at once, which beats idling a run).
A request that still fails becomes a :class:`Completion` with an ``error_kind``, never an
exception: one bad request must not end a run of a hundred thousand.

The endpoint is connected lazily, on the first request that misses the cache: a fully cached
re-run starts no server, sends nothing and needs no API key. Connecting sends one probe request,
so a wrong key, URL, model or tool schema, or an endpoint that ignores ``tools``, is reported,
naming the setting, before any other request is paid for.

Spending: every response's tokens are priced (``teacher.prices``) into one account for the
process, so ``teacher.max_cost_usd`` caps a whole ``kedro run`` (labelling, judging, the
evaluation's teacher row). Once it is reached no new request is sent; the requests already in
flight (at most ``teacher.concurrency``) still arrive and are cached.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import httpx2
import openai
from openai.types.chat import ChatCompletion

from supertiny.errors import ConfigError
from supertiny.teacher.cache import ResponseCache, cache_key
from supertiny.teacher.config import TeacherConfig

log = logging.getLogger(__name__)

# Servers on this machine take any key; the SDK insists on having one.
LOCAL_API_KEY = "not-needed"
MAX_ERROR_CHARS = 400
PROBE_TEXT = "Reply OK."
# The native strategy's probe needs a call: an endpoint that ignores `tools` answers it in text.
PROBE_CALL_TEXT = PROBE_TEXT + " Do it by calling the function {name} once, with any valid arguments."
# What a 400's message says, in the words OpenAI-compatible servers use (OpenAI, vLLM, TGI, ...).
CONTEXT_WORDS = ("context length", "context_length", "maximum context", "context window", "too many tokens",
                 "prompt is too long", "max_model_len", "reduce the length", "maximum model length")
UNKNOWN_PARAMETER_WORDS = ("unrecognized", "unknown parameter", "unknown field", "unsupported parameter",
                           "extra inputs are not permitted", "extra_forbidden", "not supported", "unexpected keyword")
UNKNOWN_MODEL_WORDS = ("does not exist", "not found", "unknown model", "no such model", "invalid model")
# The body fields the teacher sends, and the setting that decides each.
PARAMETER_SETTINGS = {
    "response_format": "set teacher.structured_outputs: off",
    "tools": "use teacher.strategy: prompted or decomposed (tools in the prompt)",
    "temperature": "check teacher.temperature",
    "max_tokens": "check teacher.max_tokens",
    "n": "set teacher.k_samples: 1",
}
# The structured-outputs probe's schema: small enough for any grammar engine.
PROBE_SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"], "additionalProperties": False}
CACHED_FIELDS = ("text", "tool_calls", "prompt_tokens", "completion_tokens", "latency_ms")


@dataclass(frozen=True)
class Endpoint:
    """Where requests go: an OpenAI-compatible base URL, the model name to send, and the key."""

    base_url: str
    model: str
    api_key: str = field(repr=False)  # never in a log line or an error


@dataclass
class Completion:
    """One response (or the error that replaced it) with what it cost."""

    text: str | None = None
    tool_calls: list[dict] | None = None  # [{name, arguments (JSON text)}] when the server used native tool calls
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    cached: bool = False
    error_kind: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error_kind is None

    def entry(self) -> dict[str, Any]:
        """What the cache stores for a successful response."""
        return {key: getattr(self, key) for key in CACHED_FIELDS}

    @classmethod
    def from_entry(cls, entry: dict[str, Any]) -> Completion:
        return cls(**{key: entry[key] for key in CACHED_FIELDS if key in entry}, cached=True)


@dataclass
class Usage:
    """What a run sent and received; cached responses count as hits, not as requests."""

    sent: int = 0
    probes: int = 0
    cache_hits: int = 0
    retries: int = 0
    errors: Counter = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    cached_completion_tokens: int = 0
    # Requests whose response_format the endpoint rejected, answered again as free text.
    structured_fallbacks: int = 0
    # HTTP requests (probes aside): fewer than `sent` responses when one request carries n samples.
    http_requests: int = 0
    # Samples not sent because teacher.max_cost_usd was reached.
    not_sent: int = 0

    def add(self, completion: Completion) -> None:
        if completion.error_kind == BUDGET:
            self.not_sent += 1
            return
        if completion.cached:
            self.cache_hits += 1
            self.cached_prompt_tokens += completion.prompt_tokens
            self.cached_completion_tokens += completion.completion_tokens
            return
        self.sent += 1
        self.prompt_tokens += completion.prompt_tokens
        self.completion_tokens += completion.completion_tokens
        if not completion.ok:
            self.errors[completion.error_kind] += 1


class InvalidResponse(Exception):
    """A 200 response that is not a chat completion."""


BUDGET = "budget"  # the error kind of a sample not sent: teacher.max_cost_usd was reached


class Spending:
    """The estimated cost (tokens x ``teacher.prices``) of every teacher response this process
    received: a ``kedro run`` is one process, so ``teacher.max_cost_usd`` caps the whole run.
    The project's hooks reset it when a run starts."""

    def __init__(self) -> None:
        self.usd = 0.0

    def reset(self) -> None:
        self.usd = 0.0


RUN_SPENDING = Spending()


def error_kind(error: Exception) -> str:
    """A short, stable name for why a request failed (counted in teacher_usage)."""
    if isinstance(error, openai.APITimeoutError):
        return "timeout"
    if isinstance(error, openai.APIConnectionError):
        return "connection"
    if isinstance(error, openai.RateLimitError):
        return "rate_limit"
    if isinstance(error, (openai.AuthenticationError, openai.PermissionDeniedError)):
        return "auth"
    if isinstance(error, openai.NotFoundError):
        return "not_found"
    if isinstance(error, (openai.BadRequestError, openai.UnprocessableEntityError)):
        return "bad_request"
    if isinstance(error, openai.APIStatusError):
        return "server_error" if error.status_code >= 500 else f"http_{error.status_code}"
    return "invalid_response"


def api_key(config: TeacherConfig) -> str:
    """The key for ``config.base_url``; a remote endpoint without one is a ConfigError, before any request."""
    value = os.environ.get(config.api_key_env) if config.api_key_env else None
    if value:
        return value
    if config.on_this_machine:
        return LOCAL_API_KEY
    if not config.api_key_env:
        raise ConfigError(f"teacher.api_key_env is not set: name the environment variable that holds the API key for {config.base_url}")
    raise ConfigError(
        f"the environment variable {config.api_key_env} (teacher.api_key_env) is not set: "
        f"set it to the API key for {config.base_url}"
    )


def _message(error: Exception, secret: str | None = None) -> str:
    """The error in one line, without the API key (a server may quote the key it refused)."""
    text = " ".join(str(error).split())
    if secret and secret != LOCAL_API_KEY:
        text = text.replace(secret, "[API key]")
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS] + "..."


def rejection_message(detail: str, endpoint: Endpoint, *, request: str, tools_sent: bool, embedded: bool) -> str:
    """A 400 explained by what the endpoint said: the context length, a parameter it does not
    take, a tool schema, an unknown model; else the endpoint's own words."""
    where, said = endpoint.base_url, detail.casefold()
    if any(words in said for words in CONTEXT_WORDS):
        longer = ", or raise teacher.local_server.max_model_len" if embedded else ""
        return (f"{where} refused {request} as longer than the model's context ({detail}): lower teacher.max_tokens "
                f"or teacher.few_shot{longer}")
    if tools_sent and any(word in said for word in ("tool", "function", "schema")):
        return f"{where} rejected the tool schema of {request}: {detail}; fix that request's tools, or try teacher.strategy: prompted"
    if any(words in said for words in UNKNOWN_PARAMETER_WORDS):
        named = [name for name in PARAMETER_SETTINGS if re.search(rf"\b{name}\b", said)]
        hint = "; ".join(PARAMETER_SETTINGS[name] for name in named) or "check the teacher settings that add it"
        return f"{where} does not take a parameter that {request} sent ({detail}): {hint}"
    if "model" in said and any(words in said for words in UNKNOWN_MODEL_WORDS):
        return f"teacher.model {endpoint.model!r} is not served by {where} ({detail}): fix teacher.model"
    return f"{where} rejected {request} ({detail})"


def _completions_from_response(response: Any, latency_ms: float) -> list[Completion]:
    """Text, native tool calls and token counts of each choice of a chat completion.

    The choices of one request share its prompt: its prompt tokens are counted once, on the
    first choice, and the completion tokens are shared out evenly (the usage is per request)."""
    try:
        choices = sorted(response.choices, key=lambda choice: choice.index or 0)
        usage = response.usage
        prompt_tokens = (usage.prompt_tokens or 0) if usage else 0
        completion_tokens = (usage.completion_tokens or 0) if usage else 0
        completions = []
        for position, choice in enumerate(choices):
            message = choice.message
            tool_calls = None
            if message.tool_calls:
                tool_calls = [{"name": call.function.name, "arguments": call.function.arguments} for call in message.tool_calls]
            share = completion_tokens // len(choices) + (1 if position < completion_tokens % len(choices) else 0)
            completions.append(
                Completion(
                    text=message.content,
                    tool_calls=tool_calls,
                    prompt_tokens=prompt_tokens if position == 0 else 0,
                    completion_tokens=share,
                    latency_ms=round(latency_ms, 1),
                )
            )
        if not completions:
            raise IndexError("no choices")
        return completions
    except (AttributeError, IndexError, TypeError) as error:
        raise InvalidResponse(f"not a chat completion: {error}") from None


class TeacherClient:
    """Sends chat completions through the cache, at most ``concurrency`` at a time.

    ``endpoint_label`` and ``model_label`` identify the teacher in cache keys and records;
    ``connect`` returns the :class:`Endpoint` and is called once, on the first cache miss
    (for the embedded default it starts the local server). ``probe_tools`` (request id and
    its tools, for ``native``) makes the probe ask for a call of the first tool: the endpoint
    must accept the schemas and answer with a tool call.
    """

    def __init__(
        self,
        config: TeacherConfig,
        cache: ResponseCache,
        endpoint_label: str,
        model_label: str,
        connect: Callable[[], Endpoint],
        probe_tools: tuple[str, list[dict]] | None = None,
    ) -> None:
        self.config = config
        self.cache = cache
        self.endpoint_label = endpoint_label
        self.model_label = model_label
        self.usage = Usage()
        self._price = config.price(config.model or model_label)
        self._connect = connect
        self._probe_tools = probe_tools
        self._slots = asyncio.Semaphore(config.concurrency)
        self._connect_lock = asyncio.Lock()
        self._openai: openai.AsyncOpenAI | None = None
        self._endpoint: Endpoint | None = None
        self._connect_error: BaseException | None = None
        # What the endpoint supports, found by the probe.
        self.supports_structured = False
        self.supports_n = False

    @property
    def endpoint(self) -> Endpoint | None:
        """Where requests go, once connected (None while every answer came from the cache)."""
        return self._endpoint

    async def complete(
        self, messages: list[dict], *, sample: int, max_tokens: int, tools: list[dict] | None = None, schema: dict | None = None
    ) -> Completion:
        """The cached response to these messages, or a fresh one (stored the moment it arrives)."""
        return (await self.complete_samples(messages, samples=[sample], max_tokens=max_tokens, tools=tools, schema=schema))[0]

    async def complete_samples(
        self, messages: list[dict], *, samples: list[int], max_tokens: int, tools: list[dict] | None = None, schema: dict | None = None
    ) -> list[Completion]:
        """One response for each sample index, from the cache or fresh.

        ``schema``: the JSON Schema the answer must follow, sent as ``response_format`` where the
        endpoint supports structured outputs. The samples that miss the cache go in one request
        with ``n`` where the endpoint honours it (one prefill for all), else one request each.
        Every sample is cached under its own key, so a resumed run sends nothing twice.
        """
        guide = schema if schema is not None and self.config.structured_outputs != "off" else None
        completions: list[Completion | None] = []
        for sample in samples:
            # A guided answer first; else a free-text one (an endpoint without structured outputs).
            entry = self.cache.get(self._key(messages, tools, max_tokens, guide, sample)) if guide is not None else None
            if entry is None:
                entry = self.cache.get(self._key(messages, tools, max_tokens, None, sample))
            completions.append(Completion.from_entry(entry) if entry is not None else None)
        missing = [position for position, completion in enumerate(completions) if completion is None]
        if missing:
            await self._connected()  # the probe finds out what the endpoint supports
            sent_schema = guide if self.supports_structured else None
            groups = [missing] if self.supports_n else [[position] for position in missing]
            answers = await asyncio.gather(*(self._send_samples(messages, tools, max_tokens, sent_schema, len(group)) for group in groups))
            for group, (fresh, followed) in zip(groups, answers):
                for position, completion in zip(group, fresh):
                    if completion.ok:
                        self.cache.put(self._key(messages, tools, max_tokens, sent_schema if followed else None, samples[position]), completion.entry())
                    completions[position] = completion
        for completion in completions:
            self.usage.add(completion)
        return completions

    def _key(self, messages: list[dict], tools: list[dict] | None, max_tokens: int, schema: dict | None, sample: int) -> str:
        sampling: dict[str, Any] = {"temperature": self.config.temperature, "max_tokens": max_tokens}
        if schema is not None:
            sampling["response_format"] = schema  # a guided answer is another answer than a free one
        return cache_key(self.endpoint_label, self.model_label, messages, tools, sampling, sample)

    async def _send_samples(
        self, messages: list[dict], tools: list[dict] | None, max_tokens: int, schema: dict | None, n: int
    ) -> tuple[list[Completion], bool]:
        """``n`` fresh responses (one request), and whether they followed ``schema``. A request
        whose schema the endpoint rejects is sent again as free text, and counted."""
        async with self._slots:
            client, endpoint = await self._connected()
            if self.budget_reached:
                error = f"not sent: teacher.max_cost_usd (${self.config.max_cost_usd:g}) reached"
                return [Completion(error_kind=BUDGET, error=error) for _ in range(n)], False
            self.usage.http_requests += 1
            completions = await self._send(client, endpoint.model, messages, tools, max_tokens, schema=schema, n=n)
            if schema is not None and completions[0].error_kind == "bad_request":
                self.usage.http_requests += 1
                log.warning("The endpoint rejected an answer schema (%s); answering as free text", completions[0].error)
                self.usage.structured_fallbacks += 1
                return await self._send(client, endpoint.model, messages, tools, max_tokens, n=n), False
        return completions, schema is not None

    async def _send(
        self,
        client: openai.AsyncOpenAI,
        model: str,
        messages: list[dict],
        tools: list[dict] | None,
        max_tokens: int,
        *,
        schema: dict | None = None,
        n: int = 1,
    ) -> list[Completion]:
        """``n`` choices of one request (an error fills every place)."""
        # `max_tokens` rather than `max_completion_tokens`: every OpenAI-compatible server knows it.
        body: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": self.config.temperature}
        if tools:
            body["tools"] = tools
        if schema is not None:
            body["response_format"] = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
        if n > 1:
            body["n"] = n
        started = time.perf_counter()
        try:
            # `post` is `chat.completions.create` without its per-call conversion of typed
            # parameters (over a millisecond a request: most of the client's CPU at high
            # concurrency); retries, errors and response parsing are the same.
            response = await client.post("/chat/completions", body=body, cast_to=ChatCompletion)
            completions = _completions_from_response(response, (time.perf_counter() - started) * 1000)
            self._spend(completions)
            if len(completions) < n:
                raise InvalidResponse(f"asked for n={n} choices, got {len(completions)}")
            return completions[:n]
        except (openai.OpenAIError, InvalidResponse) as error:
            latency_ms = round((time.perf_counter() - started) * 1000, 1)
            message = _message(error, self._endpoint.api_key if self._endpoint else None)
            return [Completion(latency_ms=latency_ms, error_kind=error_kind(error), error=message) for _ in range(n)]

    def _spend(self, completions: list[Completion]) -> None:
        if self._price is not None:
            prompt = sum(c.prompt_tokens for c in completions)
            completion = sum(c.completion_tokens for c in completions)
            RUN_SPENDING.usd += (prompt * self._price["prompt"] + completion * self._price["completion"]) / 1e6

    @property
    def budget_reached(self) -> bool:
        """Whether this run's teacher responses so far cost ``teacher.max_cost_usd`` or more."""
        return self.config.max_cost_usd is not None and RUN_SPENDING.usd >= self.config.max_cost_usd

    async def _count_retry(self, request: httpx2.Request) -> None:
        """The SDK stamps each attempt with how many retries came before it."""
        if request.headers.get("x-stainless-retry-count", "0") != "0":
            self.usage.retries += 1

    async def _connected(self) -> tuple[openai.AsyncOpenAI, Endpoint]:
        """Connect and probe once; every later caller gets the same client, or the same error."""
        async with self._connect_lock:
            if self._connect_error is not None:
                raise self._connect_error
            if self._openai is None:
                try:
                    # Called in the event loop's (main) thread on purpose: the embedded server
                    # installs signal handlers, and no request can go anywhere before it is up.
                    self._endpoint = self._connect()
                    self._openai = openai.AsyncOpenAI(
                        base_url=self._endpoint.base_url,
                        api_key=self._endpoint.api_key,
                        timeout=self.config.timeout_s,
                        max_retries=self.config.max_retries,
                        http_client=openai.DefaultAsyncHttpxClient(event_hooks={"request": [self._count_retry]}),
                    )
                    await self._probe(self._openai, self._endpoint)
                except BaseException as error:
                    self._connect_error = error
                    raise
        return self._openai, self._endpoint

    async def _probe(self, client: openai.AsyncOpenAI, endpoint: Endpoint) -> None:
        """One model listing (where the server has one) and one tiny chat completion, or a
        ConfigError naming the setting to fix."""
        where = endpoint.base_url
        try:
            # Once, without retries: a listing is optional, and failing it only defers to the chat probe.
            served = [model.id for model in (await client.with_options(max_retries=0).models.list()).data]
        except (openai.AuthenticationError, openai.PermissionDeniedError) as error:
            raise self._probe_error(error, endpoint) from None
        except (openai.OpenAIError, AttributeError, TypeError):
            served = []  # no usable listing (transformers serve answers 500 offline): the chat probe decides
        if served and endpoint.model not in served:
            shown = ", ".join(sorted(served)[:10]) + (", ..." if len(served) > 10 else "")
            raise ConfigError(f"teacher.model {endpoint.model!r} is not served by {where} (it serves: {shown})")
        request_id, tools = self._probe_tools or ("", None)
        if tools:
            # Something that needs a call, with the first request's tools (their schemas checked too).
            name = (tools[0].get("function") or {}).get("name", "")
            text = PROBE_CALL_TEXT.format(name=name)
            completion = await self._probe_send(client, endpoint, tools, self.config.max_tokens, text=text)
            if not completion.ok and completion.error_kind == "bad_request":
                plain = await self._probe_send(client, endpoint, None, 1)
                if plain.ok:
                    raise ConfigError(rejection_message(completion.error or "", endpoint, request=f"request {request_id}",
                                                        tools_sent=True, embedded=self.config.embedded))
                completion = plain
            elif completion.ok and not completion.tool_calls:
                raise ConfigError(
                    f"{where} answered the probe, which asks for a call of {name} (a tool of request {request_id}), with text "
                    f"and no tool call ({(completion.text or '')[:80]!r}): it ignores `tools`, so every answer would read as "
                    "'no call'. Use teacher.strategy: prompted or decomposed (tools in the prompt), or a server with "
                    "tool calling on (vLLM: --enable-auto-tool-choice --tool-call-parser ...)"
                )
        else:
            completion = await self._probe_send(client, endpoint, None, 1)
        if not completion.ok:
            raise self._probe_failure(completion, endpoint)
        self.supports_structured = await self._probe_structured(client, endpoint)
        self.supports_n = self.config.k_samples > 1 and await self._probe_n(client, endpoint)
        log.info(
            "Teacher endpoint %s answers as model %s (structured outputs: %s; k samples: %s)",
            where, endpoint.model, "yes" if self.supports_structured else "no",
            "one request with n" if self.supports_n else "one request each",
        )  # fmt: skip

    async def _probe_send(self, client: openai.AsyncOpenAI, endpoint: Endpoint, tools: list[dict] | None, max_tokens: int,
                          text: str = PROBE_TEXT, **options: Any) -> Completion:
        completions = await self._send(client, endpoint.model, [{"role": "user", "content": text}], tools, max_tokens, **options)
        self.usage.probes += 1
        self.usage.prompt_tokens += completions[0].prompt_tokens
        self.usage.completion_tokens += sum(c.completion_tokens for c in completions)
        return completions[0]

    async def _probe_structured(self, client: openai.AsyncOpenAI, endpoint: Endpoint) -> bool:
        """Whether the endpoint holds an answer to a JSON Schema: asked for ``{"ok": <bool>}``, does
        the answer parse as exactly that? (A server that ignores response_format writes prose.)"""
        if self.config.structured_outputs == "off":
            return False
        reply = await self._probe_send(client, endpoint, None, 16, schema=PROBE_SCHEMA)
        try:
            followed = reply.ok and set(json.loads(reply.text or "")) == {"ok"}
        except (ValueError, TypeError):
            followed = False
        if not followed and self.config.structured_outputs == "on":
            raise ConfigError(
                f"teacher.structured_outputs is on, but {endpoint.base_url} does not follow response_format "
                f"({reply.error or 'the answer ignored the schema: ' + repr((reply.text or '')[:80])}): "
                "set teacher.structured_outputs: auto or off"
            )
        return followed

    async def _probe_n(self, client: openai.AsyncOpenAI, endpoint: Endpoint) -> bool:
        """Whether the endpoint returns ``n`` choices for one request (servers may ignore ``n``)."""
        reply = await self._probe_send(client, endpoint, None, 1, n=2)
        return reply.ok

    def _probe_error(self, error: Exception, endpoint: Endpoint) -> ConfigError:
        kind = error_kind(error)
        return self._probe_failure(Completion(error_kind=kind, error=_message(error, endpoint.api_key)), endpoint)

    def _probe_failure(self, completion: Completion, endpoint: Endpoint) -> ConfigError:
        where, kind, detail = endpoint.base_url, completion.error_kind, completion.error
        if kind == "auth":
            return ConfigError(
                f"{where} refused the API key ({detail}): set the environment variable named by "
                f"teacher.api_key_env ({self.config.api_key_env}) to a valid key"
            )
        if kind in ("connection", "timeout"):
            reason = "did not answer within teacher.timeout_s" if kind == "timeout" else "is unreachable"
            return ConfigError(f"teacher.base_url {where} {reason} ({detail}): start the server or fix teacher.base_url")
        if kind == "not_found":
            return ConfigError(f"teacher.model {endpoint.model!r} is not served by {where} ({detail}): fix teacher.model")
        if kind == "bad_request":
            return ConfigError(rejection_message(detail or "", endpoint, request="the probe request", tools_sent=False,
                                                 embedded=self.config.embedded))
        return ConfigError(f"teacher.base_url {where} failed a probe request ({kind}: {detail})")

    async def aclose(self) -> None:
        if self._openai is not None:
            await self._openai.close()

"""The teacher's connection: an async OpenAI client with a cache, bounded concurrency and accounting.

Retries are the ``openai`` SDK's own (``max_retries``): it retries timeouts, connection errors,
408/409/429 and 5xx with exponential backoff and jitter, and honours ``Retry-After`` /
``retry-after-ms`` up to two minutes (a longer wait fails at once, which beats idling a run).
A request that still fails becomes a :class:`Completion` with an ``error_kind``, never an
exception: one bad request must not end a run of a hundred thousand.

The endpoint is connected lazily, on the first request that misses the cache: a fully cached
re-run starts no server and sends nothing. Connecting sends one probe request, so a wrong key,
URL, model or tool schema is reported, naming the setting, before any other request is paid for.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlparse

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
CACHED_FIELDS = ("text", "tool_calls", "prompt_tokens", "completion_tokens", "latency_ms")


@dataclass(frozen=True)
class Endpoint:
    """Where requests go: an OpenAI-compatible base URL, the model name to send, and the key."""

    base_url: str
    model: str
    api_key: str


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

    def add(self, completion: Completion) -> None:
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


def is_loopback(base_url: str) -> bool:
    """True for a server on this machine (which needs no real key)."""
    host = urlparse(base_url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def api_key(config: TeacherConfig) -> str:
    """The key for ``config.base_url``; a remote endpoint without one is a ConfigError, before any request."""
    value = os.environ.get(config.api_key_env) if config.api_key_env else None
    if value:
        return value
    if config.embedded or is_loopback(config.base_url):
        return LOCAL_API_KEY
    if not config.api_key_env:
        raise ConfigError(f"teacher.api_key_env is not set: name the environment variable that holds the API key for {config.base_url}")
    raise ConfigError(
        f"the environment variable {config.api_key_env} (teacher.api_key_env) is not set: "
        f"set it to the API key for {config.base_url}"
    )


def _message(error: Exception) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS] + "..."


def _completion_from_response(response: Any, latency_ms: float) -> Completion:
    """Text, native tool calls and token counts of a chat completion."""
    try:
        message = response.choices[0].message
        tool_calls = None
        if message.tool_calls:
            tool_calls = [{"name": call.function.name, "arguments": call.function.arguments} for call in message.tool_calls]
        usage = response.usage
        return Completion(
            text=message.content,
            tool_calls=tool_calls,
            prompt_tokens=(usage.prompt_tokens or 0) if usage else 0,
            completion_tokens=(usage.completion_tokens or 0) if usage else 0,
            latency_ms=round(latency_ms, 1),
        )
    except (AttributeError, IndexError, TypeError) as error:
        raise InvalidResponse(f"not a chat completion: {error}") from None


class TeacherClient:
    """Sends chat completions through the cache, at most ``concurrency`` at a time.

    ``endpoint_label`` and ``model_label`` identify the teacher in cache keys and records;
    ``connect`` returns the :class:`Endpoint` and is called once, on the first cache miss
    (for the embedded default it starts the local server). ``probe_tools`` (request id and
    its tools) makes the probe check that the endpoint accepts tool schemas (``native``).
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
        self._connect = connect
        self._probe_tools = probe_tools
        self._slots = asyncio.Semaphore(config.concurrency)
        self._connect_lock = asyncio.Lock()
        self._openai: openai.AsyncOpenAI | None = None
        self._endpoint: Endpoint | None = None
        self._connect_error: BaseException | None = None

    async def complete(self, messages: list[dict], *, sample: int, max_tokens: int, tools: list[dict] | None = None) -> Completion:
        """The cached response to these messages, or a fresh one (stored the moment it arrives)."""
        sampling = {"temperature": self.config.temperature, "max_tokens": max_tokens}
        key = cache_key(self.endpoint_label, self.model_label, messages, tools, sampling, sample)
        entry = self.cache.get(key)
        if entry is not None:
            completion = Completion.from_entry(entry)
        else:
            async with self._slots:
                client, endpoint = await self._connected()
                completion = await self._send(client, endpoint.model, messages, tools, max_tokens)
            if completion.ok:
                self.cache.put(key, completion.entry())
        self.usage.add(completion)
        return completion

    async def _send(
        self, client: openai.AsyncOpenAI, model: str, messages: list[dict], tools: list[dict] | None, max_tokens: int
    ) -> Completion:
        # `max_tokens` rather than `max_completion_tokens`: every OpenAI-compatible server knows it.
        body: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": self.config.temperature}
        if tools:
            body["tools"] = tools
        started = time.perf_counter()
        try:
            # `post` is `chat.completions.create` without its per-call conversion of typed
            # parameters (over a millisecond a request: most of the client's CPU at high
            # concurrency); retries, errors and response parsing are the same.
            response = await client.post("/chat/completions", body=body, cast_to=ChatCompletion)
            return _completion_from_response(response, (time.perf_counter() - started) * 1000)
        except (openai.OpenAIError, InvalidResponse) as error:
            latency_ms = round((time.perf_counter() - started) * 1000, 1)
            return Completion(latency_ms=latency_ms, error_kind=error_kind(error), error=_message(error))

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
        completion = await self._send(client, endpoint.model, [{"role": "user", "content": "Reply OK."}], tools, 1)
        self.usage.probes += 1
        self.usage.prompt_tokens += completion.prompt_tokens
        self.usage.completion_tokens += completion.completion_tokens
        if completion.ok:
            log.info("Teacher endpoint %s answers as model %s", where, endpoint.model)
            return
        if tools and completion.error_kind == "bad_request":
            plain = await self._send(client, endpoint.model, [{"role": "user", "content": "Reply OK."}], None, 1)
            self.usage.probes += 1
            if plain.ok:
                raise ConfigError(
                    f"{where} rejected the tool schema of request {request_id}: {completion.error}; "
                    "fix that request's tools, or try teacher.strategy: prompted"
                )
            completion = plain
        raise self._probe_failure(completion, endpoint)

    def _probe_error(self, error: Exception, endpoint: Endpoint) -> ConfigError:
        kind = error_kind(error)
        return self._probe_failure(Completion(error_kind=kind, error=_message(error)), endpoint)

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
        if kind in ("not_found", "bad_request"):
            return ConfigError(f"teacher.model {endpoint.model!r} is not served by {where} ({detail}): fix teacher.model")
        return ConfigError(f"teacher.base_url {where} failed a probe request ({kind}: {detail})")

    async def aclose(self) -> None:
        if self._openai is not None:
            await self._openai.close()

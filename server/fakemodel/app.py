"""The fake model server: an OpenAI-compatible Chat Completions endpoint over real HTTP that answers from a scenario
file (see `scenarios.py`). Deterministic and free: tests, benchmarks and `hyphae serve --demo` use it instead of a
paid model. Routes: POST /v1/chat/completions (and /chat/completions), GET /v1/models (and /models), GET /health."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Self

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.fakemodel.scenarios import DEMO_SCENARIOS, Conversation, ScenarioFile, Script, load, text_of

CREATED = 1_700_000_000  # a fixed timestamp: answers are byte-for-byte repeatable


def _error(status: int, message: str, kind: str, code: str | None, headers: dict[str, str] | None = None) -> Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def _words(text: str) -> int:
    return len(text.split())


class FakeModel:
    """The app plus the record of chat requests it received (`requests`: dicts with method, path, auth, body,
    status). `scenarios` may be replaced while serving; answers follow the new file from the next request."""

    def __init__(self, scenarios: ScenarioFile | str | Path | None = None, *, record: bool = True) -> None:
        self.script = Script(self._file(scenarios))
        self.record = record
        self.requests: list[dict[str, Any]] = []
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/models", self.models, methods=["GET"]),
                Route("/health", self.health, methods=["GET"]),
            ]
        )

    @staticmethod
    def _file(scenarios: ScenarioFile | str | Path | None) -> ScenarioFile:
        if scenarios is None:
            return load(DEMO_SCENARIOS)
        if isinstance(scenarios, ScenarioFile):
            return scenarios
        return load(scenarios)

    @property
    def scenarios(self) -> ScenarioFile:
        return self.script.file

    @scenarios.setter
    def scenarios(self, value: ScenarioFile) -> None:
        self.script = Script(value)

    def _unauthorized(self, request: Request) -> Response | None:
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            return _error(401, "missing API key: send Authorization: Bearer <key>", "invalid_request_error", None)
        expected = self.script.file.api_key
        if expected is not None and key != expected:
            return _error(401, "incorrect API key provided", "invalid_request_error", "invalid_api_key")
        return None

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def models(self, request: Request) -> Response:
        refused = self._unauthorized(request)
        if refused is not None:
            return refused
        data = [
            {"id": name, "object": "model", "created": CREATED, "owned_by": "hyphae"}
            for name in self.script.file.models
        ]
        return JSONResponse({"object": "list", "data": data})

    async def chat(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        entry: dict[str, Any] = {
            "method": request.method,
            "path": request.url.path,
            "auth": request.headers.get("authorization"),
            "idempotency_key": request.headers.get("idempotency-key"),
            "body": body,
        }
        response = await self._answer(request, body)
        entry["status"] = response.status_code
        if self.record:
            self.requests.append(entry)
        return response

    async def _answer(self, request: Request, body: Any) -> Response:
        refused = self._unauthorized(request)
        if refused is not None:
            return refused
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
            return _error(400, "the body must be JSON with a non-empty `messages` list", "invalid_request_error", None)
        messages = body["messages"]
        if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
            return _error(400, "every message needs a `role`", "invalid_request_error", None)
        if body.get("stream"):
            return _error(400, "the fake model does not stream: send stream=false", "invalid_request_error", None)
        tools = body.get("tools") or []
        declared = frozenset(
            str(t["function"]["name"])
            for t in tools
            if isinstance(t, dict) and isinstance(t.get("function"), dict) and t["function"].get("name")
        )
        conversation = Conversation(messages, declared, request.headers.get("idempotency-key", ""))
        answer = self.script.answer(conversation)
        if answer is None:
            names = ", ".join(s.name for s in self.script.file.scenarios) or "none"
            return _error(
                400,
                f"no scenario matches this conversation (scenarios: {names}); add one or a `default` to the file",
                "invalid_request_error",
                "no_scenario_matched",
            )
        if answer.delay_ms:
            await asyncio.sleep(answer.delay_ms / 1000)
        if answer.error is not None:
            headers = {}
            if answer.error.retry_after is not None:
                headers["retry-after"] = f"{answer.error.retry_after:g}"
            kind = "rate_limit_error" if answer.error.status == 429 else "api_error"
            return _error(answer.error.status, answer.error.message, kind, "scripted_error", headers)
        k = conversation.assistant_turns
        message: dict[str, Any] = {"role": "assistant", "content": answer.content}
        completion_text = answer.content or ""
        if answer.tool_calls:
            message["tool_calls"] = [
                {
                    "id": f"call_{k}_{i}",
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)},
                }
                for i, (name, arguments) in enumerate(answer.tool_calls)
            ]
            completion_text += " ".join(call["function"]["arguments"] for call in message["tool_calls"])
        prompt_tokens = sum(_words(text_of(m.get("content"))) for m in messages)
        completion_tokens = _words(completion_text)
        return JSONResponse(
            {
                "id": f"chatcmpl-{conversation.fingerprint[:24]}",
                "object": "chat.completion",
                "created": CREATED,
                "model": str(body.get("model") or self.script.file.models[0]),
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "finish_reason": "tool_calls" if answer.tool_calls else "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
                "system_fingerprint": f"hyphae-fake:{answer.scenario}",
            }
        )


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the process that embeds it owns them."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen for the fake model on {host}:{port} ({exc.strerror})") from None
    sock.listen(512)
    sock.setblocking(False)
    return sock


class FakeModelServer(FakeModel):
    """The fake model listening on host:port (0: a free port). Use `async with server.running()` inside an event
    loop, or `with server:` (a background thread) from synchronous code such as tests."""

    def __init__(
        self,
        scenarios: ScenarioFile | str | Path | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        record: bool = True,
    ) -> None:
        super().__init__(scenarios, record=record)
        self.host = host
        self.port = port
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL (ending in /v1) to give a client."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Self]:
        sock = bind(self.host, self.port)
        try:
            self.port = sock.getsockname()[1]
            config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off")
            server = _QuietServer(config)
            serving = asyncio.create_task(server.serve(sockets=[sock]))
            while not server.started:
                if serving.done():
                    serving.result()
                    raise OSError("the fake model server stopped while starting")
                await asyncio.sleep(0.01)
            try:
                yield self
            finally:
                server.should_exit = True
                await serving
        finally:
            sock.close()

    def start(self) -> Self:
        """Serve from a background thread; returns once the port accepts connections."""
        ready = threading.Event()
        failures: list[BaseException] = []

        async def main() -> None:
            try:
                async with self.running():
                    self._loop = asyncio.get_running_loop()
                    stop = self._stop = asyncio.Event()
                    ready.set()
                    await stop.wait()
            except BaseException as exc:
                failures.append(exc)
                ready.set()

        self._thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True, name="fake-model")
        self._thread.start()
        ready.wait(30)
        if failures or not ready.is_set():
            raise RuntimeError("the fake model server did not start") from (failures[0] if failures else None)
        return self

    def stop(self) -> None:
        if self._thread is None or self._loop is None or self._stop is None:
            return
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

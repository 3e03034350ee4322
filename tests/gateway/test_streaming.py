"""Server-streaming RPCs over REST (SSE and NDJSON, Last-Event-ID resume), on a throwaway service added to the
descriptor pool so the contract itself stays clean."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import grpc
import httpx
import pytest
import uvicorn
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import ServiceDescriptor
from hyphae.api.v1 import options_pb2

from cli.process import QuietServer
from gateway.app import create_app

PACKAGE = "hyphae_stream_test.v1"


def tick_service() -> ServiceDescriptor:
    pool = descriptor_pool.Default()
    try:
        return pool.FindServiceByName(f"{PACKAGE}.TickService")
    except KeyError:
        pass
    file = descriptor_pb2.FileDescriptorProto(
        name="hyphae_stream_test/v1/ticks.proto",
        package=PACKAGE,
        syntax="proto3",
        dependency=["google/api/annotations.proto", "hyphae/api/v1/options.proto"],
    )
    request = file.message_type.add(name="WatchTicksRequest")
    request.field.add(
        name="after_sequence",
        number=1,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    )
    request.field.add(
        name="count",
        number=2,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_INT32,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    )
    request.field.add(
        name="fail",
        number=3,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    )
    response = file.message_type.add(name="WatchTicksResponse")
    response.field.add(
        name="sequence",
        number=1,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    )
    response.field.add(
        name="text",
        number=2,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    )
    service = file.service.add(name="TickService")
    method = service.method.add(
        name="WatchTicks",
        input_type=f".{PACKAGE}.WatchTicksRequest",
        output_type=f".{PACKAGE}.WatchTicksResponse",
        server_streaming=True,
    )
    method.options.Extensions[annotations_pb2.http].get = "/ticks"
    rule = method.options.Extensions[options_pb2.rule]
    rule.access = options_pb2.ACCESS_PUBLIC
    rule.resume_field = "after_sequence"
    rule.sequence_field = "sequence"
    pool.Add(file)
    return pool.FindServiceByName(f"{PACKAGE}.TickService")


@contextlib.contextmanager
def tick_server() -> Iterator[tuple[str, Callable[[], None]]]:
    """The gateway over a gRPC TickService, on one event loop in a thread, as `hyphae serve` runs them: its URL and
    a function that shuts it down as Ctrl-C does (called again on exit)."""
    service = tick_service()
    request_class = message_factory.GetMessageClass(service.methods_by_name["WatchTicks"].input_type)
    response_class = message_factory.GetMessageClass(service.methods_by_name["WatchTicks"].output_type)

    async def watch(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        if request.fail == "early":
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such ticker")
        for sequence in range(request.after_sequence + 1, request.count + 1):
            yield response_class(sequence=sequence, text=f"tick {sequence}")
        if request.fail == "late":
            await context.abort(grpc.StatusCode.INTERNAL, "ticker broke")
        if request.fail == "never":  # a live feed with nothing more to say
            await asyncio.Event().wait()

    ready = threading.Event()
    state: dict[str, Any] = {}

    async def main() -> None:
        server = grpc.aio.server()
        handler = grpc.unary_stream_rpc_method_handler(
            watch, request_deserializer=request_class.FromString, response_serializer=response_class.SerializeToString
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service.full_name, {"WatchTicks": handler}),)
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        app = create_app(f"127.0.0.1:{port}", services=[service])
        http = QuietServer(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"), app)
        task = asyncio.create_task(http.serve())
        while not http.started:
            await asyncio.sleep(0.01)
        state["url"] = f"http://127.0.0.1:{http.servers[0].sockets[0].getsockname()[1]}"
        state["stop"] = asyncio.Event()
        state["loop"] = asyncio.get_running_loop()
        ready.set()
        await state["stop"].wait()
        http.should_exit = True
        await task
        await server.stop(None)

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(30)

    def shut_down() -> None:
        state["loop"].call_soon_threadsafe(state["stop"].set)
        thread.join(10)

    try:
        yield str(state["url"]), shut_down
    finally:
        if thread.is_alive():
            shut_down()


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with tick_server() as (url, _):
        yield url


def test_sse_frames_carry_the_sequence_as_id(base_url: str) -> None:
    response = httpx.get(f"{base_url}/ticks", params={"count": 3})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text == "".join(f'id: {i}\ndata: {{"sequence":{i},"text":"tick {i}"}}\n\n' for i in (1, 2, 3))


def test_last_event_id_resumes_after_the_last_seen_event(base_url: str) -> None:
    response = httpx.get(f"{base_url}/ticks", params={"count": 4}, headers={"Last-Event-ID": "2"})
    assert [line for line in response.text.splitlines() if line.startswith("id:")] == ["id: 3", "id: 4"]


def test_ndjson_when_asked(base_url: str) -> None:
    response = httpx.get(f"{base_url}/ticks", params={"count": 2}, headers={"Accept": "application/x-ndjson"})
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert response.text == '{"sequence":1,"text":"tick 1"}\n{"sequence":2,"text":"tick 2"}\n'


def test_error_before_the_first_event_is_a_plain_error_response(base_url: str) -> None:
    response = httpx.get(f"{base_url}/ticks", params={"count": 2, "fail": "early"})
    assert response.status_code == 404
    assert response.json()["message"] == "no such ticker"


def test_error_after_events_ends_the_stream_with_an_error_event(base_url: str) -> None:
    sse = httpx.get(f"{base_url}/ticks", params={"count": 1, "fail": "late"})
    assert sse.text.endswith('event: error\ndata: {"error":"Internal Server Error","message":"ticker broke"}\n\n')
    ndjson = httpx.get(
        f"{base_url}/ticks", params={"count": 1, "fail": "late"}, headers={"Accept": "application/x-ndjson"}
    )
    assert ndjson.text.splitlines()[-1] == '{"error":{"error":"Internal Server Error","message":"ticker broke"}}'


def test_an_empty_stream_is_an_empty_body(base_url: str) -> None:
    response = httpx.get(f"{base_url}/ticks", params={"count": 0})
    assert (response.status_code, response.text) == (200, "")


def test_open_streams_end_cleanly_when_the_server_shuts_down() -> None:
    with (
        tick_server() as (url, shut_down),
        httpx.stream("GET", f"{url}/ticks", params={"count": 1, "fail": "never"}, timeout=30) as response,
    ):
        lines = response.iter_lines()
        assert [next(lines), next(lines)] == ["id: 1", 'data: {"sequence":1,"text":"tick 1"}']
        threading.Thread(target=shut_down).start()
        # The body ends with its terminating chunk (a stream cut mid-response raises RemoteProtocolError here);
        # the client reconnects elsewhere with Last-Event-ID: 1.
        assert [line for line in lines if line] == []

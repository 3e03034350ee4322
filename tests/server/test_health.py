from __future__ import annotations

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import ServerInfo


def test_health_answers_without_credentials(anonymous: httpx.Client) -> None:
    response = anonymous.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.headers["x-request-id"]


def test_readiness_checks_postgres(anonymous: httpx.Client) -> None:
    response = anonymous.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"postgres": "ok"}}


def test_request_id_is_echoed(anonymous: httpx.Client) -> None:
    assert anonymous.get("/health", headers={"X-Request-Id": "abc-123"}).headers["x-request-id"] == "abc-123"


def test_grpc_health_service_reports_serving(server: ServerInfo) -> None:
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "hyphae.workflows.v1.WorkflowService"):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_grpc_reflection_lists_the_services(server: ServerInfo) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
        )
        names = {s.name for reply in replies for s in reply.list_services_response.service}
    assert {"hyphae.workflows.v1.WorkflowService", "grpc.health.v1.Health"} <= names


def test_openapi_document_and_docs_page_are_served(anonymous: httpx.Client) -> None:
    document = anonymous.get("/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    assert "/workflows/{id}" in document["paths"]
    page = anonymous.get("/docs")
    assert page.status_code == 200
    assert "/workflows/{id}" in page.text


def test_unknown_grpc_method_is_unimplemented(server: ServerInfo) -> None:
    with grpc.insecure_channel(server.grpc_target) as channel:
        call = channel.unary_unary(
            "/hyphae.workflows.v1.WorkflowService/NoSuchMethod",
            request_serializer=lambda raw: raw,
            response_deserializer=lambda raw: raw,
        )
        try:
            call(b"", timeout=10)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.UNIMPLEMENTED
        else:
            raise AssertionError("expected UNIMPLEMENTED")

"""Hand-written REST routes, for the few wire shapes proto cannot express (DESIGN "Gateway").

The route itself still comes from the method's `google.api.http` binding (so the router, the collision check and
/openapi.json know it); an override only replaces how the HTTP body is read and the answer written. Each is one
small module: `upload` (multipart/form-data -> a client stream) and `download` (a server stream -> raw bytes).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

if TYPE_CHECKING:
    from gateway.app import Gateway
    from gateway.bindings import Binding

Handler = Callable[
    ["Gateway", "Binding", Request, dict[str, str], list[tuple[str, str]], dict[str, str]], Awaitable[Response]
]


@dataclass(frozen=True)
class Override:
    handle: Handler
    # OpenAPI: the request body object (None: the binding has none) and the success response's `content`.
    request_body: dict[str, Any] | None
    success_content: dict[str, Any] | None


def overrides() -> dict[str, Override]:
    """Full gRPC method name -> its override."""
    from gateway.overrides import download, upload

    return {**upload.OVERRIDES, **download.OVERRIDES}

"""Typed Python client for Hyphae over gRPC (generated stubs in `hyphae.*`)."""

from hyphae_client.client import (
    DEFAULT_TARGET,
    ConfigEntry,
    Health,
    HyphaeClient,
    HyphaeError,
    Workflow,
    from_json,
    to_json,
)

__all__ = [
    "DEFAULT_TARGET",
    "ConfigEntry",
    "Health",
    "HyphaeClient",
    "HyphaeError",
    "Workflow",
    "from_json",
    "to_json",
]

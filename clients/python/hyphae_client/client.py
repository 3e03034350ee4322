"""A small synchronous Python client for Hyphae over gRPC, built on the generated stubs.

Free-form JSON fields travel as `hyphae.api.v1.Json {raw}`: `to_json` / `from_json` convert them without losing
exactness (`json.loads` keeps integers exact, dicts keep key order).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar, cast

import grpc
from google.protobuf import descriptor as _descriptor
from google.protobuf.message import Message
from hyphae.actions.v1 import action_pb2, action_service_pb2, action_service_pb2_grpc
from hyphae.api.v1 import json_pb2, options_pb2
from hyphae.orgs.v1 import org_config_pb2, org_config_service_pb2, org_config_service_pb2_grpc
from hyphae.system.v1 import system_service_pb2, system_service_pb2_grpc
from hyphae.workflows.v1 import workflow_pb2, workflow_service_pb2, workflow_service_pb2_grpc

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

DEFAULT_TARGET = "127.0.0.1:50051"
_MAX_MESSAGE = 64 * 1024 * 1024

_Req = TypeVar("_Req", bound=Message)
_Resp = TypeVar("_Resp", bound=Message)


# --------------------------------------------------------------------------- JSON values


def to_json(value: Any) -> json_pb2.Json:
    """Any JSON-serialisable value as `Json {raw}` (compact, key order kept, no NaN/Infinity)."""
    return json_pb2.Json(raw=json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False))


def from_json(message: json_pb2.Json | None) -> Any:
    """The parsed value of a `Json {raw}`; None when the field is unset or empty."""
    if message is None or message.raw == "":
        return None
    return json.loads(message.raw)


# --------------------------------------------------------------------------- results and errors


class HyphaeError(Exception):
    """A failed call: the gRPC status code, its message and the server's `hyphae-reason` trailer (may be "")."""

    def __init__(self, code: grpc.StatusCode, message: str, reason: str = "") -> None:
        super().__init__(f"{code.name}: {message}" + (f" ({reason})" if reason else ""))
        self.code = code
        self.message = message
        self.reason = reason

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> HyphaeError:
        if not isinstance(error, grpc.Call):
            return cls(grpc.StatusCode.UNKNOWN, str(error), "")
        code = error.code() or grpc.StatusCode.UNKNOWN
        reason = ""
        for key, value in error.trailing_metadata() or ():
            if key == "hyphae-reason":
                reason = value.decode() if isinstance(value, bytes) else str(value)
        return cls(code, error.details() or "", reason)


@dataclass(frozen=True)
class Workflow:
    id: str
    name: str
    definition: Any
    version: int
    description: str = ""

    @classmethod
    def from_proto(cls, message: workflow_pb2.Workflow) -> Workflow:
        return cls(
            id=message.id,
            name=message.name,
            definition=from_json(message.definition),
            version=message.version,
            description=message.description,
        )


@dataclass(frozen=True)
class ConfigEntry:
    key: str
    value: Any
    redacted: bool

    @classmethod
    def from_proto(cls, message: org_config_pb2.OrgConfigEntry) -> ConfigEntry:
        return cls(key=message.key, value=from_json(message.value), redacted=message.redacted)


@dataclass(frozen=True)
class Health:
    status: str
    version: str


# --------------------------------------------------------------------------- dict -> message


def _field_names(field: _descriptor.FieldDescriptor) -> set[str]:
    names = {field.name, field.json_name}
    wire: str = field.GetOptions().Extensions[options_pb2.wire_name]
    if wire:
        names.add(wire)
    return names


def _enum_number(field: _descriptor.FieldDescriptor, value: Any) -> int:
    enum = field.enum_type
    assert enum is not None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    for item in enum.values:
        literal: str = item.GetOptions().Extensions[options_pb2.value_name]
        if value in (item.name, literal):
            return int(item.number)
    raise ValueError(f"{field.name}: unknown {enum.name} value {value!r}")


def _convert(field: _descriptor.FieldDescriptor, value: Any) -> Any:
    if field.type == _descriptor.FieldDescriptor.TYPE_ENUM:
        return _enum_number(field, value)
    return value


def _fill(message: Message, data: Mapping[str, Any]) -> None:
    """Sets `message` from a plain dict: proto, JSON or wire field names; enums by name, value_name or number;
    `Json` fields from any JSON value; nested messages from dicts."""
    by_name: dict[str, _descriptor.FieldDescriptor] = {}
    fields: list[_descriptor.FieldDescriptor] = list(cast(_descriptor.Descriptor, message.DESCRIPTOR).fields)
    for field in fields:
        for name in _field_names(field):
            by_name.setdefault(name, field)
    for key, value in data.items():
        found = by_name.get(key)
        if found is None:
            raise ValueError(f"{message.DESCRIPTOR.name} has no field {key!r}")
        field = found
        if value is None:
            continue
        target = field.message_type
        if target is not None and target.GetOptions().map_entry:
            container = getattr(message, field.name)
            value_field = target.fields_by_name["value"]
            for k, v in value.items():
                if value_field.message_type is not None:
                    _fill(container[k], v)
                else:
                    container[k] = _convert(value_field, v)
        elif field.is_repeated:
            container = getattr(message, field.name)
            for item in value:
                if target is not None:
                    _fill(container.add(), item)
                else:
                    container.append(_convert(field, item))
        elif target is not None and target.full_name == json_pb2.Json.DESCRIPTOR.full_name:
            getattr(message, field.name).CopyFrom(value if isinstance(value, json_pb2.Json) else to_json(value))
        elif target is not None:
            if isinstance(value, Message):
                getattr(message, field.name).CopyFrom(value)
            else:
                _fill(getattr(message, field.name), value)
        else:
            setattr(message, field.name, _convert(field, value))


def _action(action: Mapping[str, Any] | action_pb2.Action) -> action_pb2.Action:
    if isinstance(action, action_pb2.Action):
        return action
    message = action_pb2.Action()
    _fill(message, action)
    return message


# --------------------------------------------------------------------------- the client


class HyphaeClient:
    """Synchronous gRPC client. Use as a context manager, or call `close()`.

    `api_key` is sent as `authorization: Bearer <key>`, `org_id` as `x-org-id` (direct engine mode)."""

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        api_key: str | None = None,
        org_id: str | None = None,
        timeout: float = 30,
    ) -> None:
        self.target = target
        self.timeout = timeout
        metadata: list[tuple[str, str]] = []
        if api_key:
            metadata.append(("authorization", f"Bearer {api_key}"))
        if org_id:
            metadata.append(("x-org-id", org_id))
        self._metadata: tuple[tuple[str, str], ...] = tuple(metadata)
        self._channel = grpc.insecure_channel(
            target,
            options=[("grpc.max_receive_message_length", _MAX_MESSAGE), ("grpc.max_send_message_length", _MAX_MESSAGE)],
        )
        self._workflows = workflow_service_pb2_grpc.WorkflowServiceStub(self._channel)
        self._actions = action_service_pb2_grpc.ActionServiceStub(self._channel)
        self._org_config = org_config_service_pb2_grpc.OrgConfigServiceStub(self._channel)
        self._system = system_service_pb2_grpc.SystemServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _call(self, method: grpc.UnaryUnaryMultiCallable[_Req, _Resp], request: _Req) -> _Resp:
        try:
            return method(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as error:
            raise HyphaeError.from_rpc_error(error) from None

    # workflows

    def list_workflows(self, page_size: int = 50, page_token: str = "") -> tuple[list[Workflow], str]:
        """One page of workflows (newest first) and the next page token ("" on the last page)."""
        response = self._call(
            self._workflows.ListWorkflows,
            workflow_service_pb2.ListWorkflowsRequest(page_size=page_size, page_token=page_token),
        )
        return [Workflow.from_proto(w) for w in response.workflows], response.next_page_token

    def iter_workflows(self, page_size: int = 100) -> Iterator[Workflow]:
        """Every workflow of the org, page after page."""
        token = ""
        while True:
            page, token = self.list_workflows(page_size=page_size, page_token=token)
            yield from page
            if not token:
                return

    def get_workflow(self, workflow_id: str) -> Workflow:
        response = self._call(self._workflows.GetWorkflow, workflow_service_pb2.GetWorkflowRequest(id=workflow_id))
        return Workflow.from_proto(response.workflow)

    def create_workflow(self, name: str, definition: Any, description: str = "") -> Workflow:
        workflow = workflow_pb2.Workflow(name=name, definition=to_json(definition), description=description)
        response = self._call(
            self._workflows.CreateWorkflow, workflow_service_pb2.CreateWorkflowRequest(workflow=workflow)
        )
        return Workflow.from_proto(response.workflow)

    def update_workflow(self, workflow_id: str, *, name: str, definition: Any, description: str = "") -> Workflow:
        """Replaces the workflow's name, definition and description (the version grows by one)."""
        workflow = workflow_pb2.Workflow(name=name, definition=to_json(definition), description=description)
        response = self._call(
            self._workflows.UpdateWorkflow,
            workflow_service_pb2.UpdateWorkflowRequest(id=workflow_id, workflow=workflow),
        )
        return Workflow.from_proto(response.workflow)

    def delete_workflow(self, workflow_id: str) -> None:
        self._call(self._workflows.DeleteWorkflow, workflow_service_pb2.DeleteWorkflowRequest(id=workflow_id))

    # actions

    def create_action(self, action: Mapping[str, Any] | action_pb2.Action) -> action_pb2.Action:
        """Registers an action, given as a proto or a dict in the REST shape
        (e.g. `{"action_name": "notify", "kind": "http", "url": ..., "body": {...}}`)."""
        response = self._call(
            self._actions.CreateAction, action_service_pb2.CreateActionRequest(action=_action(action))
        )
        return response.action

    def list_actions(self, page_size: int = 100) -> list[action_pb2.Action]:
        """Every action of the org, newest first."""
        actions: list[action_pb2.Action] = []
        token = ""
        while True:
            response = self._call(
                self._actions.ListActions, action_service_pb2.ListActionsRequest(page_size=page_size, page_token=token)
            )
            actions.extend(response.actions)
            token = response.next_page_token
            if not token:
                return actions

    # org config

    def set_org_config(self, key: str, value: Any) -> ConfigEntry:
        """Stores or replaces one key; a secret comes back redacted."""
        response = self._call(
            self._org_config.SetOrgConfig, org_config_service_pb2.SetOrgConfigRequest(key=key, value=to_json(value))
        )
        return ConfigEntry.from_proto(response.entry)

    def list_org_config(self, page_size: int = 100) -> list[ConfigEntry]:
        """Every entry, ordered by key, secrets redacted."""
        entries: list[ConfigEntry] = []
        token = ""
        while True:
            response = self._call(
                self._org_config.ListOrgConfig,
                org_config_service_pb2.ListOrgConfigRequest(page_size=page_size, page_token=token),
            )
            entries.extend(ConfigEntry.from_proto(e) for e in response.entries)
            token = response.next_page_token
            if not token:
                return entries

    # system

    def health(self) -> Health:
        response = self._call(self._system.GetHealth, system_service_pb2.GetHealthRequest())
        return Health(status=response.status, version=response.version)

"""A small synchronous Python client for Hyphae over gRPC, built on the generated stubs.

Free-form JSON fields travel as `hyphae.api.v1.Json {raw}`: `to_json` / `from_json` convert them without losing
exactness (`json.loads` keeps integers exact, dicts keep key order).
"""

from __future__ import annotations

import dataclasses
import json
import os
import urllib.parse
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar, cast

import grpc
from google.protobuf import descriptor as _descriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from hyphae.actions.v1 import action_pb2, action_service_pb2, action_service_pb2_grpc
from hyphae.api.v1 import json_pb2, options_pb2
from hyphae.approvals.v1 import approval_service_pb2, approval_service_pb2_grpc, interrupt_pb2
from hyphae.documents.v1 import document_pb2, document_service_pb2, document_service_pb2_grpc
from hyphae.orgs.v1 import org_config_pb2, org_config_service_pb2, org_config_service_pb2_grpc
from hyphae.runs.v1 import run_pb2, run_service_pb2, run_service_pb2_grpc
from hyphae.system.v1 import system_service_pb2, system_service_pb2_grpc
from hyphae.tables.v1 import table_pb2, table_service_pb2, table_service_pb2_grpc
from hyphae.workflows.v1 import workflow_pb2, workflow_service_pb2, workflow_service_pb2_grpc

__all__ = [
    "CHUNK_BYTES",
    "DEFAULT_TARGET",
    "FINAL_STATUSES",
    "ConfigEntry",
    "Document",
    "Download",
    "Health",
    "HyphaeClient",
    "HyphaeError",
    "Interrupt",
    "RowPage",
    "Run",
    "RunEvent",
    "RunStep",
    "Table",
    "Workflow",
    "from_json",
    "to_json",
]

DEFAULT_TARGET = "127.0.0.1:50051"
_MAX_MESSAGE = 64 * 1024 * 1024
CHUNK_BYTES = 1024 * 1024  # the largest upload `chunk` the server takes
FINAL_STATUSES = frozenset({"completed", "failed", "condition_not_met", "cancelled"})

Progress = Callable[[int], None]  # called with the bytes just sent or received

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
    """A failed call: the gRPC status code, its message and the server's `hyphae-reason` and `hyphae-field`
    trailers (may be "": the field is the request path the message is about, e.g. `rows[3].amount`)."""

    def __init__(self, code: grpc.StatusCode, message: str, reason: str = "", field: str = "") -> None:
        super().__init__(f"{code.name}: {message}" + (f" ({reason})" if reason else ""))
        self.code = code
        self.message = message
        self.reason = reason
        self.field = field

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> HyphaeError:
        if not isinstance(error, grpc.Call):
            return cls(grpc.StatusCode.UNKNOWN, str(error), "")
        code = error.code() or grpc.StatusCode.UNKNOWN
        trailers: dict[str, str] = {}
        for key, value in error.trailing_metadata() or ():
            if key in ("hyphae-reason", "hyphae-field"):
                trailers[key] = value.decode() if isinstance(value, bytes) else str(value)
        field = urllib.parse.unquote(trailers.get("hyphae-field", ""))  # percent-encoded UTF-8 (metadata is ASCII)
        return cls(code, error.details() or "", trailers.get("hyphae-reason", ""), field)


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


def _value_name(enum: Any, number: int) -> str:
    """An enum value as the API spells it (`completed`), from its `value_name` option; "" when unspecified."""
    descriptor = cast(_descriptor.EnumDescriptor, enum.DESCRIPTOR)
    value = descriptor.values_by_number.get(number)
    if value is None or number == 0:
        return ""
    name: str = value.GetOptions().Extensions[options_pb2.value_name]
    return name or value.name


def _time(message: Message, name: str) -> datetime | None:
    if not message.HasField(name):
        return None
    stamp: Timestamp = getattr(message, name)
    return stamp.ToDatetime(tzinfo=UTC)


@dataclass(frozen=True)
class RunStep:
    index: int
    type: str
    status: str
    output: Any
    error: str


@dataclass(frozen=True)
class Run:
    """A run's state: status is `running`, `paused`, or one of FINAL_STATUSES."""

    run_id: str
    workflow_id: str
    status: str
    output: Any = None
    error: str = ""
    current_step: int = 0
    steps: list[RunStep] = dataclasses.field(default_factory=list)

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES

    @classmethod
    def from_proto(cls, message: run_pb2.Run) -> Run:
        return cls(
            run_id=message.run_id,
            workflow_id=message.workflow_id,
            status=_value_name(run_pb2.RunStatus, message.status),
            output=from_json(message.output),
            error=message.error,
            current_step=message.current_step,
            steps=[
                RunStep(s.index, s.type, _value_name(run_pb2.StepStatus, s.status), from_json(s.output), s.error)
                for s in message.steps
            ],
        )


@dataclass(frozen=True)
class RunEvent:
    """One event of a run: `type` such as workflow_run_started, step_completed, pbot_approval_requested,
    workflow_run_completed; `data` its JSON payload (a step's events carry its `index`)."""

    run_id: str
    sequence: int
    type: str
    data: Any
    created_at: datetime | None

    @classmethod
    def from_proto(cls, message: run_pb2.RunEvent) -> RunEvent:
        return cls(
            run_id=message.run_id,
            sequence=message.sequence,
            type=message.type,
            data=from_json(message.data),
            created_at=_time(message, "created_at"),
        )


@dataclass(frozen=True)
class Interrupt:
    """What a paused run waits for, and how to answer it (`answer_method` "" when nobody answers: child_run)."""

    run_id: str
    step_index: int
    kind: str
    status: str
    question: str
    payload: Any
    answer_method: str
    answer_path: str

    @classmethod
    def from_proto(cls, message: interrupt_pb2.PendingInterrupt) -> Interrupt:
        return cls(
            run_id=message.run_id,
            step_index=message.step_index,
            kind=_value_name(interrupt_pb2.InterruptKind, message.kind),
            status=_value_name(interrupt_pb2.InterruptStatus, message.status),
            question=message.question,
            payload=from_json(message.payload),
            answer_method=message.answer_method,
            answer_path=message.answer_path,
        )


@dataclass(frozen=True)
class Document:
    id: str
    name: str
    filename: str
    content_type: str
    size_bytes: int
    checksum_sha256: str
    current_version: int
    tags: list[str]

    @classmethod
    def from_proto(cls, message: document_pb2.Document) -> Document:
        return cls(
            id=message.id,
            name=message.name,
            filename=message.filename,
            content_type=message.content_type,
            size_bytes=message.size_bytes,
            checksum_sha256=message.checksum_sha256,
            current_version=message.current_version,
            tags=list(message.tags),
        )


@dataclass(frozen=True)
class Download:
    """What `download_document` wrote: where, and the server's description of the file."""

    path: Path
    filename: str
    content_type: str
    size_bytes: int
    checksum_sha256: str
    version: int


@dataclass(frozen=True)
class Table:
    id: str
    name: str
    fields: list[dict[str, Any]]  # {"name", "type", "required"[, "maxLength"]}

    @classmethod
    def from_proto(cls, message: table_pb2.CustomTable) -> Table:
        fields: list[dict[str, Any]] = []
        for f in message.fields:
            spec: dict[str, Any] = {"name": f.name, "type": f.type, "required": f.required}
            if f.HasField("max_length"):
                spec["maxLength"] = f.max_length
            fields.append(spec)
        return cls(id=message.id, name=message.name, fields=fields)


@dataclass(frozen=True)
class RowPage:
    rows: list[dict[str, Any]]
    total: int
    next_page_token: str


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
        self._runs = run_service_pb2_grpc.RunServiceStub(self._channel)
        self._approvals = approval_service_pb2_grpc.ApprovalServiceStub(self._channel)
        self._documents = document_service_pb2_grpc.DocumentServiceStub(self._channel)
        self._tables = table_service_pb2_grpc.TableServiceStub(self._channel)

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

    # runs

    def execute_workflow(self, workflow_id: str, input: Any = None) -> str:
        """Starts a run of the workflow with `input` (a JSON object; default {}) and returns its run id at once."""
        response = self._call(
            self._runs.ExecuteWorkflow,
            run_service_pb2.ExecuteWorkflowRequest(
                workflow_id=workflow_id, input=to_json({} if input is None else input)
            ),
        )
        return response.run_id

    def get_run(self, run_id: str) -> Run:
        """The run's status, output, error and steps."""
        response = self._call(self._runs.GetRunStatus, run_service_pb2.GetRunStatusRequest(run_id=run_id))
        return Run.from_proto(response.run)

    def watch_run(self, run_id: str, after_sequence: int = 0) -> Generator[RunEvent, None, None]:
        """The run's events after `after_sequence`, then live ones as they happen. The server ends the stream after
        the run's final event (completed, failed, condition_not_met, cancelled); a paused run keeps it open, so a
        caller that should not wait for a person stops iterating (closing the generator cancels the call)."""
        call = self._runs.WatchRun(
            run_service_pb2.WatchRunRequest(run_id=run_id, after_sequence=after_sequence), metadata=self._metadata
        )
        try:
            for message in call:
                yield RunEvent.from_proto(message.event)
        except grpc.RpcError as error:
            raise HyphaeError.from_rpc_error(error) from None
        finally:
            call.cancel()  # type: ignore[no-untyped-call]  # no-op once the stream has ended

    def cancel_run(self, run_id: str, reason: str = "") -> Run:
        response = self._call(self._runs.CancelRun, run_service_pb2.CancelRunRequest(run_id=run_id, reason=reason))
        return Run.from_proto(response.run)

    def list_interrupts(self, run_id: str = "", *, status: str = "pending") -> list[Interrupt]:
        """What runs of the org (or `run_id`) wait for, oldest first, each with how to answer it."""
        found: list[Interrupt] = []
        token = ""
        while True:
            request = approval_service_pb2.ListInterruptsRequest(run_id=run_id, page_size=100, page_token=token)
            _fill(request, {"status": status})
            response = self._call(self._approvals.ListInterrupts, request)
            found.extend(Interrupt.from_proto(i) for i in response.interrupts)
            token = response.next_page_token
            if not token:
                return found

    def submit_approval(self, run_id: str, step_index: int, *, approved: bool, comment: str = "") -> None:
        """Answers a PbotApproval step (a rejection resumes the run too, with @__approved false)."""
        self._call(
            self._approvals.SubmitApproval,
            approval_service_pb2.SubmitApprovalRequest(
                run_id=run_id, step_id=str(step_index), approved=approved, comment=comment
            ),
        )

    # documents

    def upload_document(
        self,
        path: str | os.PathLike[str],
        *,
        name: str | None = None,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        ttl_days: int | None = None,
        progress: Progress | None = None,
    ) -> tuple[Document, bool]:
        """Uploads one file as a client stream (the fields, the file's name, then chunks of at most 1 MiB read as
        they are sent). Returns the document and whether the org already had these bytes (`deduplicated`: the
        existing document is answered, nothing new stored). `progress(n)` is called with each chunk's size."""
        source = Path(path)
        fields = document_pb2.UploadFields()
        if name is not None:
            fields.name = name
        if tags is not None:
            fields.tags.CopyFrom(to_json(list(tags)))
        if metadata is not None:
            fields.metadata.CopyFrom(to_json(dict(metadata)))
        if ttl_days is not None:
            fields.ttl_days = ttl_days
        with source.open("rb") as file:

            def messages() -> Iterator[document_service_pb2.UploadDocumentRequest]:
                yield document_service_pb2.UploadDocumentRequest(fields=fields)
                yield document_service_pb2.UploadDocumentRequest(file=document_pb2.UploadFile(filename=source.name))
                while chunk := file.read(CHUNK_BYTES):
                    yield document_service_pb2.UploadDocumentRequest(chunk=chunk)
                    if progress is not None:
                        progress(len(chunk))

            try:  # no deadline: a large file on a slow link takes what it takes
                response = self._documents.UploadDocument(messages(), metadata=self._metadata)
            except grpc.RpcError as error:
                raise HyphaeError.from_rpc_error(error) from None
        return Document.from_proto(response.document), response.deduplicated

    def get_document(self, document_id: str) -> Document:
        response = self._call(self._documents.GetDocument, document_service_pb2.GetDocumentRequest(id=document_id))
        return Document.from_proto(response.document)

    def download_document(
        self,
        document_id: str,
        path: str | os.PathLike[str] | None = None,
        *,
        version: int = 0,
        progress: Progress | None = None,
        on_info: Callable[[Download], None] | None = None,
    ) -> Download:
        """Streams the current (or `version`) version into `path` (default: the stored file name in the current
        directory), through `<path>.part` renamed at the end, so `path` never holds a partial file. `on_info` is
        called once the server has described the file (its size, e.g. for a progress bar), `progress(n)` with each
        chunk's size."""
        call = self._documents.DownloadDocument(
            document_service_pb2.DownloadDocumentRequest(id=document_id, version=version), metadata=self._metadata
        )
        target: Path | None = None
        partial: Path | None = None
        try:
            messages = iter(call)
            first = next(messages, None)
            if first is None or first.WhichOneof("part") != "info":
                raise HyphaeError(grpc.StatusCode.INTERNAL, "the download did not start with the file's description")
            info = first.info
            target = Path(path) if path is not None else Path(Path(info.filename).name or document_id)
            download = Download(
                path=target,
                filename=info.filename,
                content_type=info.content_type,
                size_bytes=info.size_bytes,
                checksum_sha256=info.checksum_sha256,
                version=info.version,
            )
            if on_info is not None:
                on_info(download)
            partial = target.with_name(target.name + ".part")
            with partial.open("wb") as out:
                for message in messages:
                    out.write(message.chunk)
                    if progress is not None:
                        progress(len(message.chunk))
            partial.replace(target)
            partial = None
            return download
        except grpc.RpcError as error:
            raise HyphaeError.from_rpc_error(error) from None
        finally:
            call.cancel()  # type: ignore[no-untyped-call]
            if partial is not None:
                partial.unlink(missing_ok=True)

    # custom tables

    def create_table(self, name: str, fields: Sequence[Mapping[str, Any]]) -> Table:
        """Creates a custom table; each field `{"name", "type"` (text, integer, numeric, boolean, timestamptz)
        `[, "required", "maxLength"]}`."""
        request = table_service_pb2.CreateTableRequest(name=name)
        _fill(request, {"fields": [dict(f) for f in fields]})
        response = self._call(self._tables.CreateTable, request)
        return Table.from_proto(response.table)

    def get_table(self, name: str) -> Table:
        response = self._call(self._tables.GetTable, table_service_pb2.GetTableRequest(name=name))
        return Table.from_proto(response.table)

    def bulk_insert_rows(self, name: str, rows: Sequence[Mapping[str, Any]]) -> list[int]:
        """Inserts the rows (JSON objects; at most 100,000 per call) in one transaction and returns their ids in
        order. One invalid row refuses the whole call: the HyphaeError's `field` names it (`rows[3].amount`)."""
        request = table_service_pb2.BulkInsertRowsRequest(
            name=name, rows=[to_json(dict(row)) for row in rows], return_rows=False
        )
        response = self._call(self._tables.BulkInsertRows, request)
        return list(response.ids)

    def list_rows(
        self,
        name: str,
        *,
        where: Mapping[str, Any] | None = None,
        sort: str = "",
        limit: int = 50,
        page_token: str = "",
    ) -> RowPage:
        """One page of rows (at most 100), ordered by `sort` (default id), with the total that match `where`."""
        request = table_service_pb2.ListRowsRequest(name=name, sort=sort, page_size=limit, page_token=page_token)
        if where is not None:
            request.where.CopyFrom(to_json(dict(where)))
        response = self._call(self._tables.ListRows, request)
        return RowPage(
            rows=[from_json(row) for row in response.rows],
            total=response.total,
            next_page_token=response.next_page_token,
        )

"""`hyphae runs | documents | tables`: start and watch work from a terminal, over the gRPC client.

Progress shows as bars (rich) when stdout is a terminal and as plain lines otherwise (pipes, tests, CI). Every
failure is one line on stderr and a non-zero exit, never a traceback. Exit codes: 0 done (a run completed, or its
condition was not met), 1 an error or a failed / cancelled run, 2 a run paused waiting for a person, 130 Ctrl-C.

`cli/main.py` mounts these command groups on `hyphae`; `python -m hyphae_client.cli` runs them alone.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import grpc

if TYPE_CHECKING:  # rich is imported when a bar is drawn: `hyphae serve` mounts these commands and never needs it
    from rich.progress import Progress, TaskID

from hyphae_client.client import DEFAULT_TARGET, HyphaeClient, HyphaeError, Interrupt, Run, RunEvent

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_PAUSED", "add_commands", "main", "run"]

EXIT_OK, EXIT_FAILED, EXIT_PAUSED, EXIT_INTERRUPTED = 0, 1, 2, 130
MAX_BATCH = 100_000  # BulkInsertRows takes at most this many rows per call
MAX_BATCH_BYTES = 32 * 1024 * 1024  # a batch is sent early past this much CSV text: gRPC messages stop at 64 MiB
PAUSE_EVENTS = frozenset({"pbot_approval_requested", "pbot_form_requested", "agent_paused"})
_ROW_FIELD = re.compile(r"^rows\[(\d+)\](?:\.(.+))?$")
_WAITS = {"approval": "an approval", "form": "a form", "agent": "a person's answer to the agent"}
_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})

Handler = Callable[[argparse.Namespace, HyphaeClient], int]


class CliError(Exception):
    """A failure the user can act on: printed as one line, exit 1."""


# --------------------------------------------------------------------------- output


def say(text: str = "") -> None:
    print(text, flush=True)


class Bars:
    """Progress bars on a terminal; elsewhere no bars, only the plain lines the commands print themselves (and, with
    `plain_steps`, one line per `advance`)."""

    def __init__(self, unit: str, *, plain_steps: bool = False) -> None:
        self.unit = unit
        self.plain_steps = plain_steps
        self.tty = sys.stdout.isatty()
        self.totals: dict[TaskID, int | None] = {}
        self.done: dict[TaskID, int] = {}
        self.names: dict[TaskID, str] = {}
        self.progress: Progress | None = None
        if self.tty:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                MofNCompleteColumn,
                Progress,
                ProgressColumn,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            counter: ProgressColumn = DownloadColumn() if unit == "bytes" else MofNCompleteColumn()
            extra: list[ProgressColumn] = [TransferSpeedColumn()] if unit == "bytes" else []
            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(), counter, *extra, TimeRemainingColumn()
            )

    def __enter__(self) -> Bars:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def add(self, name: str, total: int | None) -> TaskID:
        task = (
            self.progress.add_task(name, total=total) if self.progress is not None else cast("TaskID", len(self.names))
        )
        self.totals[task], self.done[task], self.names[task] = total, 0, name
        return task

    def total(self, task: TaskID, total: int) -> None:
        self.totals[task] = total
        if self.progress is not None:
            self.progress.update(task, total=total)

    def advance(self, task: TaskID, amount: int) -> None:
        self.done[task] += amount
        if self.progress is not None:
            self.progress.advance(task, amount)
        elif self.plain_steps:
            total = self.totals[task]
            say(f"{self.names[task]}: {self.done[task]}" + (f"/{total}" if total is not None else "") + f" {self.unit}")

    def line(self, text: str) -> None:
        """A line above the bars (or a plain line)."""
        if self.progress is not None:
            self.progress.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            say(text)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


# --------------------------------------------------------------------------- runs


def _describe_event(event: RunEvent) -> str:
    data: dict[str, Any] = event.data if isinstance(event.data, dict) else {}
    index = data.get("index")
    step = f"step {index}" + (f" ({data['type']})" if data.get("type") else "")
    kind = event.type
    if kind == "workflow_run_started":
        text = f"run started (workflow {data.get('workflow_id', '?')})"
    elif kind in ("step_completed", "step_failed", "step_skipped", "step_running"):
        text = f"{step} {kind.removeprefix('step_')}"
    elif kind == "pbot_approval_requested":
        text = f"{step} waits for an approval" + (f": {data['comment']}" if data.get("comment") else "")
    elif kind == "pbot_form_requested":
        keys = data.get("expected_keys") or data.get("expectedKeys") or []
        text = f"{step} waits for a form" + (f" with {', '.join(map(str, keys))}" if keys else "")
    elif kind == "pbot_approval_decided":
        decision = "approved" if data.get("__approved", data.get("approved")) else "rejected"
        comment = data.get("__comment") or data.get("comment")
        text = f"{step} {decision}" + (f": {comment}" if comment else "")
    elif kind == "pbot_form_submitted":
        text = f"{step} form submitted"
    elif kind == "agent_paused":
        question = data.get("question")
        text = f"{step} agent waits for a person" + (f": {question}" if question else "")
    elif kind == "agent_resumed":
        text = f"{step} agent resumed"
    elif kind == "workflow_run_failed":
        text = f"run failed: {data.get('error', '')}"
    elif kind.startswith("workflow_run_"):
        text = f"run {kind.removeprefix('workflow_run_').replace('_', ' ')}"
    else:
        text = f"{kind} {_json(data)}" if data else kind
    return f"[{event.sequence}] {text}"


def _answer_hint(interrupt: Interrupt, run_id: str) -> list[str]:
    step = interrupt.step_index
    if interrupt.kind == "approval":
        return [
            f'answer: POST {interrupt.answer_path} with {{"approved": true}} (or false, and a "comment")',
            f"    or: hyphae runs approve {run_id} {step} [--reject] [--comment TEXT]",
        ]
    if interrupt.kind == "form":
        payload = interrupt.payload if isinstance(interrupt.payload, dict) else {}
        keys = payload.get("expected_keys") or payload.get("expectedKeys") or []
        body = "{" + ", ".join(f'"{k}": ...' for k in keys) + "}"
        return [f"answer: POST {interrupt.answer_path} with {body}"]
    return [f'answer: {interrupt.answer_method} {interrupt.answer_path} with {{"response": "..."}}']


def _paused_here(client: HyphaeClient, run_id: str, event: RunEvent) -> list[Interrupt]:
    """The interrupts a person must answer when the run is paused at this event's step now (a replayed pause
    that was answered since, or a child run the server resumes by itself, does not stop the watch)."""
    index = event.data.get("index") if isinstance(event.data, dict) else None
    run = client.get_run(run_id)
    if run.status != "paused" or run.current_step != index:
        return []
    return [i for i in client.list_interrupts(run_id) if i.answer_path]


def _final(run: Run) -> int:
    say(f"status: {run.status}")
    if run.error:
        say(f"error: {run.error}")
    if run.output is not None:
        say(f"output: {_json(run.output)}")
    return EXIT_FAILED if run.status in ("failed", "cancelled") else EXIT_OK


def watch(client: HyphaeClient, run_id: str) -> int:
    """Prints the run's events as they arrive; ends with its final status (or what a pause waits for)."""
    try:
        with closing(client.watch_run(run_id)) as events:
            for event in events:
                say(_describe_event(event))
                if event.type not in PAUSE_EVENTS:
                    continue
                waiting = _paused_here(client, run_id, event)
                if waiting:
                    for interrupt in waiting:
                        waits = _WAITS.get(interrupt.kind, interrupt.kind)
                        say(f"status: paused (step {interrupt.step_index} waits for {waits})")
                        for line in _answer_hint(interrupt, run_id):
                            say(line)
                    say(f"then: hyphae runs watch {run_id}")
                    return EXIT_PAUSED
    except KeyboardInterrupt:
        print(f"stopped watching; the run goes on (hyphae runs watch {run_id})", file=sys.stderr)
        return EXIT_INTERRUPTED
    return _final(client.get_run(run_id))


def _input(text: str) -> Any:
    source = "--input"
    if text.startswith("@"):
        source = text[1:]
        try:
            text = Path(source).read_text(encoding="utf-8")
        except OSError as exc:
            raise CliError(f"--input: cannot read {source}: {exc.strerror or exc}") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{source}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise CliError(f"{source}: the run's input must be a JSON object")
    return value


def _runs_start(args: argparse.Namespace, client: HyphaeClient) -> int:
    run_id = client.execute_workflow(args.workflow_id, _input(args.input))
    say(f"run: {run_id}")
    if not args.watch:
        say(f"watch it: hyphae runs watch {run_id}")
        return EXIT_OK
    return watch(client, run_id)


def _runs_watch(args: argparse.Namespace, client: HyphaeClient) -> int:
    return watch(client, args.run_id)


def _runs_approve(args: argparse.Namespace, client: HyphaeClient) -> int:
    client.submit_approval(args.run_id, args.step, approved=not args.reject, comment=args.comment)
    decision = "rejected" if args.reject else "approved"
    say(f"step {args.step} {decision}; the run goes on: hyphae runs watch {args.run_id}")
    return EXIT_OK


# --------------------------------------------------------------------------- documents


def _tags(text: str | None) -> list[str] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"--tags: not valid JSON ({exc})") from None
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise CliError('--tags: must be a JSON array of strings, e.g. ["finance", "q3"]')
    return value


def _documents_upload(args: argparse.Namespace, client: HyphaeClient) -> int:
    files = [Path(f) for f in args.files]
    if args.name is not None and len(files) > 1:
        raise CliError("--name goes with one file (several files are each named after their file)")
    tags = _tags(args.tags)
    for path in files:
        if not path.is_file():
            raise CliError(f"{path}: no such file")
    failed = 0
    with Bars("bytes") as bars:
        for path in files:
            task = bars.add(path.name, path.stat().st_size)
            try:
                document, deduplicated = client.upload_document(
                    path, name=args.name, tags=tags, progress=functools.partial(bars.advance, task)
                )
            except HyphaeError as exc:
                if _unreachable(exc):
                    raise
                failed += 1
                bars.line(f"{path}: failed: {exc.message}")
                continue
            bars.line(
                f"{path}: {document.id}" + (" deduplicated (the org already had these bytes)" if deduplicated else "")
            )
    if failed:
        print(f"hyphae: {failed} of {len(files)} files were not uploaded", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _documents_download(args: argparse.Namespace, client: HyphaeClient) -> int:
    with Bars("bytes") as bars:
        task = bars.add(args.id, None)
        download = client.download_document(
            args.id,
            args.output,
            version=args.version,
            on_info=lambda info: bars.total(task, info.size_bytes),
            progress=lambda n: bars.advance(task, n),
        )
        bars.line(f"{download.path}: {download.size_bytes} bytes ({download.content_type}, version {download.version})")
    return EXIT_OK


# --------------------------------------------------------------------------- custom tables


def _cell(kind: str, text: str) -> Any:
    """A CSV cell as the JSON value the field takes: text as is; an empty cell of any other type is null; booleans
    from true/false, yes/no, 1/0; numbers and timestamps as strings (the server parses them and names the field when
    one is wrong)."""
    if kind == "text":
        return text
    text = text.strip()
    if text == "":
        return None
    if kind == "boolean":
        lowered = text.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    return text


def _records(path: Path, header: list[str]) -> Iterator[tuple[int, list[str]]]:
    """(line number where the record starts, cells) of every non-blank record after the header."""
    with path.open(newline="", encoding="utf-8-sig") as file:
        reader = csv.reader(file)
        next(reader, None)
        start = reader.line_num + 1
        for cells in reader:
            line, start = start, reader.line_num + 1
            if not cells:
                continue
            if len(cells) != len(header):
                raise CliError(f"{path} line {line}: {len(cells)} values, the header names {len(header)} fields")
            yield line, cells


def _read_header(path: Path) -> list[str]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as file:
            header = next(csv.reader(file), None)
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror or exc}") from None
    if not header:
        raise CliError(f"{path}: empty; the first line must name the table's fields")
    return [name.strip() for name in header]


def _tables_import(args: argparse.Namespace, client: HyphaeClient) -> int:
    path = Path(args.file)
    if not 1 <= args.batch <= MAX_BATCH:
        raise CliError(f"--batch must be between 1 and {MAX_BATCH}")
    header = _read_header(path)
    table = client.get_table(args.name)
    types = {f["name"]: str(f["type"]) for f in table.fields}
    for name in header:
        if name not in types:
            raise CliError(f"{path} line 1: {name!r} is not a field of table {args.name} (fields: {', '.join(types)})")
    if len(set(header)) != len(header):
        raise CliError(f"{path} line 1: a field is named twice")
    try:
        total = sum(1 for _ in _records(path, header))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CliError(f"{path}: {exc}") from None
    inserted = 0
    with Bars("rows", plain_steps=True) as bars:
        task = bars.add(f"{args.name}", total)
        batch: list[dict[str, Any]] = []
        lines: list[int] = []
        row_overhead = sum(len(name) + 8 for name in header)  # keys, quotes and separators of a row's JSON

        def send() -> None:
            nonlocal inserted
            try:
                client.bulk_insert_rows(args.name, batch)
            except HyphaeError as exc:
                if _unreachable(exc):
                    raise
                raise CliError(_batch_error(path, exc, lines) + f"; {_imported(inserted, lines[0])}") from None
            inserted += len(batch)
            bars.advance(task, len(batch))
            batch.clear()
            lines.clear()

        size = 0
        for line, cells in _records(path, header):
            batch.append({name: _cell(types[name], cell) for name, cell in zip(header, cells, strict=True)})
            lines.append(line)
            size += sum(len(cell) for cell in cells) + row_overhead
            if len(batch) == args.batch or size >= MAX_BATCH_BYTES:
                send()
                size = 0
        if batch:
            send()
    say(f"imported {inserted} rows into {args.name}")
    return EXIT_OK


def _batch_error(path: Path, error: HyphaeError, lines: list[int]) -> str:
    """The server's error with the batch's row index turned into the CSV line (`rows[12].amount` -> line 14)."""
    found = _ROW_FIELD.match(error.field)
    if found is None or int(found.group(1)) >= len(lines):
        return f"{path} lines {lines[0]}-{lines[-1]}: {error.message}"
    message = error.message.removeprefix(f"{error.field}: ")
    where = f"{path} line {lines[int(found.group(1))]}" + (f", field {found.group(2)!r}" if found.group(2) else "")
    return f"{where}: {message}"


def _imported(inserted: int, first_line: int) -> str:
    before = f" (CSV lines up to {first_line - 1})" if inserted else ""
    return f"{inserted} rows were imported{before}, none from line {first_line} on"


def _tables_create(args: argparse.Namespace, client: HyphaeClient) -> int:
    fields: list[dict[str, Any]] = []
    for spec in args.fields:
        name, _, kind = spec.partition(":")
        if not name or not kind:
            raise CliError(f"{spec!r}: a field is NAME:TYPE (TYPE text, integer, numeric, boolean or timestamptz)")
        required = kind.endswith("!")
        fields.append({"name": name, "type": kind.removesuffix("!"), "required": required})
    table = client.create_table(args.name, fields)
    say(f"table {table.name}: {table.id}")
    return EXIT_OK


def _tables_rows(args: argparse.Namespace, client: HyphaeClient) -> int:
    if args.limit < 1:
        raise CliError("--limit must be at least 1")
    shown, token, total = 0, "", 0
    while shown < args.limit:
        page = client.list_rows(args.name, limit=min(100, args.limit - shown), page_token=token, sort=args.sort)
        total = page.total
        for row in page.rows:
            say(_json(row))
        shown += len(page.rows)
        token = page.next_page_token
        if not token:
            break
    print(f"{shown} of {total} rows", file=sys.stderr)
    return EXIT_OK


# --------------------------------------------------------------------------- wiring


def _unreachable(error: HyphaeError) -> bool:
    return error.code == grpc.StatusCode.UNAVAILABLE and not error.reason


def _message(error: HyphaeError, target: str) -> str:
    if _unreachable(error):
        return (
            f"cannot reach a Hyphae server at {target} (gRPC): start one with `hyphae serve`, "
            "or point --target / HYPHAE_TARGET at it"
        )
    if error.code == grpc.StatusCode.UNAUTHENTICATED:
        return f"{error.message} (pass --api-key / HYPHAE_API_KEY, or --org with a server that trusts the org header)"
    return f"{error.message} [{error.code.name.lower()}]"


def _connection(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--target",
        default=os.environ.get("HYPHAE_TARGET") or DEFAULT_TARGET,
        help="gRPC host:port of the server (env HYPHAE_TARGET; default %(default)s)",
    )
    group.add_argument(
        "--api-key", default=os.environ.get("HYPHAE_API_KEY") or None, help="API key (env HYPHAE_API_KEY)"
    )
    group.add_argument(
        "--org",
        default=os.environ.get("HYPHAE_ORG_ID") or None,
        help="org id sent as x-org-id, for a server started with HYPHAE_TRUST_ORG_HEADER=true (env HYPHAE_ORG_ID)",
    )


def _command(
    group: argparse._SubParsersAction[argparse.ArgumentParser], name: str, handler: Handler, help: str
) -> argparse.ArgumentParser:
    parser = group.add_parser(name, help=help, description=help)
    _connection(parser)
    parser.set_defaults(client_command=handler)
    return parser


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds the `runs`, `documents` and `tables` command groups to a `hyphae` parser."""
    runs = commands.add_parser("runs", help="start workflow runs and watch them").add_subparsers(
        dest="runs_command", required=True
    )
    start = _command(runs, "start", _runs_start, "start a run of a workflow")
    start.add_argument("workflow_id")
    start.add_argument("--input", default="{}", help="the run's input: a JSON object, or @file.json")
    start.add_argument("--watch", action="store_true", help="then watch it as `hyphae runs watch` does")
    watch_ = _command(
        runs,
        "watch",
        _runs_watch,
        "print a run's events as they happen, then its status and output "
        "(exit 0 completed, 1 failed or cancelled, 2 paused waiting for a person)",
    )
    watch_.add_argument("run_id")
    approve = _command(runs, "approve", _runs_approve, "answer a run's approval step")
    approve.add_argument("run_id")
    approve.add_argument("step", type=int, help="the step's index, as `runs watch` shows it")
    approve.add_argument("--reject", action="store_true", help="reject (the run goes on with @__approved false)")
    approve.add_argument("--comment", default="", help="the reviewer's comment (@__comment)")

    documents = commands.add_parser("documents", help="upload and download documents").add_subparsers(
        dest="documents_command", required=True
    )
    upload = _command(documents, "upload", _documents_upload, "upload files, each as a document")
    upload.add_argument("files", nargs="+", metavar="FILE")
    upload.add_argument("--name", default=None, help="display name (one file only; default: the file name)")
    upload.add_argument("--tags", default=None, help='labels, a JSON array: ["finance", "q3"]')
    download = _command(documents, "download", _documents_download, "download a document's bytes to a file")
    download.add_argument("id")
    download.add_argument("-o", "--output", default=None, help="where to write (default: its file name, here)")
    download.add_argument("--version", type=int, default=0, help="an older version (default: the current one)")

    tables = commands.add_parser("tables", help="create custom tables, import CSV, list rows").add_subparsers(
        dest="tables_command", required=True
    )
    create = _command(tables, "create", _tables_create, "create a custom table")
    create.add_argument("name")
    create.add_argument("fields", nargs="+", metavar="NAME:TYPE", help="e.g. amount:numeric  sku:text!  (! = required)")
    import_ = _command(
        tables,
        "import",
        _tables_import,
        "insert a CSV file's rows (its header names the fields) in batches; stops at the first refused batch",
    )
    import_.add_argument("name")
    import_.add_argument("file", metavar="FILE.csv")
    import_.add_argument("--batch", type=int, default=5000, help="rows per request (default %(default)s)")
    rows = _command(tables, "rows", _tables_rows, "print rows as JSON lines")
    rows.add_argument("name")
    rows.add_argument("--limit", type=int, default=50, help="at most this many rows (default %(default)s)")
    rows.add_argument("--sort", default="", help="a field, id, created_at or updated_at; -field for descending")


def run(args: argparse.Namespace) -> int:
    """Runs a parsed client command; returns the exit code. Errors are printed as one line."""
    handler: Handler = args.client_command
    try:
        # a generous deadline per call: a bulk insert of --batch 100000 rows may take a while on a busy server
        with HyphaeClient(args.target, api_key=args.api_key, org_id=args.org, timeout=300) as client:
            return handler(args, client)
    except HyphaeError as exc:
        print(f"hyphae: {_message(exc, args.target)}", file=sys.stderr)
    except CliError as exc:
        print(f"hyphae: {exc}", file=sys.stderr)
    except OSError as exc:  # files named on the command line
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"hyphae: {where}{exc.strerror or exc}", file=sys.stderr)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return EXIT_FAILED


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="hyphae", description="Run and watch Hyphae work from a terminal.")
    add_commands(parser.add_subparsers(dest="command", required=True))
    raise SystemExit(run(parser.parse_args(argv)))


if __name__ == "__main__":
    main()

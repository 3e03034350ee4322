"""The `hyphae` command: serve, gateway, worker, migrate, orgs create, fake-model; and, as a client of a running
server, runs / documents / tables (hyphae_client.cli)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from hyphae_client import cli as client_cli
from server.config import Settings

# We fork only to run Postgres' own tools (pg_ctl); grpc's fork handlers are not needed and log noise on every fork.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")


def _serve(args: argparse.Namespace, settings: Settings) -> None:
    from cli.process import serve

    if args.scenarios and not args.demo:
        raise ValueError("--scenarios goes with --demo")
    asyncio.run(serve(settings, demo=args.demo, scenarios=args.scenarios))


def _fake_model(args: argparse.Namespace, settings: Settings) -> None:
    from cli.process import fake_model

    asyncio.run(fake_model(args.host, args.port, args.scenarios))


def _gateway(args: argparse.Namespace, settings: Settings) -> None:
    import uvicorn

    from cli.process import HttpServer, bind_http
    from gateway.app import create_app

    app = create_app(args.grpc_target, max_body_bytes=settings.max_body_bytes)
    bind_http(settings.host, settings.http_port).close()  # a busy port: one clear error
    print(f"Hyphae REST gateway: http://{settings.host}:{settings.http_port} -> gRPC {args.grpc_target}", flush=True)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.http_port, log_level="warning", access_log=False, proxy_headers=False
    )
    HttpServer(config, app).run()


def _worker(args: argparse.Namespace, settings: Settings) -> None:
    from cli.process import work

    asyncio.run(work(settings))


def _migrate(args: argparse.Namespace, settings: Settings) -> None:
    from server.app import database
    from server.store.db import migrate

    with database(settings) as url:
        migrate(url)
    print("database schema is up to date")


def _orgs_create(args: argparse.Namespace, settings: Settings) -> None:
    from server.app import database
    from server.store.db import migrate

    async def create(url: str) -> None:
        from server.ids import new_id
        from server.services.gateway import create_key
        from server.store import TenantRepository, accounts
        from server.store.db import connect, create_engine

        engine = create_engine(url, pool_size=1)
        try:
            async with connect(engine) as connection:
                org = await accounts.create_org(
                    connection, org_id=args.id or new_id("org"), name=args.name, account_id=None
                )
                key = await create_key(
                    TenantRepository(connection, org.id), label=args.label, permissions=args.permissions
                )
        finally:
            await engine.dispose()
        print(f"org:     {org.id}\nkey:     {key.key}\n(the key is shown only once; it is stored as a hash)")

    from server.auth import ORG_ID, ORG_ID_RULE

    if args.id and not ORG_ID.match(args.id):
        raise ValueError(f"--id {ORG_ID_RULE}")
    with database(settings) as url:
        migrate(url)
        asyncio.run(create(url))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="hyphae", description="Hyphae: agents and human-in-the-loop workflows.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run REST (:3009) and gRPC (:50051), embedded Postgres by default")
    serve.add_argument(
        "--demo", action="store_true", help="answer llm steps and agents with the built-in scripted model (no API key)"
    )
    serve.add_argument("--scenarios", default="", help="with --demo: a scenario file instead of the built-in one")
    serve.set_defaults(run=_serve)
    gateway = commands.add_parser("gateway", help="run only the REST gateway, in front of a gRPC server elsewhere")
    gateway.add_argument("--grpc-target", default="127.0.0.1:50051", help="host:port of the gRPC server")
    gateway.set_defaults(run=_gateway)
    commands.add_parser("worker", help="run only workers (no API): execute queued runs").set_defaults(run=_worker)
    commands.add_parser("migrate", help="apply database migrations and exit").set_defaults(run=_migrate)
    orgs = commands.add_parser("orgs", help="manage orgs").add_subparsers(dest="orgs_command", required=True)
    create = orgs.add_parser("create", help="create an org and print its first API key")
    create.add_argument("name", help="display name")
    create.add_argument("--id", default="", help="org id (default: generated)")
    create.add_argument("--label", default="default", help="label of the first key")
    create.add_argument("--permissions", choices=["full", "read_only", "execute_only"], default="full")
    create.set_defaults(run=_orgs_create)
    fake = commands.add_parser("fake-model", help="run the scripted OpenAI-compatible fake model server")
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--port", type=int, default=8089)
    fake.add_argument("--scenarios", default="", help="scenario file (JSON; default: the built-in demo scenarios)")
    fake.set_defaults(run=_fake_model)
    client_cli.add_commands(commands)
    args = parser.parse_args(argv)
    if getattr(args, "client_command", None) is not None:  # a client of a running server: no settings, no logging
        raise SystemExit(client_cli.run(args))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # one line per plugin on every start
    try:
        args.run(args, Settings.from_env())
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # a clear line, not a traceback, for what the user can fix
        from server.embedded_pg import EmbeddedPostgresError

        if isinstance(exc, (EmbeddedPostgresError, OSError, ValueError)):
            print(f"hyphae: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
        raise


if __name__ == "__main__":
    main()

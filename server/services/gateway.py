"""GatewayService: signup, accounts, orgs and API keys (management tokens)."""

from __future__ import annotations

import re
from typing import Any

from hyphae.gateway.v1 import account_pb2, gateway_service_pb2_grpc
from hyphae.gateway.v1 import gateway_service_pb2 as pb
from sqlalchemy.ext.asyncio import AsyncEngine

from server import auth
from server.errors import InvalidArgument
from server.ids import new_id
from server.services import Context, timestamp
from server.store import TenantRepository, accounts
from server.store.db import connect

EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
MAX_EMAIL = 254
MAX_NAME = 200
PERMISSIONS = {
    account_pb2.KEY_PERMISSIONS_UNSPECIFIED: "full",
    account_pb2.KEY_PERMISSIONS_FULL: "full",
    account_pb2.KEY_PERMISSIONS_READ_ONLY: "read_only",
    account_pb2.KEY_PERMISSIONS_EXECUTE_ONLY: "execute_only",
}
PERMISSION_ENUM = {
    "full": account_pb2.KEY_PERMISSIONS_FULL,
    "read_only": account_pb2.KEY_PERMISSIONS_READ_ONLY,
    "execute_only": account_pb2.KEY_PERMISSIONS_EXECUTE_ONLY,
}
KIND_ENUM = {"secret": account_pb2.KEY_KIND_SECRET, "publishable": account_pb2.KEY_KIND_PUBLISHABLE}
KINDS = {
    account_pb2.KEY_KIND_UNSPECIFIED: "secret",
    account_pb2.KEY_KIND_SECRET: "secret",
    account_pb2.KEY_KIND_PUBLISHABLE: "publishable",
}


def account_proto(row: Any) -> account_pb2.Account:
    return account_pb2.Account(id=row.id, email=row.email, name=row.name, created_at=timestamp(row.created_at))


def org_proto(row: Any) -> account_pb2.Org:
    return account_pb2.Org(id=row.id, name=row.name, created_at=timestamp(row.created_at))


def key_proto(row: Any, secret: str | None = None) -> account_pb2.ApiKey:
    return account_pb2.ApiKey(
        id=row.id,
        org_id=row.org_id,
        label=row.label,
        permissions=PERMISSION_ENUM[row.permissions],
        kind=KIND_ENUM[row.kind],
        prefix=row.prefix,
        key=secret,
        created_at=timestamp(row.created_at),
        last_used_at=timestamp(row.last_used_at),
    )


async def create_key(
    repo: TenantRepository, *, label: str, permissions: str, kind: str = "secret"
) -> account_pb2.ApiKey:
    """A new key; the secret is in the answer only."""
    prefix = auth.PUBLISHABLE_KEY_PREFIX if kind == "publishable" else auth.SECRET_KEY_PREFIX
    secret, digest, shown = auth.new_secret(prefix)
    row = await accounts.create_key(
        repo, label=label, kind=kind, permissions=permissions, prefix=shown, key_hash=digest
    )
    return key_proto(row, secret)


class GatewayService(gateway_service_pb2_grpc.GatewayServiceServicer):
    def __init__(self, engine: AsyncEngine, authenticator: auth.Authenticator) -> None:
        self.engine = engine
        self.authenticator = authenticator

    async def Signup(self, request: pb.SignupRequest, context: Context) -> pb.SignupResponse:
        email = request.email.strip().lower()
        if len(email) > MAX_EMAIL or not EMAIL.match(email):
            raise InvalidArgument(f"must be an email address of at most {MAX_EMAIL} characters", field="email")
        if len(request.name) > MAX_NAME:
            raise InvalidArgument(f"must be at most {MAX_NAME} characters", field="name")
        name = request.name.strip() or email
        token, digest, _ = auth.new_secret(auth.MANAGEMENT_TOKEN_PREFIX)
        async with connect(self.engine) as connection:
            account = await accounts.create_account(connection, email=email, name=name, token_hash=digest)
            org = await accounts.create_org(connection, org_id=new_id("org"), name=name, account_id=account.id)
            key = await create_key(TenantRepository(connection, org.id), label="default", permissions="full")
        return pb.SignupResponse(
            account=account_proto(account),
            org=org_proto(org),
            management_token=token,
            api_key=key,
        )

    async def GetAccount(self, request: pb.GetAccountRequest, context: Context) -> pb.GetAccountResponse:
        account_id = auth.principal().account_id
        async with connect(self.engine) as connection:
            account = await accounts.account(connection, account_id)
            orgs = await accounts.account_orgs(connection, account_id)
        return pb.GetAccountResponse(
            account=account_proto(account),
            orgs=[org_proto(row) for row in orgs],
        )

    async def ListOrgs(self, request: pb.ListOrgsRequest, context: Context) -> pb.ListOrgsResponse:
        async with connect(self.engine) as connection:
            orgs = await accounts.account_orgs(connection, auth.principal().account_id)
        return pb.ListOrgsResponse(orgs=[org_proto(row) for row in orgs])

    async def CreateOrg(self, request: pb.CreateOrgRequest, context: Context) -> pb.CreateOrgResponse:
        if request.id and not auth.ORG_ID.match(request.id):
            raise InvalidArgument(auth.ORG_ID_RULE, field="id")
        if not request.name.strip() or len(request.name) > MAX_NAME:
            raise InvalidArgument(f"must be 1-{MAX_NAME} characters", field="name")
        async with connect(self.engine) as connection:
            org = await accounts.create_org(
                connection,
                org_id=request.id or new_id("org"),
                name=request.name.strip(),
                account_id=auth.principal().account_id,
            )
        return pb.CreateOrgResponse(org=org_proto(org))

    async def ListApiKeys(self, request: pb.ListApiKeysRequest, context: Context) -> pb.ListApiKeysResponse:
        async with connect(self.engine) as connection:
            await accounts.account_org(connection, auth.principal().account_id, request.org_id)
            rows = await accounts.list_keys(TenantRepository(connection, request.org_id))
        return pb.ListApiKeysResponse(api_keys=[key_proto(row) for row in rows])

    async def CreateApiKey(self, request: pb.CreateApiKeyRequest, context: Context) -> pb.CreateApiKeyResponse:
        async with connect(self.engine) as connection:
            await accounts.account_org(connection, auth.principal().account_id, request.org_id)
            key = await create_key(
                TenantRepository(connection, request.org_id),
                label=request.label,
                permissions=PERMISSIONS[request.permissions],
                kind=KINDS[request.kind],
            )
        return pb.CreateApiKeyResponse(api_key=key)

    async def DeleteApiKey(self, request: pb.DeleteApiKeyRequest, context: Context) -> pb.DeleteApiKeyResponse:
        async with connect(self.engine) as connection:
            await accounts.account_org(connection, auth.principal().account_id, request.org_id)
            await accounts.revoke_key(TenantRepository(connection, request.org_id), request.key_id)
        self.authenticator.forget()
        return pb.DeleteApiKeyResponse(key_id=request.key_id, deleted=True)

"""OrgConfigService: encrypted per-org configuration; secrets come back redacted."""

from __future__ import annotations

import json
import re
from typing import Any

from cryptography.exceptions import InvalidTag
from hyphae.api.v1 import json_pb2
from hyphae.orgs.v1 import org_config_pb2, org_config_service_pb2_grpc
from hyphae.orgs.v1 import org_config_service_pb2 as pb
from sqlalchemy.ext.asyncio import AsyncEngine

from server import auth, jsonvalue
from server.crypto import Sealed, SecretBox, config_context
from server.errors import FailedPrecondition, InvalidArgument
from server.services import Context, timestamp
from server.store import org_config as store
from server.store import pagination, tenant

KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")
# Keys under these prefixes are plain configuration, returned as stored; every other key is a secret.
PLAIN_PREFIXES = ("settings:", "config:")


def is_secret(key: str) -> bool:
    return not key.startswith(PLAIN_PREFIXES)


def redact(raw: str) -> str:
    value = json.loads(raw)
    if isinstance(value, str) and len(value) >= 12:
        return value[:4] + "****"
    return "****"


class OrgConfigService(org_config_service_pb2_grpc.OrgConfigServiceServicer):
    def __init__(self, engine: AsyncEngine, box: SecretBox) -> None:
        self.engine = engine
        self.box = box

    def _entry(self, row: Any, org_id: str) -> org_config_pb2.OrgConfigEntry:
        try:
            raw = self.box.open(Sealed(row.key_id, row.nonce, row.ciphertext), config_context(org_id, row.key)).decode()
        except (KeyError, InvalidTag):
            raise FailedPrecondition(
                f"org config key {row.key!r} cannot be decrypted with this server's keys; give every server the same "
                "HYPHAE_SECRET_KEY, or set the value again"
            ) from None
        secret = is_secret(row.key)
        value = jsonvalue.of(redact(raw)) if secret else json_pb2.Json(raw=raw)
        return org_config_pb2.OrgConfigEntry(
            key=row.key,
            value=value,
            redacted=secret,
            created_at=timestamp(row.created_at),
            updated_at=timestamp(row.updated_at),
        )

    async def SetOrgConfig(self, request: pb.SetOrgConfigRequest, context: Context) -> pb.SetOrgConfigResponse:
        if not KEY.match(request.key):
            raise InvalidArgument(
                "must be 1-200 letters, digits, '_', '-', '.' or ':' (e.g. api:openai_key)", field="key"
            )
        value = jsonvalue.parse(request.value, "value")
        if is_secret(request.key) and not isinstance(value, str):
            raise InvalidArgument(
                f"must be a string: secrets are strings (JSON values are allowed under {', '.join(PLAIN_PREFIXES)})",
                field="value",
            )
        org_id = auth.org_id()
        sealed = self.box.seal(request.value.raw.encode(), config_context(org_id, request.key))
        async with tenant(self.engine, org_id) as repo:
            row = await store.put(repo, request.key, sealed)
        return pb.SetOrgConfigResponse(entry=self._entry(row, org_id))

    async def ListOrgConfig(self, request: pb.ListOrgConfigRequest, context: Context) -> pb.ListOrgConfigResponse:
        page = pagination.page_request(page_size=request.page_size, page_token=request.page_token)
        org_id = auth.org_id()
        async with tenant(self.engine, org_id) as repo:
            rows, token = await store.page(repo, page)
        return pb.ListOrgConfigResponse(entries=[self._entry(row, org_id) for row in rows], next_page_token=token)

    async def DeleteOrgConfig(self, request: pb.DeleteOrgConfigRequest, context: Context) -> pb.DeleteOrgConfigResponse:
        async with tenant(self.engine, auth.org_id()) as repo:
            await store.delete(repo, request.key)
        return pb.DeleteOrgConfigResponse(key=request.key, deleted=True)

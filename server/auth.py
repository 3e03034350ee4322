"""Credentials -> the principal a call acts as. Used by the interceptor for every service.

- `Authorization: Bearer sk-hyp-...`: an org's API key, scope full / read_only / execute_only.
- `Authorization: Bearer pk_live_...`: a publishable key, only for methods marked `publishable` (the /sdk/* routes).
- `Authorization: Bearer mt-hyp-...`: an account's management token, only for ACCESS_MANAGEMENT methods.
- `X-Org-Id: <org>` with no key: direct engine mode, accepted only when the server trusts the header.
Keys and tokens are stored as SHA-256 hashes (they are random and long, so a slow hash adds nothing).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass

from hyphae.api.v1 import options_pb2
from sqlalchemy.ext.asyncio import AsyncEngine

from server.errors import InvalidArgument, PermissionDenied, Unauthenticated
from server.store import accounts
from server.store.db import connect

SECRET_KEY_PREFIX = "sk-hyp-"
PUBLISHABLE_KEY_PREFIX = "pk_live_"
MANAGEMENT_TOKEN_PREFIX = "mt-hyp-"
# The one rule for org ids, whether sent as X-Org-Id or chosen when an org is created.
ORG_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
ORG_ID_RULE = "must be 1-128 letters, digits, '_', '-', '.' or ':', starting with a letter or digit"
ALLOWED = {
    "full": {options_pb2.ACCESS_READ, options_pb2.ACCESS_WRITE, options_pb2.ACCESS_EXECUTE},
    "read_only": {options_pb2.ACCESS_READ},
    "execute_only": {options_pb2.ACCESS_READ, options_pb2.ACCESS_EXECUTE},
}
# Key lookups are cached this long; a revoked key stops working in this process at once, elsewhere within it.
CACHE_SECONDS = 5.0
# Bound on cached lookups (unknown tokens included), so a flood of made-up keys cannot grow memory.
CACHE_ENTRIES = 10_000


@dataclass(frozen=True)
class Principal:
    kind: str  # "anonymous", "org_header", "secret", "publishable" or "management"
    org_id: str = ""
    account_id: str = ""
    key_id: str = ""
    permissions: str = "full"

    @property
    def rate_key(self) -> str:
        return self.key_id or self.account_id or (f"org:{self.org_id}" if self.org_id else "anonymous")

    @property
    def scope(self) -> str:
        """Namespace of idempotency keys; the prefixes keep an org named "public" apart from anonymous calls."""
        if self.org_id:
            return f"org:{self.org_id}"
        return f"account:{self.account_id}" if self.account_id else "public"


ANONYMOUS = Principal(kind="anonymous")
current_principal: ContextVar[Principal] = ContextVar("current_principal", default=ANONYMOUS)


def principal() -> Principal:
    return current_principal.get()


def org_id() -> str:
    """The calling org; the interceptor guarantees one for every non-public, non-management method."""
    org = current_principal.get().org_id
    if not org:
        raise Unauthenticated("this call needs an org: send Authorization: Bearer sk-hyp-... or X-Org-Id")
    return org


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret(prefix: str) -> tuple[str, str, str]:
    """(secret, its hash, its display prefix)."""
    secret = prefix + secrets.token_urlsafe(32)
    return secret, hash_secret(secret), secret[: len(prefix) + 6]


class Authenticator:
    def __init__(self, engine: AsyncEngine, *, trust_org_header: bool) -> None:
        self.engine = engine
        self.trust_org_header = trust_org_header
        self._keys: dict[str, tuple[float, Principal | None]] = {}
        self._known_orgs: set[str] = set()

    def forget(self) -> None:
        """Drop cached key lookups (after a key is revoked)."""
        self._keys.clear()

    async def authenticate(self, metadata: Mapping[str, str], rule: options_pb2.MethodRule) -> Principal:
        access = rule.access or options_pb2.ACCESS_WRITE
        if access == options_pb2.ACCESS_PUBLIC:
            return ANONYMOUS
        header = metadata.get("authorization", "").strip()
        token = ""
        if header:
            scheme, _, token = header.partition(" ")
            token = token.strip()
            if scheme.lower() != "bearer" or not token:
                raise Unauthenticated("the Authorization header must be 'Bearer <key>'")
        if token.startswith(MANAGEMENT_TOKEN_PREFIX):
            found = await self._lookup(token, management=True)
            if access != options_pb2.ACCESS_MANAGEMENT:
                raise PermissionDenied(
                    "a management token manages accounts, orgs and keys; call this route with an sk-hyp- API key"
                )
            return found
        if token.startswith((SECRET_KEY_PREFIX, PUBLISHABLE_KEY_PREFIX)):
            try:
                found = await self._lookup(token, management=False)
            except Unauthenticated as exc:
                if access == options_pb2.ACCESS_MANAGEMENT:
                    raise Unauthenticated(
                        f"{exc.message}; this route needs Authorization: Bearer mt-hyp-... "
                        "(the management token returned by POST /gateway/signup)"
                    ) from None
                raise
            if access == options_pb2.ACCESS_MANAGEMENT:
                raise PermissionDenied(
                    "API keys run workflows; this route needs Authorization: Bearer mt-hyp-... "
                    "(the management token returned by POST /gateway/signup)"
                )
            if found.kind == "publishable" and not rule.publishable:
                raise PermissionDenied("publishable (pk_live_) keys work only on /sdk/* routes; use an sk-hyp- key")
            if access not in ALLOWED.get(found.permissions, set()):
                need = "a full" if access == options_pb2.ACCESS_WRITE else "a full or execute_only"
                raise PermissionDenied(f"this key is {found.permissions}; this call needs {need} key")
            return found
        if token:
            raise Unauthenticated("unrecognised key: expected sk-hyp-..., pk_live_... or mt-hyp-...")
        if access == options_pb2.ACCESS_MANAGEMENT:
            raise Unauthenticated(
                "this route needs Authorization: Bearer mt-hyp-... (the management token "
                "returned by POST /gateway/signup)"
            )
        org = metadata.get("x-org-id", "").strip()
        if org:
            if not self.trust_org_header:
                raise Unauthenticated(
                    "this server does not accept X-Org-Id on its own; send Authorization: "
                    "Bearer sk-hyp-... (or set HYPHAE_TRUST_ORG_HEADER=true behind a gateway)"
                )
            if not ORG_ID.match(org):
                raise InvalidArgument(ORG_ID_RULE, field="X-Org-Id")
            await self._ensure_org(org)
            return Principal(kind="org_header", org_id=org)
        raise Unauthenticated("missing credentials: send Authorization: Bearer sk-hyp-... or X-Org-Id")

    async def _ensure_org(self, org: str) -> None:
        if org in self._known_orgs:
            return
        async with connect(self.engine) as connection:
            await accounts.ensure_org(connection, org)
        self._known_orgs.add(org)

    async def _lookup(self, token: str, *, management: bool) -> Principal:
        digest = hash_secret(token)
        cached = self._keys.get(digest)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            found = cached[1]
        else:
            found = None
            async with connect(self.engine) as connection:
                if management:
                    row = await accounts.account_by_token(connection, digest)
                    if row is not None:
                        found = Principal(kind="management", account_id=row.id)
                else:
                    key = await accounts.key_by_hash(connection, digest)
                    if key is not None:
                        found = Principal(kind=key.kind, org_id=key.org_id, key_id=key.id, permissions=key.permissions)
                        await accounts.touch_key(connection, key.id)
            if len(self._keys) >= CACHE_ENTRIES:
                self._keys.clear()
            self._keys[digest] = (now + CACHE_SECONDS, found)
        if found is None:
            raise Unauthenticated("invalid or revoked key")
        return found

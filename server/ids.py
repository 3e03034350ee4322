"""Prefixed, time-ordered ids ("wfl-<uuid7>"), generated here and nowhere else."""

from __future__ import annotations

import os
import time
import uuid

PREFIXES = {
    "workflow": "wfl",
    "action": "act",
    "account": "acct",
    "org": "org",
    "api_key": "key",
    "request": "req",
    "run": "run",
    "document_audit": "dau",
    "custom_table": "ctb",
    "generation": "llm_gen",
    "ai_process": "aiproc",
    "agent": "agent",
}


def uuid7() -> uuid.UUID:
    """RFC 9562 UUIDv7: 48-bit Unix milliseconds, then random bits; sorts by creation time."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 66) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return uuid.UUID(int=value)


def new_id(kind: str) -> str:
    return f"{PREFIXES[kind]}-{uuid7()}"


def new_document_id() -> str:
    """Documents keep Hyphen's documented spelling, "doc_" + hex (here the 32 hex digits of a UUIDv7)."""
    return f"doc_{uuid7().hex}"

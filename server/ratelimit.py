"""Per-credential request budgets (token buckets, in process memory).

Each process keeps its own buckets, so N processes allow up to N times the limit; put a shared limiter in front
for a strict cluster-wide budget.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass


@dataclass
class Bucket:
    tokens: float
    updated: float


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int  # until the bucket is full again
    retry_after: int  # until one request is allowed again (0 when allowed)

    def headers(self) -> list[tuple[str, str]]:
        fields = [
            ("ratelimit-limit", str(self.limit)),
            ("ratelimit-remaining", str(self.remaining)),
            ("ratelimit-reset", str(self.reset_seconds)),
            ("ratelimit", f"limit={self.limit}, remaining={self.remaining}, reset={self.reset_seconds}"),
            ("ratelimit-policy", f"{self.limit};w=60"),
        ]
        if not self.allowed:
            fields.append(("retry-after", str(self.retry_after)))
        return fields


class RateLimiter:
    def __init__(self, per_minute: int, *, max_buckets: int = 100_000) -> None:
        self.limit = per_minute
        self.rate = per_minute / 60.0
        self.max_buckets = max_buckets
        self._buckets: dict[str, Bucket] = {}

    def check(self, key: str) -> Decision:
        now = time.monotonic()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_buckets:
                self._buckets.clear()
            bucket = self._buckets[key] = Bucket(tokens=float(self.limit), updated=now)
        bucket.tokens = min(float(self.limit), bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        allowed = bucket.tokens >= 1.0
        if allowed:
            bucket.tokens -= 1.0
        reset = math.ceil((self.limit - bucket.tokens) / self.rate) if self.rate else 0
        retry = 0 if allowed else max(1, math.ceil((1.0 - bucket.tokens) / self.rate))
        return Decision(allowed, self.limit, int(bucket.tokens), reset, retry)

"""Anonymous writes (signup) are limited per client address; health checks never are."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx

from tests.conftest import make_settings, run_server


def test_signup_is_limited_per_address_and_health_is_not(fresh_database: str, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, anonymous_rate_limit_per_minute=3)
    with run_server(settings, fresh_database) as info, httpx.Client(base_url=info.http_url) as client:
        statuses = [
            client.post("/gateway/signup", json={"email": f"{uuid.uuid4().hex}@example.com"}).status_code
            for _ in range(4)
        ]
        assert statuses == [201, 201, 201, 429]
        limited = client.post("/gateway/signup", json={"email": f"{uuid.uuid4().hex}@example.com"})
        assert int(limited.headers["retry-after"]) >= 1
        assert all(client.get("/health").status_code == 200 for _ in range(10))

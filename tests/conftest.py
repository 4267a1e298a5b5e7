"""Shared fixtures: the Kafka and Redis the integration tests use, and per-test isolation.

The backend choice lives in tests/backends.py (env variables -> Testcontainers -> embedded).
Servers start on first use, once per session, so unit-only runs never start one. Nothing
heavy is imported here at module level.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

from tests import backends

if TYPE_CHECKING:
    import redis

    from streams.settings import Settings

log = logging.getLogger(__name__)

# kind -> (backend, address), filled as the session fixtures start; shown in the summary.
_USED: dict[str, tuple[str, str]] = {}


@pytest.fixture(scope="session")
def kafka_backend() -> backends.Backend:
    return backends.choose_backend("kafka")


@pytest.fixture(scope="session")
def redis_backend() -> backends.Backend:
    return backends.choose_backend("redis")


@pytest.fixture(scope="session")
def backend_name(kafka_backend: backends.Backend, redis_backend: backends.Backend) -> str:
    """ "env", "testcontainers" or "embedded"; "kafka=...,redis=..." when they differ."""
    return backends.describe({"kafka": kafka_backend, "redis": redis_backend})


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_backend: backends.Backend) -> Iterator[str]:
    """``host:port`` of a Kafka-protocol broker, for the whole session."""
    with backends.kafka_server(kafka_backend) as address:
        _USED["kafka"] = (kafka_backend, address)
        log.info("Kafka for tests: %s (%s)", address, kafka_backend)
        yield address


@pytest.fixture(scope="session")
def redis_url(redis_backend: backends.Backend) -> Iterator[str]:
    """``redis://`` URL of a Redis-protocol server, for the whole session."""
    with backends.redis_server(redis_backend) as url:
        _USED["redis"] = (redis_backend, url)
        log.info("Redis for tests: %s (%s)", backends.redact(url), redis_backend)
        yield url


@pytest.fixture
def key_prefix() -> Iterator[str]:
    """A Redis key prefix no other test uses.

    On a server named by RETAILPULSE_TEST_REDIS_URL (never flushed) the test's keys are
    deleted afterwards. This never starts a server: it only cleans one the session uses.
    """
    prefix = f"rptest:{uuid.uuid4().hex[:8]}"
    yield prefix
    backend, url = _USED.get("redis", ("", ""))
    if backend == "env":
        _delete_prefixed(url, prefix)


def _delete_prefixed(url: str, prefix: str) -> None:
    import redis as redis_lib

    client = redis_lib.Redis.from_url(url)
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}:*", count=500):
            batch.append(key)
            if len(batch) >= 500:
                client.unlink(*batch)
                batch.clear()
        if batch:
            client.unlink(*batch)
    finally:
        client.close()


@pytest.fixture
def redis_client(
    redis_url: str, redis_backend: backends.Backend, key_prefix: str
) -> Iterator[redis.Redis]:
    """A client (``decode_responses=True``) on an empty DB, or on a prefix no one else uses.

    Servers the session started are flushed before each test. A server named by
    RETAILPULSE_TEST_REDIS_URL is someone's own: never flushed; tests keep to ``key_prefix``,
    whose keys are deleted afterwards.
    """
    import redis as redis_lib

    client = redis_lib.Redis.from_url(redis_url, decode_responses=True)
    if redis_backend != "env":
        client.flushdb()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def topic_suffix() -> str:
    """A suffix that makes topic names unique to one test."""
    return uuid.uuid4().hex[:8]


@pytest.fixture
def unique_topics(topic_suffix: str) -> Callable[[str], str]:
    """``unique_topics("orders")`` -> ``"orders.<suffix>"``; same suffix within a test."""

    def name(base: str) -> str:
        return f"{base}.{topic_suffix}"

    return name


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _USED:
        return
    terminalreporter.write_sep("-", "RetailPulse test backends")
    for kind, (backend, address) in sorted(_USED.items()):
        terminalreporter.write_line(f"{kind}: {backend} ({backends.redact(address)})")


@pytest.fixture
def settings(kafka_bootstrap: str, redis_url: str, key_prefix: str) -> Settings:
    """Settings for one integration test: the chosen servers, fresh topics, its own keys."""
    from streams.settings import load_settings

    run_id = uuid.uuid4().hex[:8]
    return load_settings(
        env={},
        overrides={
            "kafka": {"bootstrap_servers": kafka_bootstrap},
            "redis": {"url": redis_url, "key_prefix": key_prefix, "retry_timeout_s": 20},
            "topics": {
                "prefix": f"t{run_id}.",
                "dead_letter": f"t{run_id}.deadletter",
                "partitions": 2,
            },
            "run": {"epoch_interval_s": 0.2},
        },
        use_embedded=False,
    )

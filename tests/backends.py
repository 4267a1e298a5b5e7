"""Which Kafka and Redis the integration tests run against, and how to start and stop them.

Each of the two is chosen on its own, first match wins:

1. ``env``: a server you name, ``RETAILPULSE_TEST_KAFKA_BOOTSTRAP`` (``host:port``) or
   ``RETAILPULSE_TEST_REDIS_URL`` (``redis://...``). Never flushed: tests isolate by key
   prefix and topic suffix there.
2. ``testcontainers``: when a Docker engine answers, a throwaway container per session.
3. ``embedded``: Tansu and Valkey from infra/embedded.py, on free 127.0.0.1 ports.

Plain functions, so the choice itself is unit-tested without starting anything. Only
stdlib at import time: the conftest imports this module for every test run.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "ENV_KAFKA",
    "ENV_REDIS",
    "KAFKA_IMAGE",
    "REDIS_IMAGE",
    "Backend",
    "Kind",
    "choose_backend",
    "describe",
    "docker_available",
    "kafka_server",
    "redact",
    "redis_server",
]

log = logging.getLogger(__name__)

Backend = Literal["env", "testcontainers", "embedded"]
Kind = Literal["kafka", "redis"]

ENV_KAFKA = "RETAILPULSE_TEST_KAFKA_BOOTSTRAP"
ENV_REDIS = "RETAILPULSE_TEST_REDIS_URL"
ENV_VARS: dict[Kind, str] = {"kafka": ENV_KAFKA, "redis": ENV_REDIS}
KAFKA_IMAGE = "confluentinc/cp-kafka:7.6.0"
REDIS_IMAGE = "redis:7.4"


@functools.cache
def docker_available() -> bool:
    """Whether a Docker engine answers within ~2 s; asked once per process."""
    try:
        import docker

        client = docker.from_env(timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # no SDK, no socket, no permission, timeout: all mean "no Docker"
        return False


def choose_backend(
    kind: Kind,
    env: Mapping[str, str] | None = None,
    docker_probe: Callable[[], bool] = docker_available,
) -> Backend:
    """The backend for ``kind``: env variable, else Testcontainers, else embedded."""
    environ = os.environ if env is None else env
    if environ.get(ENV_VARS[kind], "").strip():
        return "env"
    if docker_probe():
        return "testcontainers"
    return "embedded"


def describe(chosen: Mapping[str, Backend]) -> str:
    """One name when Kafka and Redis agree ("embedded"), else "kafka=env,redis=embedded"."""
    names = set(chosen.values())
    if len(names) == 1:
        return names.pop()
    return ",".join(f"{kind}={name}" for kind, name in sorted(chosen.items()))


def redact(address: str) -> str:
    """Hide a password in a URL before it is printed."""
    parts = urlsplit(address)
    if "://" not in address or parts.password is None:
        return address
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}"
    netloc += f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=netloc))


@contextmanager
def kafka_server(backend: Backend, env: Mapping[str, str] | None = None) -> Iterator[str]:
    """Yield a bootstrap address ("host:port"); stop what was started on exit."""
    environ = os.environ if env is None else env
    if backend == "env":
        yield environ[ENV_KAFKA].strip()
    elif backend == "testcontainers":
        try:
            from testcontainers.community.kafka import KafkaContainer
        except ImportError:  # older layout
            from testcontainers.kafka import KafkaContainer

        container = KafkaContainer(KAFKA_IMAGE).with_kraft()
        container.start()
        try:
            yield container.get_bootstrap_server()
        finally:
            container.stop()
    else:
        from infra.embedded import EmbeddedKafka

        server = EmbeddedKafka()
        info = server.start()
        try:
            yield info.address
        finally:
            server.stop()  # by PID: SIGTERM, then SIGKILL


@contextmanager
def redis_server(backend: Backend, env: Mapping[str, str] | None = None) -> Iterator[str]:
    """Yield a ``redis://`` URL; stop what was started on exit."""
    environ = os.environ if env is None else env
    if backend == "env":
        yield environ[ENV_REDIS].strip()
    elif backend == "testcontainers":
        try:
            from testcontainers.community.redis import RedisContainer
        except ImportError:
            from testcontainers.redis import RedisContainer

        container = RedisContainer(REDIS_IMAGE)
        container.start()
        try:
            host = container.get_container_host_ip()
            yield f"redis://{host}:{container.get_exposed_port(6379)}/0"
        finally:
            container.stop()
    else:
        from infra.embedded import EmbeddedRedis

        server = EmbeddedRedis()
        info = server.start()
        try:
            yield info.address
        finally:
            server.stop()

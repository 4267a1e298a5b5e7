"""Settings: one frozen object, built once at the entry point and passed down.

Sources, later ones winning: built-in defaults < a TOML file (``--config``) < environment
variables with the ``RETAILPULSE_`` prefix < command-line flags. This is the only module
that reads ``os.environ``; everything else receives a :class:`Settings`.

Kafka client properties (SASL, TLS, timeouts...) are passed through untouched to every
client we build (consumer, producer, admin, dead-letter producer): in TOML under
``[kafka.client]`` with their librdkafka names, or as environment variables
``RETAILPULSE_KAFKA__<NAME>`` where ``<NAME>`` is the property with dots written as
underscores (``RETAILPULSE_KAFKA__SASL_MECHANISMS=PLAIN`` -> ``sasl.mechanisms``).

>>> s = load_settings(env={"RETAILPULSE_KAFKA__SASL_PASSWORD": "hunter2",
...                        "RETAILPULSE_KAFKA_BOOTSTRAP_SERVERS": "k1:9092"})
>>> s.kafka.client_config()["sasl.password"]
'hunter2'
>>> "hunter2" in repr(s)
False
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from processors.customer_book import CustomerSettings
from processors.demand_engine import DemandSettings
from processors.supply_engine import SupplySettings
from processors.validation import ValidationLimits
from streams.errors import ConfigError

__all__ = [
    "FAMILIES",
    "KafkaSettings",
    "RedisSettings",
    "RunSettings",
    "SerdeSettings",
    "Settings",
    "TopicSettings",
    "load_settings",
]

ENV_PREFIX = "RETAILPULSE_"
FAMILIES: tuple[str, ...] = ("clickstream", "orders", "supplier", "catalog", "inventory", "stores")
_SECRET_MARKERS = ("password", "secret", "token", "key")  # ssl.key.password, sasl.password...


def _redact_config(conf: Mapping[str, str]) -> dict[str, str]:
    return {
        k: ("***" if any(m in k.lower() for m in _SECRET_MARKERS) else v) for k, v in conf.items()
    }


def redact_url(url: str) -> str:
    """``redis://user:pw@host:6379/0`` -> ``redis://user:***@host:6379/0``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True)
class KafkaSettings:
    """Where Kafka is and how to talk to it; ``client`` is passed through to librdkafka."""

    bootstrap_servers: str = ""
    client: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), repr=False)

    def client_config(self) -> dict[str, str]:
        """Properties shared by every client: bootstrap plus the pass-through settings."""
        if not self.bootstrap_servers:
            raise ConfigError(
                "no Kafka bootstrap servers: start the embedded stack with "
                "`retailpulse infra up --detach`, or set RETAILPULSE_KAFKA_BOOTSTRAP_SERVERS "
                "(or kafka.bootstrap_servers in the TOML file, or --bootstrap-servers)"
            )
        return {**self.client, "bootstrap.servers": self.bootstrap_servers}

    def describe(self) -> dict[str, Any]:
        return {"bootstrap_servers": self.bootstrap_servers, "client": _redact_config(self.client)}


@dataclass(frozen=True)
class RedisSettings:
    """Any Redis or Valkey by URL (``redis://``, ``rediss://``, ``unix://``; ACL user:password)."""

    url: str = field(default="", repr=False)
    key_prefix: str = "rp"
    retry_timeout_s: float = 300.0  # how long the sink keeps retrying before it gives up loudly
    cluster: bool = False  # the URL is one seed node of a Redis Cluster (docs/scaling.md)

    def require_url(self) -> str:
        """The URL; with ``cluster`` in the ``redis+cluster://`` form (infra/cluster.py).

        >>> RedisSettings(url="redis://h:7000/0", cluster=True).require_url()
        'redis+cluster://h:7000/0'
        """
        if not self.url:
            raise ConfigError(
                "no Redis URL: start the embedded stack with `retailpulse infra up --detach`, "
                "or set RETAILPULSE_REDIS_URL (or redis.url in the TOML file, or --redis-url)"
            )
        scheme, _, rest = self.url.partition("://")
        if not self.cluster or scheme.endswith("+cluster"):
            return self.url
        if scheme not in ("redis", "rediss"):
            raise ConfigError(f"redis.cluster needs a redis:// or rediss:// URL, not {scheme}://")
        return f"{scheme}+cluster://{rest}"

    def describe(self) -> dict[str, Any]:
        return {"url": redact_url(self.url), "key_prefix": self.key_prefix, "cluster": self.cluster}


@dataclass(frozen=True)
class TopicSettings:
    """Topic names and sizes. Input topics are ``<prefix><family>``."""

    prefix: str = "retailpulse."
    partitions: int = 3
    replication_factor: int = 1
    dead_letter: str = "retailpulse.deadletter"

    def input_topic(self, family: str) -> str:
        return f"{self.prefix}{family}"

    def input_topics(self) -> dict[str, str]:
        """family -> topic."""
        return {family: self.input_topic(family) for family in FAMILIES}

    def all_topics(self) -> list[str]:
        return [*self.input_topics().values(), self.dead_letter]


@dataclass(frozen=True)
class SerdeSettings:
    """Wire format: schema ids from a registry when configured, else from the manifest."""

    schema_registry_url: str = field(default="", repr=False)
    schema_registry: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}), repr=False
    )
    max_message_bytes: int = 1_000_000

    def describe(self) -> dict[str, Any]:
        return {
            "schema_registry_url": redact_url(self.schema_registry_url) or "(manifest)",
            "schema_registry": _redact_config(self.schema_registry),
            "max_message_bytes": self.max_message_bytes,
        }


@dataclass(frozen=True)
class RunSettings:
    """How the dataflow runs.

    Recovery (docs/recovery.md) is on when ``recovery_dir`` is set. Bytewax snapshots state
    at the end of every epoch, so the snapshot interval IS the epoch interval:
    ``snapshot_interval_s``, when set, wins over ``epoch_interval_s``.

    >>> RunSettings(epoch_interval_s=2.0).effective_epoch_interval_s
    2.0
    >>> RunSettings(epoch_interval_s=2.0, snapshot_interval_s=0.5).effective_epoch_interval_s
    0.5
    """

    batch_size: int = 1_000
    # Bytewax's default; each epoch end is a barrier across processes (docs/scaling.md).
    epoch_interval_s: float = 10.0
    log_every_s: float = 10.0
    metrics_port: int = 0  # 0: no HTTP endpoint (metrics still go to Redis)
    workers: int = 1
    timezone: str = "UTC"  # the retailer's time zone, for cutting trading days
    recovery_dir: Path | None = None  # None: no recovery (a restart reprocesses everything)
    recovery_partitions: int = 1  # fixed for the life of the recovery directory
    snapshot_interval_s: float | None = None  # None: epoch_interval_s
    backup_interval_s: float = 0.0  # keep superseded snapshots this long (for backups)
    # Logical shards of each sharded step (processors/shards.py): fixed for the life of a
    # recovery store. 12 spreads evenly over 1, 2, 3, 4, 6 or 12 workers (docs/scaling.md).
    shards: int = 12
    # Young-generation GC threshold in a run (0: Python's 700, whose passes over the models'
    # long-lived objects took ~15 % of the CPU): streams/runner.py:tune_gc.
    gc_threshold: int = 50_000
    # numpy's and scipy's BLAS threads (0: theirs, one per core): streams/runner.py.
    blas_threads: int = 1

    def __post_init__(self) -> None:
        if self.shards < 1:
            raise ConfigError(f"run.shards must be >= 1, not {self.shards}")
        if self.gc_threshold < 0:
            raise ConfigError(f"run.gc_threshold must be >= 0, not {self.gc_threshold}")
        if self.blas_threads < 0:
            raise ConfigError(f"run.blas_threads must be >= 0, not {self.blas_threads}")

    @property
    def effective_epoch_interval_s(self) -> float:
        """The Bytewax epoch interval, which is also the snapshot interval."""
        if self.snapshot_interval_s is not None:
            return self.snapshot_interval_s
        return self.epoch_interval_s


@dataclass(frozen=True)
class Settings:
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    topics: TopicSettings = field(default_factory=TopicSettings)
    serde: SerdeSettings = field(default_factory=SerdeSettings)
    validation: ValidationLimits = field(default_factory=ValidationLimits)
    run: RunSettings = field(default_factory=RunSettings)
    supply: SupplySettings = field(default_factory=SupplySettings)
    customers: CustomerSettings = field(default_factory=CustomerSettings)
    demand: DemandSettings = field(default_factory=DemandSettings)
    state_dir: Path = Path(".retailpulse")

    def describe(self) -> dict[str, Any]:
        """Everything an operator may want in a log line, secrets masked."""
        return {
            "kafka": self.kafka.describe(),
            "redis": self.redis.describe(),
            "topics": dataclasses.asdict(self.topics),
            "serde": self.serde.describe(),
            "validation": dataclasses.asdict(self.validation),
            "run": dataclasses.asdict(self.run),
            "supply": dataclasses.asdict(self.supply),
            "customers": dataclasses.asdict(self.customers),
            "demand": dataclasses.asdict(self.demand),
            "state_dir": str(self.state_dir),
        }

    def replace(self, **sections: Any) -> Settings:
        return dataclasses.replace(self, **sections)


_SECTIONS: dict[str, type] = {
    "kafka": KafkaSettings,
    "redis": RedisSettings,
    "topics": TopicSettings,
    "serde": SerdeSettings,
    "validation": ValidationLimits,
    "run": RunSettings,
    "supply": SupplySettings,
    "customers": CustomerSettings,
    "demand": DemandSettings,
}
# Pass-through mappings: free-form client properties rather than typed fields.
_PASSTHROUGH = {"kafka": "client", "serde": "schema_registry"}


def _coerce(section: str, name: str, raw: Any, target: type) -> Any:
    hints = {f.name: f.type for f in dataclasses.fields(target)}
    kind = str(hints[name])
    if kind.endswith(" | None"):  # optional: empty or "none" means unset
        if raw is None or str(raw).strip().lower() in ("", "none"):
            return None
        kind = kind.removesuffix(" | None")
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            if str(raw).lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                return str(raw).lower() in ("1", "true", "yes", "on")
            raise ValueError(raw)
        if kind.startswith(("tuple[float", "tuple[int")):
            items = raw if isinstance(raw, list | tuple) else str(raw).split(",")
            cast = float if kind.startswith("tuple[float") else int
            return tuple(cast(x) for x in items)
        if kind == "Path":
            return Path(raw)
        return str(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {section}.{name}={raw!r} is not a valid {kind}") from exc


def _env_layer(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """``RETAILPULSE_KAFKA_BOOTSTRAP_SERVERS`` -> {"kafka": {"bootstrap_servers": ...}}."""
    layer: dict[str, dict[str, Any]] = {}
    for var, value in env.items():
        if not var.startswith(ENV_PREFIX):
            continue
        rest = var[len(ENV_PREFIX) :].lower()
        if rest == "state_dir":
            layer.setdefault("", {})["state_dir"] = value
            continue
        if rest.startswith("test_"):
            continue  # the test suite's own variables (tests/backends.py)
        section, sep, name = rest.partition("_")
        if not sep or section not in _SECTIONS:
            raise ConfigError(f"unknown environment variable {var}: see docs/configuration.md")
        if name.startswith("_") and section in _PASSTHROUGH:  # RETAILPULSE_KAFKA__SASL_MECHANISMS
            prop = name[1:].replace("_", ".")
            layer.setdefault(section, {}).setdefault(_PASSTHROUGH[section], {})[prop] = value
        else:
            layer.setdefault(section, {})[name] = value
    return layer


def _merge(base: dict[str, dict[str, Any]], top: Mapping[str, Any]) -> None:
    for section, values in top.items():
        if section == "state_dir" or not isinstance(values, Mapping):
            base.setdefault("", {})[section] = values
            continue
        target = base.setdefault(section, {})
        for name, value in values.items():
            if name == _PASSTHROUGH.get(section) and isinstance(value, Mapping):
                target.setdefault(name, {}).update({str(k): str(v) for k, v in value.items()})
            else:
                target[name] = value


def _build(layers: dict[str, dict[str, Any]]) -> Settings:
    kwargs: dict[str, Any] = {}
    for section, values in layers.items():
        if section == "":
            if "state_dir" in values:
                kwargs["state_dir"] = Path(values["state_dir"])
            unknown = set(values) - {"state_dir"}
            if unknown:
                raise ConfigError(f"unknown top-level setting(s): {sorted(unknown)}")
            continue
        if section not in _SECTIONS:
            raise ConfigError(f"unknown settings section [{section}]: see docs/configuration.md")
        target = _SECTIONS[section]
        names = {f.name for f in dataclasses.fields(target)}
        args: dict[str, Any] = {}
        for name, raw in values.items():
            if name not in names:
                raise ConfigError(
                    f"unknown setting {section}.{name}; known: {', '.join(sorted(names))}"
                )
            if name == _PASSTHROUGH.get(section):
                args[name] = MappingProxyType({str(k): str(v) for k, v in raw.items()})
            else:
                args[name] = _coerce(section, name, raw, target)
        kwargs[section] = target(**args)
    return Settings(**kwargs)


def _embedded_addresses(state_dir: Path) -> tuple[str, str]:
    """Addresses of a running embedded stack (``retailpulse infra up``), if any."""
    state_file = state_dir / "infra.json"
    try:
        state = json.loads(state_file.read_text())
        supervisor = int(state.get("supervisor_pid", 0))
        if supervisor:
            os.kill(supervisor, 0)  # a stale file (its supervisor is gone) names dead servers
        return state["kafka"]["address"], state["redis"]["address"]
    except (OSError, ValueError, KeyError, TypeError):
        return "", ""


def load_settings(
    *,
    config_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    use_embedded: bool = True,
) -> Settings:
    """Build the settings from defaults, a TOML file, the environment and CLI overrides.

    ``env`` defaults to ``os.environ``; tests pass a dict. With ``use_embedded``, a Kafka or
    Redis address left unset is taken from the embedded stack's state file, if one runs.
    """
    layers: dict[str, dict[str, Any]] = {}
    if config_file is not None:
        try:
            _merge(layers, tomllib.loads(Path(config_file).read_text()))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read settings file {config_file}: {exc}") from exc
    _merge(layers, _env_layer(os.environ if env is None else env))
    if overrides:
        _merge(
            layers,
            {
                k: {n: v for n, v in s.items() if v is not None} if isinstance(s, Mapping) else s
                for k, s in overrides.items()
                if s is not None
            },
        )
    settings = _build(layers)
    if use_embedded and not (settings.kafka.bootstrap_servers and settings.redis.url):
        kafka_addr, redis_addr = _embedded_addresses(settings.state_dir)
        settings = settings.replace(
            kafka=dataclasses.replace(
                settings.kafka, bootstrap_servers=settings.kafka.bootstrap_servers or kafka_addr
            ),
            redis=dataclasses.replace(settings.redis, url=settings.redis.url or redis_addr),
        )
    return settings

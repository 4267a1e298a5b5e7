"""Schema ids: from the committed manifest, or from a Confluent-compatible registry.

Both resolvers answer the same two questions, so the serializers don't care which is in use:
which id do I write for a family (the newest version), and which writer schema does an id
name (any version, any family, so older and newer producers keep working).

>>> catalog = SchemaCatalog.load()
>>> catalog.latest("orders").schema_id
201
>>> ManifestResolver(catalog).writer_schema(201)["name"]
'OrderEvent'
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from typing import Any, Protocol

from schemas import schema_root
from streams.errors import ConfigError, DecodeError, SchemaError

__all__ = [
    "ManifestResolver",
    "RegistryResolver",
    "SchemaCatalog",
    "SchemaResolver",
    "SchemaVersion",
    "build_resolver",
]


@dataclass(frozen=True)
class SchemaVersion:
    family: str
    version: int
    schema_id: int
    schema: Mapping[str, Any]  # the .avsc as parsed JSON (not fastavro-parsed)
    source: str  # file it came from, for messages

    @property
    def text(self) -> str:
        return json.dumps(self.schema, sort_keys=True, separators=(",", ":"))


class SchemaCatalog:
    """Every committed version of every family, as listed in ``schemas/manifest.json``."""

    def __init__(self, versions: list[SchemaVersion]) -> None:
        self._by_family: dict[str, list[SchemaVersion]] = {}
        self._by_id: dict[int, SchemaVersion] = {}
        for v in sorted(versions, key=lambda v: (v.family, v.version)):
            if v.schema_id in self._by_id:
                other = self._by_id[v.schema_id]
                raise SchemaError(
                    f"schema id {v.schema_id} is used by {other.source} and {v.source}"
                )
            self._by_id[v.schema_id] = v
            self._by_family.setdefault(v.family, []).append(v)

    @classmethod
    def load(cls, root: Traversable | None = None) -> SchemaCatalog:
        root = schema_root() if root is None else root
        try:
            manifest = json.loads(root.joinpath("manifest.json").read_text())
        except (OSError, ValueError) as exc:
            raise SchemaError(f"cannot read the schema manifest: {exc}") from exc
        versions: list[SchemaVersion] = []
        for family, entry in manifest["families"].items():
            for item in entry["versions"]:
                path = root.joinpath(item["file"])
                try:
                    schema = json.loads(path.read_text())
                except (OSError, ValueError) as exc:
                    raise SchemaError(f"cannot read schema {item['file']}: {exc}") from exc
                versions.append(
                    SchemaVersion(
                        family, int(item["version"]), int(item["id"]), schema, item["file"]
                    )
                )
        return cls(versions)

    @property
    def families(self) -> list[str]:
        return list(self._by_family)

    def versions(self, family: str) -> list[SchemaVersion]:
        try:
            return list(self._by_family[family])
        except KeyError:
            raise SchemaError(f"unknown event family {family!r}; known: {self.families}") from None

    def latest(self, family: str) -> SchemaVersion:
        return self.versions(family)[-1]

    def by_id(self, schema_id: int) -> SchemaVersion | None:
        return self._by_id.get(schema_id)


class SchemaResolver(Protocol):
    """What the serde needs: the id to write per family, the writer schema per id."""

    def id_for(self, family: str) -> int: ...

    def writer_schema(self, schema_id: int) -> Mapping[str, Any]: ...


class ManifestResolver:
    """Ids fixed in the committed manifest: deterministic, no server needed."""

    def __init__(self, catalog: SchemaCatalog) -> None:
        self.catalog = catalog

    def id_for(self, family: str) -> int:
        return self.catalog.latest(family).schema_id

    def writer_schema(self, schema_id: int) -> Mapping[str, Any]:
        version = self.catalog.by_id(schema_id)
        if version is None:
            raise DecodeError(f"unknown schema id {schema_id}", schema_id=schema_id)
        return version.schema


class RegistryResolver:
    """Ids from a Confluent-compatible Schema Registry (subject ``<topic>-value``).

    The newest committed version of each family is registered (idempotent: the registry
    returns the existing id for an identical schema) the first time it is needed; writer
    schemas for ids we did not register are fetched once and cached.
    """

    def __init__(
        self,
        catalog: SchemaCatalog,
        url: str,
        client_config: Mapping[str, str],
        topics: Mapping[str, str],
    ) -> None:
        try:
            from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
        except ImportError as exc:  # the [registry] extra pulls in httpx, authlib...
            raise ConfigError(
                "a schema registry URL is set but the registry client is not installed: "
                "pip install 'retailpulse[registry]'"
            ) from exc
        self._schema_cls: Any = Schema
        self._client = SchemaRegistryClient({**client_config, "url": url})
        self.catalog = catalog
        self._topics = dict(topics)
        self._ids: dict[str, int] = {}
        self._schemas: dict[int, Mapping[str, Any]] = {}
        self._lock = threading.Lock()

    def id_for(self, family: str) -> int:
        with self._lock:
            if family not in self._ids:
                latest = self.catalog.latest(family)
                subject = f"{self._topics[family]}-value"
                try:
                    schema_id = self._client.register_schema(
                        subject, self._schema_cls(latest.text, schema_type="AVRO")
                    )
                except Exception as exc:  # the client raises its own error types
                    raise SchemaError(f"registering {subject} failed: {exc}") from exc
                self._ids[family] = schema_id
                self._schemas[schema_id] = latest.schema
            return self._ids[family]

    def writer_schema(self, schema_id: int) -> Mapping[str, Any]:
        with self._lock:
            cached = self._schemas.get(schema_id)
        if cached is not None:
            return cached
        try:
            schema = json.loads(self._client.get_schema(schema_id).schema_str or "")
        except Exception as exc:
            raise DecodeError(
                f"schema id {schema_id} is not in the registry: {exc}", schema_id=schema_id
            ) from exc
        with self._lock:
            self._schemas[schema_id] = schema
        return schema


def build_resolver(
    catalog: SchemaCatalog,
    *,
    registry_url: str,
    registry_config: Mapping[str, str],
    topics: Mapping[str, str],
) -> SchemaResolver:
    if registry_url:
        return RegistryResolver(catalog, registry_url, registry_config, topics)
    return ManifestResolver(catalog)

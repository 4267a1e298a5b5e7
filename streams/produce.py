"""Write events to their family's topic in the Confluent Avro wire format, confirmed.

Used by ``retailpulse simulate`` and ``retailpulse replay``. The producer confirms delivery
every ``confirm_every`` messages (and at the end), so memory stays bounded and a broker that
drops writes makes the command fail loudly instead of reporting success.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from streams.kafka_io import ConfirmingProducer, producer_config
from streams.registry import SchemaCatalog, SchemaResolver, build_resolver
from streams.serde import AvroSerializer
from streams.settings import Settings

__all__ = ["EventLike", "EventProducer"]


class EventLike(Protocol):
    @property
    def family(self) -> str: ...
    @property
    def key(self) -> str: ...
    @property
    def value(self) -> Mapping[str, Any]: ...


class EventProducer:
    """Encode and produce events; ``counts`` says how many of each family were confirmed."""

    def __init__(
        self,
        settings: Settings,
        *,
        resolver: SchemaResolver | None = None,
        confirm_every: int = 50_000,
    ) -> None:
        self._topics = settings.topics.input_topics()
        self._resolver = resolver or build_resolver(
            SchemaCatalog.load(),
            registry_url=settings.serde.schema_registry_url,
            registry_config=settings.serde.schema_registry,
            topics=self._topics,
        )
        self._serializers: dict[str, AvroSerializer] = {}
        self._producer = ConfirmingProducer(producer_config(settings.kafka, **{"linger.ms": 20}))
        self._confirm_every = confirm_every
        self._pending: Counter[str] = Counter()
        self._unconfirmed = 0  # = sum(self._pending.values()), kept off the per-event path
        self.counts: Counter[str] = Counter()

    def _serializer(self, family: str) -> AvroSerializer:
        ser = self._serializers.get(family)
        if ser is None:
            ser = self._serializers[family] = AvroSerializer(self._resolver, family)
        return ser

    def send(self, event: EventLike) -> None:
        data = self._serializer(event.family)(event.value)
        self._producer.produce(self._topics[event.family], data, key=event.key.encode())
        self._pending[event.family] += 1
        self._unconfirmed += 1
        if self._unconfirmed >= self._confirm_every:
            self.confirm()

    def send_all(
        self,
        events: Iterable[EventLike],
        *,
        rate: float = 0.0,
        on_progress: Callable[[int], None] | None = None,
    ) -> Counter[str]:
        """Send everything; ``rate`` > 0 paces to that many events per second (live mode)."""
        started = time.monotonic()
        for n, event in enumerate(events, start=1):
            self.send(event)
            if on_progress is not None and n % 1000 == 0:
                on_progress(1000)
            if rate > 0:
                ahead = n / rate - (time.monotonic() - started)
                if ahead > 0.5:  # idle anyway: confirm what is in flight while we wait
                    self.confirm()
                if ahead > 0.002:
                    time.sleep(ahead)
        self.confirm()
        return self.counts

    def confirm(self) -> None:
        """Wait until Kafka acknowledged everything sent so far (raises DeliveryError)."""
        self._producer.flush_or_raise()
        self.counts.update(self._pending)
        self._pending.clear()
        self._unconfirmed = 0

"""Event-to-Redis latency of a live run at a fixed produce rate.

Method. The flows run live (``retailpulse run --live`` as a subprocess) on a fresh set of
topics. This process produces simulated events at ``rate`` per second, each serialized
beforehand with its ``event_time`` set to its planned send time (so the flows see "now"
events, as in production), and records per message, from the delivery report, its topic,
partition, offset and when the broker acknowledged it. A poller thread reads the ingest
``offsets`` hashes (``<prefix>:v1:offsets:<family>``, field ``<topic>:<partition>`` = next
offset, written by the same Redis sink batch as every model write of that Kafka batch;
docs/redis.md) in one pipelined round trip every ``poll_s``. A message's latency is the time
of the first poll that shows its partition's next offset above its own offset, minus its
planned send time.

The offsets hash is written by the ingest path, which does not wait for the model flows'
event-time sequencers (docs/event-time.md). So a second probe follows a model write: every
``ORDER_PLACED`` order always publishes its customer's score, ``<prefix>:v1:customer:<id>``
with ``as_of`` = the order's event time (docs/redis.md); the poller reads ``as_of`` of the
customers with one of every ``model_every`` orders in flight (pipelined HGETs, same poll)
and an order's model latency is the first poll showing ``as_of`` >= its event time, minus
its planned send time.

Resolution: the poll interval plus one poll round trip (~0.3 ms) in the worst case (the
figure is an upper bound by at most that much); the producer's ``linger.ms`` is part of
the measured latency, as it is for any producer.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import redis
from confluent_kafka import Producer

from infra.redis_sink import redis_key
from streams.registry import ManifestResolver, SchemaCatalog
from streams.serde import AvroSerializer
from streams.settings import Settings

__all__ = [
    "measure_latency",
    "new_producer",
    "pct",
    "plan_messages",
    "send_planned",
    "steady_mix",
]

_DAY_MS = 86_400_000


def steady_mix(events: Iterable[Any], seed: int) -> Iterator[Any]:
    """The simulator's events, shuffled within each simulated day (seeded).

    Why: the simulator emits a day in bursts (the overnight inventory counts, supplier
    updates), and replayed at a fixed rate a burst is a second or more in which no order or
    click is produced. Since the live run stamps each event with its send time, those gaps
    would become real silences of the clock partitions that the model flows' event-time
    sequencers wait for (docs/event-time.md): the latency would measure the simulator's
    burst length, not the pipeline. Shuffled, every family arrives steadily, as in a shop.

    >>> class E:
    ...     def __init__(self, t: int) -> None: self.event_time = t
    >>> mixed = list(steady_mix([E(1), E(2), E(3), E(_DAY_MS), E(_DAY_MS + 1)], 1))
    >>> [e.event_time // _DAY_MS for e in mixed]  # days stay in order, each one shuffled
    [0, 0, 0, 1, 1]
    """
    rng = random.Random(seed)
    day: list[Any] = []
    current: int | None = None
    for ev in events:
        d = ev.event_time // _DAY_MS
        if d != current and day:
            rng.shuffle(day)
            yield from day
            day = []
        current = d
        day.append(ev)
    rng.shuffle(day)
    yield from day


class _Poller(threading.Thread):
    def __init__(self, settings: Settings, poll_s: float) -> None:
        super().__init__(daemon=True)
        self._client = redis.Redis.from_url(settings.redis.require_url())
        self._keys = [
            redis_key(settings.redis.key_prefix, "offsets", f)
            for f in settings.topics.input_topics()
        ]
        self._poll_s = poll_s
        self._prefix = settings.redis.key_prefix
        self.samples: list[tuple[float, dict[str, int]]] = []  # (time, "topic:p" -> next)
        self.stop = threading.Event()
        # Orders in flight: customer -> [(event time ms, send time)]; model latencies found.
        self._lock = threading.Lock()
        self._orders: dict[str, list[tuple[int, float]]] = {}
        self.model_latencies: list[float] = []

    def order_sent(self, customer: str, event_ms: int, sent: float) -> None:
        with self._lock:
            self._orders.setdefault(customer, []).append((event_ms, sent))

    def orders_pending(self) -> int:
        with self._lock:
            return sum(map(len, self._orders.values()))

    def _check_orders(self) -> None:
        with self._lock:
            customers = list(self._orders)
        if not customers:
            return
        pipe = self._client.pipeline(transaction=False)
        for c in customers:
            pipe.hget(redis_key(self._prefix, "customer", c), "as_of")
        replies = pipe.execute()
        seen = time.time()
        with self._lock:
            for c, as_of in zip(customers, replies, strict=True):
                if as_of is None:
                    continue
                done = [(t, s) for t, s in self._orders[c] if int(as_of) >= t]
                if done:
                    self.model_latencies.extend(seen - s for _, s in done)
                    left = [(t, s) for t, s in self._orders[c] if int(as_of) < t]
                    if left:
                        self._orders[c] = left
                    else:
                        del self._orders[c]

    def snapshot(self) -> dict[str, int]:
        pipe = self._client.pipeline(transaction=False)
        for key in self._keys:
            pipe.hgetall(key)
        merged: dict[str, int] = {}
        for fields in pipe.execute():
            for k, v in fields.items():
                if k != b"_version":
                    merged[k.decode()] = int(v)
        return merged

    def run(self) -> None:
        last: dict[str, int] = {}
        while not self.stop.is_set():
            now_offsets = self.snapshot()
            seen = time.time()
            if now_offsets != last:  # only changes matter; keeps the list short
                self.samples.append((seen, now_offsets))
                last = now_offsets
            self._check_orders()
            time.sleep(self._poll_s)


def _latencies(
    sent: list[tuple[float, str, int, int, float]], samples: list[tuple[float, dict[str, int]]]
) -> tuple[list[float], list[float], int]:
    """Per sent message, the first sample showing it written minus its send time, and the
    same minus its delivery report (the part after the broker acknowledged it)."""
    by_part: dict[str, list[tuple[int, float]]] = {}
    for seen, offsets in samples:
        for part, nxt in offsets.items():
            by_part.setdefault(part, []).append((nxt, seen))
    out: list[float] = []
    after_ack: list[float] = []
    missing = 0
    for t_send, topic, partition, offset, t_ack in sent:
        series = by_part.get(f"{topic}:{partition}", [])
        hit = next((seen for nxt, seen in series if nxt > offset), None)
        if hit is None:
            missing += 1
        else:
            out.append(max(0.0, hit - t_send))
            after_ack.append(max(0.0, hit - t_ack))
    return out, after_ack, missing


# One planned message: (send time, topic, value, key, customer followed or None, event ms).
_Planned = tuple[float, str, bytes, bytes, str | None, int]
# One acknowledged message: (planned time, topic, partition, offset, delivery report time).
_Sent = tuple[float, str, int, int, float]


def plan_messages(
    settings: Settings, events: Iterable[Any], rate: float, duration_s: float, model_every: int
) -> tuple[list[_Planned], float]:
    """``rate * duration_s`` events serialized, each stamped with its planned send time."""
    resolver = ManifestResolver(SchemaCatalog.load())
    topics = settings.topics.input_topics()
    serializers = {f: AvroSerializer(resolver, f) for f in topics}
    wanted = max(1, int(rate * duration_s))
    batch = [ev for _, ev in zip(range(wanted), events, strict=False)]
    start_s = time.time() + 0.2 + wanted * 25e-6  # after serializing (~20 us per event)
    plan: list[_Planned] = []
    orders = 0
    for i, ev in enumerate(batch):
        due = start_s + i / rate
        value = dict(ev.value)
        value["event_time"] = int(due * 1000)
        placed = ev.family == "orders" and value.get("event_type") == "ORDER_PLACED"
        customer = None
        if placed:
            # Every model_every-th order is followed to its customer score: following all
            # of them cost the poller one HGET per order in flight on every poll.
            orders += 1
            customer = value.get("customer_id") if orders % model_every == 0 else None
        data = serializers[ev.family](value)
        plan.append((due, topics[ev.family], data, ev.key.encode(), customer, value["event_time"]))
    return plan, start_s


def new_producer(settings: Settings, linger_ms: int) -> Producer:
    return Producer(
        {**settings.kafka.client_config(), "linger.ms": linger_ms, "acks": "all", "log_level": 0}
    )


def send_planned(
    plan: list[_Planned],
    start_s: float,
    producer: Producer,
    follow: Callable[[str, int, float], None] | None = None,
) -> tuple[list[_Sent], float, float]:
    """Produce each message at its planned time; (acknowledged, seconds taken, worst lag)."""
    sent: list[_Sent] = []

    def delivered(due: float) -> Any:
        def cb(err: Any, msg: Any) -> None:
            if err is None:
                sent.append((due, msg.topic(), msg.partition(), msg.offset(), time.time()))

        return cb

    lag = 0.0  # how far behind its plan the producer fell, at worst
    for due, topic, data, key, customer, event_ms in plan:
        ahead = due - time.time()
        if ahead > 0:
            time.sleep(ahead)
        else:
            lag = max(lag, -ahead)
        if customer and follow is not None:
            follow(customer, event_ms, due)
        producer.produce(topic, data, key=key, on_delivery=delivered(due))
        producer.poll(0)
    produced_s = time.time() - start_s
    producer.flush(30)
    return sent, produced_s, lag


def pct(q: float, values: list[float]) -> float:
    """The q-quantile of sorted seconds, in milliseconds (nan when empty)."""
    if not values:
        return float("nan")
    return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 1)


def measure_latency(
    settings: Settings,
    events: Iterable[Any],
    *,
    rate: float,
    duration_s: float,
    poll_s: float = 0.01,
    drain_s: float = 10.0,
    model_every: int = 8,
    linger_ms: int = 5,
) -> dict[str, Any]:
    """Produce ``events`` (SimEvent-like) at ``rate``/s for ``duration_s``; latency figures.

    The live flow must already be running on ``settings``' topics and Redis prefix.

    The messages are serialized before the clock starts, each stamped with its *planned*
    send time (start + i / rate), and latency counts from that planned time: a producer
    that falls behind adds its lag to the figure instead of hiding it (no coordinated
    omission), and the timed loop only calls ``produce``, so the benchmark's own Python
    (simulator, Avro) does not compete with the flow for the two cores while it is timed.
    """
    plan, start_s = plan_messages(settings, events, rate, duration_s, model_every)
    producer = new_producer(settings, linger_ms)
    poller = _Poller(settings, poll_s)
    poller.start()
    sent, produced_s, lag = send_planned(plan, start_s, producer, poller.order_sent)
    # Wait until everything sent is visible (or drain_s passes), then stop polling.
    # Every partition's highest sent offset, not only the last few sent: partitions are
    # consumed independently, so the last message sent is not the last one written.
    highest: dict[str, int] = {}
    for _, t, p, o, _ in sent:
        where = f"{t}:{p}"
        highest[where] = max(o, highest.get(where, -1))
    deadline = time.monotonic() + drain_s
    while time.monotonic() < deadline:
        last_seen = poller.samples[-1][1] if poller.samples else {}
        if poller.orders_pending() == 0 and all(
            last_seen.get(where, 0) > o for where, o in highest.items()
        ):
            break
        time.sleep(0.05)
    time.sleep(0.05)
    poller.stop.set()
    poller.join()
    lat, after_ack, missing = _latencies(sent, poller.samples)
    lat.sort()
    after_ack.sort()
    acked = sorted(t_ack - due for due, _, _, _, t_ack in sent)
    model = sorted(poller.model_latencies)
    return {
        "target_rate": round(rate, 1),
        "achieved_rate": round(len(sent) / max(produced_s, 1e-9), 1),
        "messages": len(sent),
        "not_seen_in_redis": missing,
        "latency_ms_p50": pct(0.50, lat),
        "latency_ms_p90": pct(0.90, lat),
        "latency_ms_p99": pct(0.99, lat),
        "latency_ms_max": round(lat[-1] * 1000, 1) if lat else None,
        "latency_ms_mean": round(statistics.fmean(lat) * 1000, 1) if lat else None,
        # The customer score of each ORDER_PLACED (through the customers flow's sequencer).
        "model_orders": len(model),
        "model_orders_not_seen": poller.orders_pending(),
        "model_latency_ms_p50": pct(0.50, model),
        "model_latency_ms_p90": pct(0.90, model),
        "model_latency_ms_p99": pct(0.99, model),
        "model_latency_ms_max": round(model[-1] * 1000, 1) if model else None,
        "poll_interval_ms": poll_s * 1000,
        "producer_linger_ms": linger_ms,
        # Planned send -> delivery report (broker ack, polled by the send loop): the part
        # of the latency spent before the flow can see the message.
        "broker_ack_ms_p50": pct(0.50, acked),
        "broker_ack_ms_p99": pct(0.99, acked),
        # Delivery report -> visible in Redis: the flow's part (fetch, decode, models, sink).
        "after_ack_ms_p50": pct(0.50, after_ack),
        "after_ack_ms_p99": pct(0.99, after_ack),
        "producer_max_lag_ms": round(lag * 1000, 1),
        "polls_with_changes": len(poller.samples),
    }


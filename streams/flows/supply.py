"""The supply flow: purchase orders -> lead times, supplier risk, disruption alerts -> Redis.

    events --supply_route--+-- supplier events (a packet per batch, the engine's key) +
                           +-- order lines, snapshots (a store's shard key) --------+
    demand forecasts --supply_forecasts (a store's shard key) ----------------------+
                 --supply_cover (days of cover per store, run.shards keys; supplier
                   events pass)--supply_to_engine (the engine's key)--supply_state
                 --supply_split_errors--+
                    +--supply_writes--> writes
                    +--supply_errors--> process:supply dead letters (events that raised)

Supplier events are few (one PO makes ~4), so every supplier is handled by ONE keyed state
(:class:`SupplyEngine`): the shared River lead-time model and the shared HalfSpaceTrees
need to see every supplier, and "late" needs one event-time watermark that a silent
(disrupted) supplier cannot hold back. Orders and inventory are many: their days of cover
are computed per SKU x store in parallel (``supply_cover``: stores spread over the shards
by crc32, processors/shards.py) and reach the engine at most once per pair and day. Time
is event time only; a replay writes the same values.
"""

from __future__ import annotations

import json
import logging
import pickle
import zlib
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import bytewax.operators as op
import orjson
import redis
from bytewax.dataflow import Stream

from processors.records import DeadLetter, Event
from processors.sequencer import IDLE_RELEASE_S, Sequenced, Sequencer
from processors.shards import Shards
from processors.supply_engine import SupplyEngine, SupplySettings, detection_scores
from processors.supply_impact import Cover, CoverTracker, StoreCover, StoreMoves
from processors.writes import HashWrite, RedisWrite
from streams.dataflow import InputPartitions
from streams.decode import EventDeadLetters, process_failures
from streams.flows.packets import CoverPacket, EventPacket, Packet
from streams.flows.sequenced import Out, SequencedLogic, guarded
from streams.settings import Settings

__all__ = ["SupplyEngine", "SupplyFlow", "SupplySettings", "detection_scores", "supply_report"]

log = logging.getLogger(__name__)


# -- Bytewax wiring -------------------------------------------------------------------------
_ENGINE_SLOT = 1  # placed apart from demand's (0) and customers' (5) engines


def engine_key(shards: Shards) -> str:
    """The one key of the engine's state (see the module docstring)."""
    return shards.engine_key("supply", slot=_ENGINE_SLOT)


class _Router:
    """One call per batch: supplier events to the engine's key in one packet, stock moves
    grouped per store (one item per store and batch: an item that crosses to another
    process is pickled on its own, docs/scaling.md). An event that cannot be routed goes,
    as a dead letter in the packet, to the engine's key, which passes it on to
    ``supply_errors``."""

    def __init__(
        self,
        shards: Shards,
        failures: EventDeadLetters,
        fault: Callable[[Event], None] | None = None,
    ) -> None:
        self.shards = shards
        self.key = engine_key(shards)
        self.failures = failures
        self.fault = fault

    def __call__(self, batch: list[Event]) -> list[tuple[str, Any]]:
        return _route(batch, self.key, self.shards, self.failures, self.fault)


def _route(
    batch: list[Event],
    key: str,
    shards: Shards,
    failures: EventDeadLetters,
    fault: Callable[[Event], None] | None,
) -> list[tuple[str, Any]]:
    packet: list[Event | DeadLetter] = []
    per_store: dict[str, list[tuple[str, str, float, int]]] = {}
    for e in batch:
        try:
            if fault is not None:
                fault(e)
            if e.family == "supplier":
                packet.append(e)
                continue
            v = e.value
            if e.family == "inventory":
                moves = [("snap", v["sku"], int(v["on_hand"]), e.event_time)]
            elif e.family == "orders":
                sign = _SALE_SIGN.get(v.get("event_type", ""), 0)
                moves = [
                    ("sale", ln["sku"], sign * int(ln["quantity"]), e.event_time)
                    for ln in v.get("lines") or ()
                ] if sign else []  # fmt: skip
            else:
                continue
            per_store.setdefault(v["store_id"], []).extend(moves)
        except Exception as exc:  # a malformed record must not stop the flow
            packet.append(failures.dead_letter(e, exc))
    out: list[tuple[str, Any]] = [(key, EventPacket(packet))] if packet else []
    out.extend(
        (shards.key_of(_COVER_STEP, store), StoreMoves(store, Packet(moves)))
        for store, moves in per_store.items()
    )
    return out


_SALE_SIGN = {"ORDER_PLACED": 1, "ORDER_CANCELLED": -1}


class _CoverLogic(op.StatefulBatchLogic[Any, Any, bytes]):
    """One shard of stores (a :class:`~processors.supply_impact.StoreCover` each); supplier
    events and dead letters (the engine's key) pass through. The snapshot is
    ``{store: {sku: CoverTracker}}``."""

    def __init__(self, alpha: float, resume: bytes | None, idle_days: float = 56.0) -> None:
        self.alpha = alpha
        self.idle_days = int(idle_days)
        stored: dict[str, dict[str, CoverTracker]] = pickle.loads(resume) if resume else {}
        self.stores = {store: StoreCover(trackers) for store, trackers in stored.items()}

    def on_batch(self, values: list[Any]) -> tuple[Iterable[Any], bool]:
        if values and not isinstance(values[0], StoreMoves):  # the engine's key: no state
            return values, op.StatefulBatchLogic.DISCARD
        per_store: dict[str, list[tuple[str, Cover]]] = {}
        for item in values:
            cover = self.stores.get(item.store)
            if cover is None:
                cover = self.stores[item.store] = StoreCover({})
            got = cover.apply(item.moves, self.alpha, self.idle_days)
            if got:
                per_store.setdefault(item.store, []).extend(got)
        out = [("covers", store, CoverPacket(covers)) for store, covers in per_store.items()]
        return out, op.StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes:
        stored = {store: c.trackers for store, c in self.stores.items()}
        return pickle.dumps(stored, protocol=pickle.HIGHEST_PROTOCOL)


class _EngineLogic(SequencedLogic[SupplyEngine]):
    """Sequences supplier events and covers by event time (docs/event-time.md), feeds what
    is released to the engine; its snapshot is a pickle (cheaper than a deepcopy)."""

    def __init__(
        self,
        settings: SupplySettings,
        resume: bytes | None,
        failures: EventDeadLetters | None = None,  # None: count and log only
        partitions: InputPartitions | None = None,
        idle_s: float | None = None,
    ) -> None:
        loaded = pickle.loads(resume) if resume is not None else None
        if isinstance(loaded, Sequenced):
            state: Sequenced[SupplyEngine] = loaded
        else:  # fresh, or a bare engine (tests build one): a new sequencer in front
            seq = Sequencer(clock=("supplier",), inclusive=partitions is None)
            if partitions is not None:
                seq.expect(partitions.expected({"supplier"}), partitions.ends({"supplier"}))
            state = Sequenced(loaded or SupplyEngine(settings), seq)
        super().__init__(state, idle_s)
        self.engine = state.model
        self.failures = failures

    def on_batch(self, values: list[Any]) -> tuple[Iterable[RedisWrite | DeadLetter], bool]:
        out: Out = []
        events: list[Event] = []
        for item in values:
            if isinstance(item, list):  # a packet from _route
                for x in item:
                    if isinstance(x, Event):
                        events.append(x)
                    else:  # a dead letter from _route: on to supply_errors
                        self.engine.errors += 1
                        out.append(x)
            else:
                _, store, covers = item
                for sku, cover in covers:
                    self.state.sequencer.push(_cover_event(store, sku, cover))
        self._push(events)
        out.extend(self._apply(self.state.sequencer.pop_ready(), final=False))
        return out, self.RETAIN

    def on_eof(self) -> tuple[Iterable[RedisWrite | DeadLetter], bool]:
        out = self._apply(self.state.sequencer.flush(), final=True)
        # At the end of a bounded input every supplier's hash and the scores are written
        # once more at the final watermark, so the last write does not depend on which
        # batch happened to touch a supplier last.
        self.engine.dirty.update(self.engine.metrics)
        out.extend(self.engine.flush())
        return out, self.RETAIN

    def _apply(self, events: list[Event], *, final: bool) -> Out:
        out: Out = []
        for ev in events:
            out.extend(guarded(ev, self._one, self._failed))
        out.extend(self.engine.flush())
        return out

    def _one(self, ev: Event) -> list[RedisWrite]:
        if ev.family == _COVER:
            v = ev.value
            return self.engine.on_cover(v["sku"], v["store"], v["cover"])
        return self.engine.on_supplier(ev.value, ev.event_time)

    def _failed(self, ev: Event, exc: Exception) -> DeadLetter | None:
        self.engine.errors += 1  # bad input must not stop the flow: count it, go on
        if ev.family != _COVER and self.failures is not None:
            return self.failures.dead_letter(ev, exc)
        log.error("supply: could not process %r", ev, exc_info=exc)  # a cover: no one record
        return None

    def snapshot(self) -> bytes:
        return pickle.dumps(self.state, protocol=pickle.HIGHEST_PROTOCOL)


_COVER = "cover"  # the family of a cover wrapped for the sequencer


def _cover_event(store: str, sku: str, cover: Cover) -> Event:
    """A cover as an event the sequencer can order: covers of equal time leave in a stable
    (store, sku) order (crc32, never Python's salted hash()).

    >>> e = _cover_event("ST1", "SK-1", Cover(10, 2.0, 5.0, 7))
    >>> e.family, e.event_time, e.offset
    ('cover', 7, 2416224779)
    """
    value = {"store": store, "sku": sku, "cover": cover}
    return Event(_COVER, None, value, cover.t, 0, _COVER, 0,
                 zlib.crc32(f"{store}\x1f{sku}".encode()))  # fmt: skip


_COVER_STEP = "supply_cover"


class _ToEngine:
    """Everything leaving ``supply_cover`` goes to the engine's key."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __call__(self, kv: tuple[str, Any]) -> tuple[str, Any]:
        return (self.key, kv[1])


_FORECAST_DAYS = 7  # days of cover compare with delays of days to weeks: next week's mean


class _ForecastMoves:
    """A batch of demand writes -> the SKU x store forecasts' cover moves, one item per
    store (its shard's key), in the order of the batch.

    >>> from processors.writes import HashWrite
    >>> def w(sku, store, mean):
    ...     return HashWrite("forecast", f"sku_store:{sku}:{store}", {"mean": mean}, 86_400_000)
    >>> shards = Shards(2)
    >>> got = _ForecastMoves(shards)([w("SK-1", "ST2", "[1.0,2.0,3.0]"), w("SK-2", "ST2", "[4]")])
    >>> [(k == shards.key_of("supply_cover", "ST2"), m) for k, m in got]
    [(True, StoreMoves(store='ST2', moves=[('forecast', 'SK-1', 2.0, 86400000), \
('forecast', 'SK-2', 4.0, 86400000)]))]
    """

    def __init__(self, shards: Shards) -> None:
        self.shards = shards

    def __call__(self, writes: list[RedisWrite]) -> list[tuple[str, StoreMoves]]:
        per_store: dict[str, list[tuple[str, str, float, int]]] = {}
        for write in writes:
            if not (
                isinstance(write, HashWrite)
                and write.kind == "forecast"
                and write.entity.startswith("sku_store:")
            ):
                continue
            sku, store = write.entity.removeprefix("sku_store:").rsplit(":", 1)
            try:
                # orjson: 0.95 us per 28-value row against json's 7.6 (~100k rows in the
                # e2e run); same floats, and its JSONDecodeError is a ValueError.
                mean = orjson.loads(str(write.fields["mean"]))[:_FORECAST_DAYS]
            except (KeyError, ValueError):
                continue
            if mean:
                move = ("forecast", sku, sum(mean) / len(mean), write.version)
                per_store.setdefault(store, []).append(move)
        key_of = self.shards.key_of
        return [(key_of(_COVER_STEP, st), StoreMoves(st, Packet(m))) for st, m in per_store.items()]


class ForecastSource(Protocol):
    """A flow whose built output carries demand forecasts (DemandFlow)."""

    output: Stream[RedisWrite] | None


class SupplyFlow:
    """FlowExtension ``supply``: PO tracking, lead times, supplier risk, disruption alerts.

    With ``forecasts`` (the demand flow, built before this one), days of cover use its
    published forecasts instead of a sales average.
    """

    name = "supply"

    def __init__(
        self,
        settings: SupplySettings | None = None,
        *,
        forecasts: ForecastSource | None = None,
        fault: Callable[[Event], None] | None = None,
    ) -> None:
        self.settings = settings or SupplySettings()
        self.forecasts = forecasts
        self.fault = fault  # tests only: called per event; what it raises is a model error
        self.errors: Stream[DeadLetter] | None = None  # set by build(): process:supply
        # Set by build_flow from Kafka metadata before build() (None: TestingSource input).
        self.input_partitions: InputPartitions | None = None

    def build(self, events: Stream[Event], settings: Settings) -> Stream[RedisWrite]:
        s = self.settings
        failures = process_failures(self.name, settings)
        shards = Shards(settings.run.shards)
        routed = op.flat_map_batch("supply_route", events, _Router(shards, failures, self.fault))
        if self.forecasts is not None and self.forecasts.output is not None:
            moves = _ForecastMoves(shards)
            forecasts = op.flat_map_batch("supply_forecasts", self.forecasts.output, moves)
            routed = op.merge("supply_with_forecasts", routed, forecasts)
        covered = op.stateful_batch(
            _COVER_STEP, routed, lambda r: _CoverLogic(s.demand_alpha, r, s.cover_idle_days)
        )
        to_engine = op.map("supply_to_engine", covered, _ToEngine(engine_key(shards)))
        parts = self.input_partitions
        idle_s = IDLE_RELEASE_S if parts is not None and parts.live else None
        state = op.stateful_batch(
            "supply_state", to_engine, lambda r: _EngineLogic(s, r, failures, parts, idle_s)
        )
        split = op.branch("supply_split_errors", state, _is_write)
        self.errors = op.key_rm("supply_errors", split.falses)  # type: ignore[arg-type]
        return op.key_rm("supply_writes", split.trues)  # type: ignore[arg-type]


def _is_write(kv: tuple[str, Any]) -> bool:
    return not isinstance(kv[1], DeadLetter)


# -- report ---------------------------------------------------------------------------------
def _decoded(mapping: Any) -> dict[str, str]:
    def text(x: Any) -> str:
        return x.decode() if isinstance(x, bytes) else str(x)

    return {text(k): text(v) for k, v in (mapping or {}).items()}


def supply_report(client: redis.Redis, prefix: str) -> str:
    """Prequential lead-time scores, alert counts and, when labels exist, detection scores.

    Labels: a JSON list of ``{"supplier_id", "start", "end"}`` (epoch ms) under
    ``<prefix>:v1:supply_truth:episodes`` (the benchmark and tests can write it).
    """
    base = f"{prefix}:v1"
    lead = _decoded(client.hgetall(f"{base}:supply_score:leadtime"))
    det = _decoded(client.hgetall(f"{base}:supply_score:detection"))
    lines = ["supply flow report"]
    if not lead:
        return "supply flow report: no scores yet (has the supply flow run?)"
    lines.append(
        f"lead time: {lead.get('n')} receipts, MAE {lead.get('mae_days')} d "
        f"(per-supplier moving average {lead.get('mae_moving_average_days')} d), "
        f"band coverage {lead.get('coverage')} (target {lead.get('target_coverage')})"
    )
    lines.append(
        f"alerts: opened {det.get('alerts_open', 0)}, updates {det.get('alerts_update', 0)}, "
        f"closed {det.get('alerts_closed', 0)}; processing errors {lead.get('errors', 0)}"
    )
    raw = client.get(f"{base}:supply_truth:episodes")
    if raw:
        opened = {}
        for _, f in client.xrange(f"{base}:alerts:supply") or ():
            fields = _decoded(f)
            if fields.get("status") == "open":
                opened[fields["alert_id"]] = (fields["supplier_id"], int(fields["opened_at"]))
        stats = detection_scores(json.loads(raw), list(opened.values()))
        lines.append("detection: " + ", ".join(f"{k} {v}" for k, v in stats.items()))
    return "\n".join(lines)

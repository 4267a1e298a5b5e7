"""Customer flow: live profiles, churn risk with delayed labels, BG/NBD and CLV -> Redis.

    events --customers_key--> orders | clickstream | catalog, one packet per batch, to one
                              key (placed: processors/shards.py): one global churn
                              model (docs/customers.md)
           --customers_book--> Sequencer (event-time order, docs/event-time.md), then
                               CustomerBook (profiles, labels, models), writes collapsed
                               per batch: the last score per customer
           --customers_split_errors--+--customers_writes--> RedisWrite
                                     +--customers_errors--> process:customers dead letters

Everything is driven by event time: the watermark is the largest event time seen; once per
event-time day a sweep evicts idle customers to packed bytes, forgets long-gone ones,
re-scores quiet customers (so silent churners' risk rises) and matures churn labels.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import bytewax.operators as op
import redis
from bytewax.dataflow import Stream

from processors.customer_book import (
    ALL_FEATURES,
    CustomerBook,
    CustomerScore,
    CustomerSettings,
    score_writes,
)
from processors.records import DeadLetter, Event
from processors.sequencer import IDLE_RELEASE_S, LIVE_CLOCK, Sequenced, Sequencer
from processors.shards import Shards
from processors.writes import HashWrite, RedisWrite
from streams.dataflow import InputPartitions
from streams.decode import EventDeadLetters, process_failures
from streams.flows.packets import Packer
from streams.flows.sequenced import SequencedLogic, guarded
from streams.settings import Settings

__all__ = ["ALL_FEATURES", "CustomerBook", "CustomerFlow", "CustomerSettings", "churn_report"]

log = logging.getLogger(__name__)


_FAMILIES = frozenset({"orders", "clickstream", "catalog"})
ENGINE_SLOT = 5


def new_state(cfg: CustomerSettings, partitions: InputPartitions | None) -> Sequenced[CustomerBook]:
    # Bounded: every partition drives the clock (an ended one stops holding it), so no
    # catalog record is late; at equal time it leaves before orders and clicks. Live: the
    # catalog rides along (a record would hold the clock until the idle release).
    live = partitions is not None and partitions.live
    seq = Sequencer(
        clock=LIVE_CLOCK if live else None,
        max_events=cfg.reorder_max_events,
        inclusive=partitions is None,
    )
    if partitions is not None:
        seq.expect(partitions.expected(_FAMILIES), partitions.ends(_FAMILIES))
    return Sequenced(CustomerBook(cfg), seq)


class _BookLogic(SequencedLogic[CustomerBook]):
    """Events enter the sequencer; what it releases (event-time order) enters the book."""

    def __init__(
        self,
        state: Sequenced[CustomerBook],
        failures: EventDeadLetters,
        fault: Callable[[Event], None] | None = None,
        idle_s: float | None = None,
    ) -> None:
        super().__init__(state, idle_s)
        self.book = state.model
        self.failures = failures
        self.fault = fault

    def _failed(self, ev: Event, exc: Exception) -> DeadLetter:
        self.book.errors += 1
        return self.failures.dead_letter(ev, exc)

    def _apply(self, events: list[Event], *, final: bool) -> list[RedisWrite | DeadLetter]:
        book, fault = self.book, self.fault
        # The raising entry point: process() swallows errors into a counter, but a bad event
        # must reach the dead-letter topic with its reason (docs/dead-letters.md).
        process = book._process
        last: dict[str, CustomerScore] = {}
        alerts: list[CustomerScore] = []
        labels_before = book.metrics.n
        out: list[RedisWrite | DeadLetter] = []
        for ev in events:
            for s in guarded(ev, process, self._failed, fault):
                if isinstance(s, DeadLetter):
                    out.append(s)
                    continue
                last[s.customer] = s  # only the newest score per customer leaves the batch
                if s.alert:
                    alerts.append(s)
        for s in last.values():
            out.extend(score_writes(s, book.cfg))
        for s in alerts:  # an alert is never collapsed away by a later score
            if last[s.customer] is not s:
                out.extend(w for w in score_writes(s, book.cfg) if isinstance(w, HashWrite)
                           and w.channel)  # fmt: skip
        if book.metrics.n != labels_before:
            out.append(HashWrite("churn", "metrics", book.metrics.fields(), book.metrics.n))
        if events or final:
            # The book's health after every batch that applied something (an equal version
            # rewrites, so the last one stands however the events were batched).
            fields = {**book.state_fields(), **self.state.sequencer.stats()}
            fields.pop("peak")  # depends on batch sizes: kept out of the compared state
            out.append(HashWrite("churn", "state", fields, book.watermark))
        return out


class CustomerFlow:
    """The customers :class:`~streams.dataflow.FlowExtension`."""

    name = "customers"

    def __init__(
        self,
        config: CustomerSettings | None = None,
        *,
        fault: Callable[[Event], None] | None = None,
    ) -> None:
        self.config = config or CustomerSettings()
        self.fault = fault  # tests only: called per event; what it raises is a model error
        self.errors: Stream[DeadLetter] | None = None  # set by build(): process:customers
        # Set by build_flow from Kafka metadata before build() (None: TestingSource input).
        self.input_partitions: InputPartitions | None = None

    def build(self, events: Stream[Event], settings: Settings) -> Stream[RedisWrite]:
        cfg, fault = self.config, self.fault
        failures = process_failures(self.name, settings)
        parts = self.input_partitions
        idle_s = IDLE_RELEASE_S if parts is not None and parts.live else None
        # One key (one global churn model, docs/customers.md), placed in slot 5 (demand 0,
        # supply 1): with two workers it shares one with the lighter supply engine, with
        # 3, 6 or 12 it has its own (processors/shards.py, docs/scaling.md).
        key = Shards(settings.run.shards).engine_key("customers", slot=ENGINE_SLOT)
        # One packet of this flow's events per batch (streams/flows/sequenced.py).
        keyed = op.flat_map_batch("customers_key", events, Packer(key, _FAMILIES))
        books = op.stateful_batch(
            "customers_book",
            keyed,
            lambda resume: _BookLogic(resume or new_state(cfg, parts), failures, fault, idle_s),
        )
        split = op.branch("customers_split_errors", books, _is_write)
        self.errors = op.key_rm("customers_errors", split.falses)  # type: ignore[arg-type]
        return op.key_rm("customers_writes", split.trues)  # type: ignore[arg-type]


def _is_write(kv: tuple[str, Any]) -> bool:
    return not isinstance(kv[1], DeadLetter)


def churn_report(client: redis.Redis, prefix: str) -> str:
    """Prequential churn scores on matured labels, as text for ``retailpulse report churn``."""
    m = _text_hash(client.hgetall(f"{prefix}:v1:churn:metrics"))
    s = _text_hash(client.hgetall(f"{prefix}:v1:churn:state"))
    if not m:
        return "churn: no matured labels yet (labels mature one horizon after each score)"
    lines = [
        f"churn (matured labels: {m.get('labels')}, churned: {m.get('churned')})",
        f"  AUC {m.get('auc') or 'n/a'}   log loss {m.get('log_loss') or 'n/a'}   "
        f"ECE {m.get('ece') or 'n/a'}",
        "  reliability: predicted -> observed (count)",
    ]
    for pred, obs, n in json.loads(m.get("reliability", "[]")):
        lines.append(f"    {pred:6.3f} -> {obs:6.3f}  ({n})")
    if s:
        lines.append(
            f"  customers hot {s.get('hot')} evicted {s.get('cold')}  pending labels "
            f"{s.get('pending_labels')}  errors {s.get('errors')}  BG/NBD {s.get('bgnbd')}"
        )
    top = client.zrevrange(f"{prefix}:v1:churn:value_at_risk", 0, 4, withscores=True)
    if top:
        pairs: list[tuple[bytes | str, float]] = top  # type: ignore[assignment]
        lines.append("  top value at risk: " + ", ".join(f"{_text(c)} {v:.0f}" for c, v in pairs))
    return "\n".join(lines)


def _text(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _text_hash(raw: Any) -> dict[str, str]:
    """A hash from either kind of client (``decode_responses`` or not)."""
    return {_text(k): _text(v) for k, v in raw.items()}

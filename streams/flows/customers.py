"""Customer flow: live profiles, churn risk with delayed labels, BG/NBD and CLV -> Redis.

    events --customers_only_mine--> orders | clickstream | catalog
           --customers_key--> one key ("all"): one global churn model (docs/customers.md)
           --customers_book--> CustomerBook (profiles, labels, models), writes collapsed
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
from collections.abc import Callable, Iterable
from typing import Any

import bytewax.operators as op
import redis
from bytewax.dataflow import Stream
from bytewax.operators import StatefulBatchLogic

from processors.customer_book import (
    ALL_FEATURES,
    CustomerBook,
    CustomerScore,
    CustomerSettings,
    score_writes,
)
from processors.records import DeadLetter, Event
from processors.writes import HashWrite, RedisWrite
from streams.decode import EventDeadLetters, process_failures
from streams.settings import Settings

__all__ = ["ALL_FEATURES", "CustomerBook", "CustomerFlow", "CustomerSettings", "churn_report"]

log = logging.getLogger(__name__)


class _BookLogic(StatefulBatchLogic[Event, "RedisWrite | DeadLetter", CustomerBook]):
    def __init__(
        self,
        book: CustomerBook,
        failures: EventDeadLetters,
        fault: Callable[[Event], None] | None = None,
    ) -> None:
        self.book = book
        self.failures = failures
        self.fault = fault

    def on_batch(self, values: list[Event]) -> tuple[Iterable[RedisWrite | DeadLetter], bool]:
        book, fault = self.book, self.fault
        # The raising entry point: process() swallows errors into a counter, but a bad event
        # must reach the dead-letter topic with its reason (docs/dead-letters.md).
        process = getattr(book, "_process", book.process)
        last: dict[str, CustomerScore] = {}
        alerts: list[CustomerScore] = []
        labels_before, wm_before = book.metrics.n, book.watermark
        out: list[RedisWrite | DeadLetter] = []
        for ev in values:
            try:
                if fault is not None:
                    fault(ev)
                scores = process(ev)
            except Exception as exc:  # one bad event must not stop the flow
                book.errors += 1
                out.append(self.failures.dead_letter(ev, exc))
                continue
            for s in scores:
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
        if book.watermark != wm_before:  # one small hash per batch: the book's health
            out.append(HashWrite("churn", "state", book.state_fields(), book.watermark))
        return out, False

    def snapshot(self) -> CustomerBook:
        return self.book


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

    def build(self, events: Stream[Event], settings: Settings) -> Stream[RedisWrite]:
        cfg, fault = self.config, self.fault
        failures = process_failures(self.name, settings)
        mine = op.filter(
            "customers_only_mine",
            events,
            lambda e: e.family in ("orders", "clickstream", "catalog"),
        )
        keyed = op.key_on("customers_key", mine, lambda _e: "all")
        books = op.stateful_batch(
            "customers_book",
            keyed,
            lambda resume: _BookLogic(resume or CustomerBook(cfg), failures, fault),
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

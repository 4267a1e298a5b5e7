"""The purchase-order state machine: created -> dispatched -> received (partial or full).

Every supplier event names a ``po_id``; the :class:`POBook` joins them per PO in event time
and turns them into :class:`POOutcome` s the models learn from:

- ``dispatch``: the first shipment of a PO leaves (its fill: units shipped / ordered);
- ``receipt``: the first receipt of a PO whose creation is known (lead time, lateness);
- ``late``: an open PO whose committed date the watermark has passed with nothing received
  (flagged once, without waiting for a receipt);
- ``delay`` / ``incident``: a delay notice / a quality incident, as they come;
- ``closed``: a PO is done: fully received, or partially received and quiet for
  ``partial_close_days``, or never received ``abandon_days`` after its committed date.

Events may come out of order (a receipt before its PO_CREATED: the PO waits for its
creation) and twice (the same ``event_id``: ignored; the same ``shipment_id`` received
twice counts once). Time is event time only: :meth:`POBook.advance` moves a watermark (the
newest event time seen by the flow) and that is what makes POs late or closes them.

>>> book = POBook()
>>> day = 86_400_000
>>> ev = dict(supplier_id="SUP1", po_id="P1", sku="K", store_id="S", quantity_ordered=10,
...           quantity=None, shipment_id=None, expected_date=5 * day, actual_date=None,
...           delay_days=None, severity=None)
>>> book.apply({**ev, "event_id": "e1", "event_type": "PO_CREATED"}, 0)
[]
>>> [o.kind for o in book.advance(6 * day)]
['late']
>>> rec = {**ev, "event_id": "e2", "event_type": "SHIPMENT_RECEIVED", "quantity": 10,
...        "shipment_id": "SH1", "actual_date": 7 * day}
>>> [(o.kind, o.lead_days, o.fill_rate) for o in book.apply(rec, 7 * day)]
[('receipt', 7.0, 1.0), ('closed', None, 1.0)]
>>> book.apply(rec, 7 * day)  # a duplicate: nothing new
[]
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DAY_MS", "POBook", "POOutcome", "PurchaseOrder"]

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class POOutcome:
    """Something the models learn from, in event time (``t``: epoch ms)."""

    kind: str  # receipt | dispatch | late | delay | incident | closed
    supplier_id: str
    po_id: str
    sku: str
    store_id: str
    t: int
    lead_days: float | None = None  # receipt: first receipt - creation
    promised_days: float | None = None  # receipt: committed date - creation
    lateness_days: float | None = None  # receipt: first receipt - committed date; late: overdue
    quantity: int | None = None  # units ordered (receipt), affected (incident)
    delay_days: float | None = None  # delay notice
    severity: str | None = None  # incident / delay notice
    fill_rate: float | None = None  # received / ordered (capped at 1): so far, or at close
    created_at: int | None = None


@dataclass(slots=True)
class PurchaseOrder:
    """What is known of one PO so far (fields fill in whatever order events arrive)."""

    # Instances live in recovery snapshots: bump on any change older pickles can't satisfy.
    STATE_VERSION = 1

    po_id: str
    supplier_id: str
    sku: str
    store_id: str
    created_at: int | None = None
    expected_at: int | None = None  # the committed date of PO_CREATED
    ordered: int | None = None
    dispatched_at: int | None = None
    first_receipt_at: int | None = None
    last_receipt_at: int | None = None
    shipments: dict[str, int] = field(default_factory=dict)  # shipment id -> units received
    event_ids: set[str] = field(default_factory=set)
    seen_at: int = 0  # event time of the first event seen for it
    receipt_emitted: bool = False
    late_flagged: bool = False

    @property
    def received(self) -> int:
        return sum(self.shipments.values())

    def fill_rate(self) -> float:
        if not self.ordered:
            return 1.0 if self.received else 0.0
        return min(1.0, self.received / self.ordered)


def _days(ms: int) -> float:
    return round(ms / DAY_MS, 4)


class POBook:
    """Open POs of every supplier, joined by ``po_id``; emits :class:`POOutcome` s."""

    # Instances live in recovery snapshots: bump on any change older pickles can't satisfy.
    STATE_VERSION = 1

    def __init__(
        self,
        *,
        late_grace_days: float = 0.0,
        partial_close_days: float = 7.0,
        abandon_days: float = 60.0,
        closed_memory_days: float = 30.0,
    ) -> None:
        self.late_grace_ms = int(late_grace_days * DAY_MS)
        self.partial_close_ms = int(partial_close_days * DAY_MS)
        self.abandon_ms = int(abandon_days * DAY_MS)
        self.closed_memory_ms = int(closed_memory_days * DAY_MS)
        self.open: dict[str, PurchaseOrder] = {}
        self.by_supplier: dict[str, set[str]] = {}  # supplier -> its open po ids
        self.closed: dict[str, int] = {}  # po id -> close time: later events for it are ignored
        self.watermark = 0  # the newest event time seen by advance(), over all suppliers
        self.watermarks: dict[str, int] = {}  # per supplier
        # Per supplier, (due time, po id): when to look at a PO again (late, quiet partial,
        # abandoned); entries may be stale, they are re-checked when they come up.
        self._due: dict[str, list[tuple[int, str]]] = {}
        self.counts: dict[str, int] = {"events": 0, "duplicates": 0, "after_close": 0}

    # -- events ---------------------------------------------------------------------------
    def apply(self, value: dict[str, Any], event_time: int) -> list[POOutcome]:
        """Fold one supplier event (a dict shaped like supplier.v1) into its PO."""
        self.counts["events"] += 1
        po_id = value["po_id"]
        if po_id in self.closed:
            self.counts["after_close"] += 1
            return []
        po = self.open.get(po_id)
        if po is None:
            po = PurchaseOrder(po_id, value["supplier_id"], value["sku"], value["store_id"])
            po.seen_at = event_time
            self.open[po_id] = po
            self.by_supplier.setdefault(po.supplier_id, set()).add(po_id)
            # An orphan (its creation never comes, e.g. before the flow started) must not
            # stay open forever: look at it again after abandon_days.
            heapq.heappush(self._heap(po), (event_time + self.abandon_ms, po_id))
        if value["event_id"] in po.event_ids:
            self.counts["duplicates"] += 1
            return []
        po.event_ids.add(value["event_id"])
        kind = value["event_type"]
        out: list[POOutcome] = []
        if kind == "PO_CREATED":
            po.created_at = event_time
            po.expected_at = value.get("expected_date")
            po.ordered = value.get("quantity_ordered")
            if po.expected_at is not None:
                heapq.heappush(self._heap(po), (po.expected_at + self.late_grace_ms, po_id))
        elif kind == "SHIPMENT_DISPATCHED":
            at = value.get("actual_date") or event_time
            first = po.dispatched_at is None
            po.dispatched_at = at if po.dispatched_at is None else min(po.dispatched_at, at)
            qty = value.get("quantity")
            if first and qty is not None and po.ordered:
                # What ships tells of a short fill days before the receipt does.
                fill = round(min(1.0, max(0, qty) / po.ordered), 4)
                out.append(self._outcome("dispatch", po, event_time, quantity=qty, fill_rate=fill))
        elif kind == "SHIPMENT_RECEIVED":
            shipment = value.get("shipment_id") or value["event_id"]
            if shipment in po.shipments:
                self.counts["duplicates"] += 1
                return []
            po.shipments[shipment] = max(0, value.get("quantity") or 0)
            at = value.get("actual_date") or event_time
            po.first_receipt_at = (
                at if po.first_receipt_at is None else min(po.first_receipt_at, at)
            )
            po.last_receipt_at = at if po.last_receipt_at is None else max(po.last_receipt_at, at)
            heapq.heappush(self._heap(po), (po.last_receipt_at + self.partial_close_ms, po_id))
        elif kind == "DELAY_NOTICE":
            out.append(
                self._outcome(
                    "delay",
                    po,
                    event_time,
                    delay_days=value.get("delay_days"),
                    severity=value.get("severity"),
                    promised_days=self._promised(po),
                )
            )
        elif kind == "QUALITY_INCIDENT":
            out.append(
                self._outcome(
                    "incident",
                    po,
                    event_time,
                    quantity=value.get("quantity"),
                    severity=value.get("severity"),
                )
            )
        out.extend(self._progress(po, event_time))
        return out

    def _progress(self, po: PurchaseOrder, t: int) -> list[POOutcome]:
        out: list[POOutcome] = []
        if not po.receipt_emitted and po.first_receipt_at is not None and po.created_at is not None:
            po.receipt_emitted = True
            out.append(
                self._outcome(
                    "receipt",
                    po,
                    max(t, po.first_receipt_at),
                    lead_days=_days(po.first_receipt_at - po.created_at),
                    promised_days=self._promised(po),
                    lateness_days=None
                    if po.expected_at is None
                    else _days(po.first_receipt_at - po.expected_at),
                    quantity=po.ordered,
                    fill_rate=round(po.fill_rate(), 4),  # of what has arrived so far
                )
            )
        if po.receipt_emitted and po.ordered is not None and po.received >= po.ordered:
            out.append(self._close(po, t))
        return out

    @staticmethod
    def _promised(po: PurchaseOrder) -> float | None:
        if po.expected_at is None or po.created_at is None:
            return None
        return _days(po.expected_at - po.created_at)

    def _outcome(self, kind: str, po: PurchaseOrder, t: int, **extra: Any) -> POOutcome:
        return POOutcome(
            kind,
            po.supplier_id,
            po.po_id,
            po.sku,
            po.store_id,
            t,
            created_at=po.created_at,
            **extra,
        )

    def _close(self, po: PurchaseOrder, t: int) -> POOutcome:
        self._drop(po)
        self.closed[po.po_id] = t
        return self._outcome(
            "closed", po, t, fill_rate=round(po.fill_rate(), 4), quantity=po.ordered
        )

    # -- event time -----------------------------------------------------------------------
    def _heap(self, po: PurchaseOrder) -> list[tuple[int, str]]:
        return self._due.setdefault(po.supplier_id, [])

    def advance(self, watermark: int, supplier: str | None = None) -> list[POOutcome]:
        """Move a watermark: flag late POs, close quiet partial and abandoned ones.

        With ``supplier``, only that supplier's POs move: a supplier's events share one
        Kafka partition (keyed by supplier id), so its own newest event time is a watermark
        that another partition read ahead cannot push past its POs.
        """
        keys = [supplier] if supplier is not None else list(self._due)
        out: list[POOutcome] = []
        for key in keys:
            if watermark <= self.watermarks.get(key, 0):
                continue
            self.watermarks[key] = watermark
            heap = self._due.get(key)
            while heap and heap[0][0] <= watermark:
                _, po_id = heapq.heappop(heap)
                po = self.open.get(po_id)
                if po is not None:
                    out.extend(self._check(po, watermark))
        if watermark // DAY_MS > self.watermark // DAY_MS:  # forget old closures daily
            self.watermark = watermark
            if self.closed:
                horizon = watermark - self.closed_memory_ms
                if next(iter(self.closed.values())) < horizon:  # oldest first (insertion order)
                    self.closed = {k: v for k, v in self.closed.items() if v >= horizon}
        self.watermark = max(self.watermark, watermark)
        return out

    def forget(self, supplier: str) -> None:
        """Drop an idle supplier's POs and timers."""
        self._due.pop(supplier, None)
        self.watermarks.pop(supplier, None)
        for po in self.open_for(supplier):
            self._drop(po)

    def _check(self, po: PurchaseOrder, wm: int) -> list[POOutcome]:
        if po.expected_at is None:
            if po.created_at is None and wm >= po.seen_at + self.abandon_ms:
                self._drop(po)  # an orphan: nothing to learn from
                self.closed[po.po_id] = wm
            return []
        if po.first_receipt_at is None:
            if not po.late_flagged and wm >= po.expected_at + self.late_grace_ms:
                po.late_flagged = True
                heapq.heappush(self._heap(po), (po.expected_at + self.abandon_ms, po.po_id))
                return [
                    self._outcome(
                        "late",
                        po,
                        wm,
                        quantity=po.ordered,
                        lateness_days=_days(wm - po.expected_at),
                    )
                ]
            if wm >= po.expected_at + self.abandon_ms:
                return [self._close(po, wm)]
            return []
        if po.last_receipt_at is not None and wm >= po.last_receipt_at + self.partial_close_ms:
            if not po.receipt_emitted:  # its creation never came: nothing to learn from
                self._drop(po)
                self.closed[po.po_id] = wm
                return []
            return [self._close(po, wm)]
        return []

    def _drop(self, po: PurchaseOrder) -> None:
        del self.open[po.po_id]
        ids = self.by_supplier.get(po.supplier_id)
        if ids is not None:
            ids.discard(po.po_id)
            if not ids:
                del self.by_supplier[po.supplier_id]

    def open_for(self, supplier_id: str) -> list[PurchaseOrder]:
        """Open POs of one supplier (for the affected SKUs and stores of an alert)."""
        return [self.open[i] for i in sorted(self.by_supplier.get(supplier_id, ()))]

    def overdue(self, supplier_id: str) -> int:
        """Open POs of this supplier past their committed date with nothing received."""
        return sum(1 for po in self.open_for(supplier_id) if po.late_flagged and not po.shipments)

"""The supply flow in the real dataflow, with Bytewax's TestingSource and TestingSink."""

from __future__ import annotations

import json
import pickle
from datetime import date

from processors.writes import HashWrite, StreamAdd, ZSetWrite
from streams.flows.supply import SupplyEngine, SupplyFlow, SupplySettings, detection_scores
from streams.registry import ManifestResolver, SchemaCatalog
from streams.settings import Settings
from streams.simulator import SimulationConfig, Simulator
from tests.helpers import run_testing_flow, sim_messages

RESOLVER = ManifestResolver(SchemaCatalog.load())
SETTINGS = Settings()
TOPICS = SETTINGS.topics.input_topics()
FAMILIES = ("supplier", "orders", "inventory")

# Small and deterministic: three suppliers, one disruption of SUP001 on days 48-57.
CONFIG = SimulationConfig(
    seed=1,
    start_date=date(2024, 11, 1),
    days=75,
    skus=60,
    stores=4,
    customers=200,
    suppliers=3,
    clickstream=False,
    new_skus=False,
    disruption_episodes=1,
    disruption_days=(10, 14),
)


def simulate() -> tuple[list, Simulator]:
    sim = Simulator(CONFIG)
    return sim_messages(sim.events(), families=FAMILIES, broker_lag_ms=1_000), sim


def run(msgs: list) -> list:
    _, dead, writes = run_testing_flow(msgs, [SupplyFlow(SupplySettings())])
    assert dead == []
    return writes


def test_one_disruption_gives_one_alert_and_supplier_state():
    msgs, sim = simulate()
    writes = run(msgs)
    episode = sim.truth.supply.disruptions[0]
    alerts = [w for w in writes if isinstance(w, StreamAdd)]
    assert alerts and all(a.kind == "alerts" and a.entity == "supply" for a in alerts)
    assert {a.fields["alert_id"] for a in alerts} == {alerts[0].fields["alert_id"]}
    first = alerts[0].fields
    assert first["status"] == "open" and first["supplier_id"] == episode.supplier_id
    assert json.loads(str(first["affected_skus"])) and json.loads(str(first["affected_stores"]))
    assert "cusum" in json.loads(str(first["evidence"]))
    assert alerts[0].channel == "alerts.supply"
    ids = [(a.ms, a.seq) for a in alerts]
    assert ids == sorted(set(ids)), "stream ids strictly increase (replays are skipped)"
    found = detection_scores(
        [{"supplier_id": episode.supplier_id, "start": _day(episode.start_day),
          "end": _day(episode.end_day + 1)}],
        [(first["supplier_id"], int(first["opened_at"]))],
    )  # fmt: skip
    assert found["recall"] == 1.0 and found["precision"] == 1.0

    hashes = {(w.kind, w.entity): w for w in writes if isinstance(w, HashWrite)}
    sup = hashes[("supplier", episode.supplier_id)].fields
    assert 0.0 <= float(sup["risk_score"]) <= 1.0 and float(sup["lead_mean_days"]) > 0
    assert any(k == "leadtime" and ":" in e for k, e in hashes)
    score = hashes[("supply_score", "leadtime")].fields
    assert int(score["n"]) > 100 and 0.7 <= float(score["coverage"]) <= 1.0
    for kind, entity in hashes:  # versions never go backwards within one key
        versions = [w.version for w in writes if isinstance(w, HashWrite)
                    and (w.kind, w.entity) == (kind, entity)]  # fmt: skip
        assert versions == sorted(versions)


def test_the_open_alerts_set_holds_each_open_alert_once_with_its_newest_state():
    msgs, _ = simulate()
    writes = run(msgs)
    members: dict[str, float] = {}  # the sorted set, replayed from the writes in order
    newest: dict[str, dict] = {}

    def consistent() -> None:
        open_now = {a: f for a, f in newest.items() if f["status"] != "closed"}
        assert sorted(json.loads(m)["alert_id"] for m in members) == sorted(open_now)
        for m in members:  # each member is its alert's newest state
            assert json.loads(m) == newest[json.loads(m)["alert_id"]]

    for w in writes:
        if isinstance(w, StreamAdd):
            consistent()  # the previous alert's writes are complete
            newest[str(w.fields["alert_id"])] = {**w.fields, "entry_id": f"{w.ms}-{w.seq}"}
        elif isinstance(w, ZSetWrite) and w.kind == "alerts_open":
            if w.score is None:
                members.pop(w.member)
            else:
                members[w.member] = w.score
    consistent()
    assert newest, "the episode raised an alert"


def _day(n: int) -> int:
    from streams.simulator.events import day_ms

    return day_ms(CONFIG.start_date) + n * 86_400_000


def test_bad_supplier_record_is_counted_not_fatal():
    engine = SupplyEngine(SupplySettings())
    from streams.flows.supply import _EngineLogic

    logic = _EngineLogic(SupplySettings(), pickle.dumps(engine))
    from processors.records import Event

    broken = Event("supplier", "k", {"event_id": "x"}, 1, 0, "t", 0, 0)  # no po_id
    out, _ = logic.on_batch([[broken]])  # a packet, as _route sends it
    assert logic.engine.errors == 1 and list(out) == []
    restored = _EngineLogic(SupplySettings(), logic.snapshot())
    assert restored.engine.errors == 1

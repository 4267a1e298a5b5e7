"""``retailpulse``: the command line. Settings are built here, once, and passed down."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

from streams.errors import RetailPulseError
from streams.settings import Settings, load_settings

__all__ = ["main"]

log = logging.getLogger("retailpulse")


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, dict[str, Any]] = {
        "kafka": {"bootstrap_servers": args.bootstrap_servers},
        "redis": {"url": args.redis_url},
        "serde": {"schema_registry_url": args.schema_registry_url},
        "run": {
            "workers": getattr(args, "workers", None),
            "metrics_port": getattr(args, "metrics_port", None),
        },
    }
    if args.state_dir is not None:
        overrides["state_dir"] = args.state_dir
    return load_settings(config_file=args.config, overrides=overrides)


# -- infra -----------------------------------------------------------------------------


def _infra(args: argparse.Namespace, settings: Settings) -> int:
    from infra import supervisor

    state_dir = settings.state_dir
    if args.action == "up":

        def ready(state: Any) -> None:
            print(f"Kafka (Tansu, memory storage: dev/demo only): {state.kafka.address}")
            print(f"Redis (Valkey): {state.redis.address}")
            print(f"state file: {state_dir / 'infra.json'}")
            if not args.detach:
                print("Ctrl-C stops both.", flush=True)

        state = supervisor.up(
            state_dir,
            detach=args.detach,
            kafka_port=args.kafka_port,
            redis_port=args.redis_port,
            on_ready=None if args.detach else ready,
        )
        if args.detach:
            ready(state)
        return 0
    if args.action == "down":
        stopped = supervisor.down(state_dir)
        print("stopped" if stopped else "nothing was running")
        return 0
    print(json.dumps(supervisor.status(state_dir), indent=2, default=str))
    return 0


# -- topics and schemas ----------------------------------------------------------------


def _topics(args: argparse.Namespace, settings: Settings) -> int:
    from streams.kafka_io import create_topics

    if args.partitions:
        import dataclasses

        settings = settings.replace(
            topics=dataclasses.replace(settings.topics, partitions=args.partitions)
        )
    for topic, outcome in create_topics(settings.kafka, settings.topics).items():
        print(f"{outcome:8} {topic}")
    return 0


def _schemas(args: argparse.Namespace, settings: Settings) -> int:
    from streams.compat import check_candidate, check_catalog
    from streams.registry import SchemaCatalog

    catalog = SchemaCatalog.load()
    if args.action == "list":
        for family in catalog.families:
            for v in catalog.versions(family):
                print(f"{family:12} v{v.version}  id={v.schema_id}  {v.source}")
        return 0
    if args.candidate is not None:
        if not args.family:
            raise SystemExit("schemas check FILE needs --family (which family it is a version of)")
        problems = check_candidate(
            catalog, args.family, json.loads(Path(args.candidate).read_text())
        )
        report = {args.family: problems}
    else:
        report = check_catalog(catalog)
    bad = 0
    for family, problems in report.items():
        print(f"{family}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
        for p in problems:
            print(f"  - {p}")
        bad += len(problems)
    return 1 if bad else 0


# -- data in ---------------------------------------------------------------------------


def backfill(sim: Any, producer: Any, days: int) -> None:
    """Produce every simulated day, confirmed, with a progress bar on stderr."""
    from tqdm import tqdm

    with tqdm(total=days, unit="day", file=sys.stderr, desc="backfill") as bar:
        for day, events in sim.days():
            producer.send_all(events)
            bar.update(1)
            bar.set_postfix_str(f"{day} {sum(producer.counts.values()):,} events")


def simulation_config(args: argparse.Namespace) -> Any:
    from streams.simulator import SimulationConfig

    fields: dict[str, Any] = {"seed": args.seed, "days": args.days}
    if args.start_date:
        fields["start_date"] = date.fromisoformat(args.start_date)
    for name in ("skus", "stores", "customers"):
        if getattr(args, name) is not None:
            fields[name] = getattr(args, name)
    return SimulationConfig(**fields)


def _simulate(args: argparse.Namespace, settings: Settings) -> int:
    from streams.produce import EventProducer
    from streams.simulator import Simulator, write_ground_truth

    sim = Simulator(simulation_config(args))
    producer = EventProducer(settings)
    backfill(sim, producer, args.days)
    if args.live_days:
        print(f"live: {args.live_days} more days at {args.rate:g} events/s", file=sys.stderr)
        for _, events in sim.continue_days(args.live_days):
            producer.send_all(events, rate=args.rate)
    if args.truth_dir:
        for path in write_ground_truth(sim.truth, Path(args.truth_dir)):
            print(f"ground truth: {path}")
    print(json.dumps(dict(sorted(producer.counts.items()))))
    return 0


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    from streams.produce import EventProducer
    from streams.simulator import replay_events

    column_map = dict(pair.split("=", 1) for pair in args.column_map) if args.column_map else None
    producer = EventProducer(settings)
    counts = producer.send_all(replay_events(Path(args.path), args.family, column_map=column_map))
    print(json.dumps(dict(counts)))
    return 0


# -- running ---------------------------------------------------------------------------


def _run(args: argparse.Namespace, settings: Settings) -> int:
    import dataclasses

    from streams.runner import run

    # Flags win over every other source, so applying them here equals passing them as
    # load_settings overrides.
    flags = {
        "recovery_dir": args.recovery_dir,
        "recovery_partitions": args.recovery_partitions,
        "snapshot_interval_s": args.snapshot_interval,
        "backup_interval_s": args.backup_interval,
    }
    given = {k: v for k, v in flags.items() if v is not None}
    if given:
        settings = settings.replace(run=dataclasses.replace(settings.run, **given))
    addresses = [a.strip() for a in (args.addresses or "").split(",") if a.strip()]
    run(settings, live=args.live, process_id=args.process_id, addresses=addresses)
    return 0


def model_reports() -> dict[str, Any]:
    """flow name -> ``report(client, prefix) -> str`` (imported on use: the flows load River)."""
    from streams.flows.customers import churn_report
    from streams.flows.demand import demand_report
    from streams.flows.supply import supply_report

    return {"demand": demand_report, "churn": churn_report, "supply": supply_report}


def _report(args: argparse.Namespace, settings: Settings) -> int:
    from infra.cluster import connect

    client = connect(settings.redis.require_url())
    try:
        print(model_reports()[args.flow](client, settings.redis.key_prefix))
    finally:
        client.close()
    return 0


def _metrics(args: argparse.Namespace, settings: Settings) -> int:
    from streams.metrics import prometheus_text

    sys.stdout.write(prometheus_text(settings, with_lag=not args.no_lag))
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="retailpulse", description=__doc__)
    p.add_argument("--config", type=Path, help="TOML settings file (see docs/configuration.md)")
    p.add_argument("--bootstrap-servers", help="Kafka bootstrap servers (default: embedded stack)")
    p.add_argument("--redis-url", help="redis:// or rediss:// URL (default: embedded stack)")
    p.add_argument(
        "--schema-registry-url", help="Confluent-compatible registry (default: manifest)"
    )
    p.add_argument("--state-dir", type=Path, help="where the embedded stack's state file lives")
    p.add_argument("--log-level", default="INFO")
    sub = p.add_subparsers(dest="command", required=True)

    infra = sub.add_parser("infra", help="embedded Kafka (Tansu) and Redis (Valkey) for dev/demos")
    infra.add_argument("action", choices=["up", "down", "status"])
    infra.add_argument("--detach", action="store_true", help="run in the background")
    infra.add_argument("--kafka-port", type=int)
    infra.add_argument("--redis-port", type=int)
    infra.set_defaults(func=_infra)

    topics = sub.add_parser("topics", help="create every topic the flows use (idempotent)")
    topics.add_argument("action", choices=["create"])
    topics.add_argument("--partitions", type=int)
    topics.set_defaults(func=_topics)

    schemas = sub.add_parser("schemas", help="list schemas or check their evolution")
    schemas.add_argument("action", choices=["list", "check"])
    schemas.add_argument("candidate", nargs="?", help="a proposed new .avsc to check")
    schemas.add_argument("--family")
    schemas.set_defaults(func=_schemas)

    for name in ("simulate", "produce"):
        sim = sub.add_parser(name, help="write a simulated retailer's events to Kafka")
        sim.add_argument("--days", type=int, default=365)
        sim.add_argument("--seed", type=int, default=7)
        sim.add_argument("--start-date", help="first simulated day, YYYY-MM-DD")
        sim.add_argument("--skus", type=int)
        sim.add_argument("--stores", type=int)
        sim.add_argument("--customers", type=int)
        sim.add_argument("--truth-dir", help="write the ground truth here")
        sim.add_argument("--live-days", type=int, default=0, help="then stream N more days live")
        sim.add_argument("--rate", type=float, default=200.0, help="live events per second")
        sim.set_defaults(func=_simulate)

    replay = sub.add_parser("replay", help="replay your own history (CSV/Parquet) into the topics")
    replay.add_argument("path")
    replay.add_argument("--family", required=True)
    replay.add_argument("--column-map", nargs="*", help="their_column=our_field ...")
    replay.set_defaults(func=_replay)

    run = sub.add_parser("run", help="run the dataflows")
    run.add_argument("--live", action="store_true", help="tail the topics (default: bounded)")
    run.add_argument("--workers", type=int)
    run.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on 127.0.0.1")
    run.add_argument(
        "--process-id", type=int, help="this process's index in --addresses (docs/scaling.md)"
    )
    run.add_argument("--addresses", help="host:port of every process of a cluster, comma separated")
    run.add_argument(
        "--recovery-dir", type=Path, help="snapshot state here; resume from it (docs/recovery.md)"
    )
    run.add_argument(
        "--recovery-partitions", type=int, help="partitions of a NEW recovery dir (then fixed)"
    )
    run.add_argument(
        "--snapshot-interval", type=float, help="seconds between snapshots (= epoch interval)"
    )
    run.add_argument(
        "--backup-interval", type=float, help="seconds to keep superseded snapshots (backups)"
    )
    run.set_defaults(func=_run)

    report = sub.add_parser("report", help="prequential model scores from Redis")
    report.add_argument("flow", choices=["demand", "churn", "supply"])
    report.set_defaults(func=_report)

    metrics = sub.add_parser("metrics", help="print operational metrics (Prometheus text)")
    metrics.add_argument("--no-lag", action="store_true")
    metrics.set_defaults(func=_metrics)

    from infra.acl import add_acl_parser
    from streams.dashboard.cli import add_dashboard_parser
    from streams.demo import add_demo_parser

    add_acl_parser(sub)
    add_dashboard_parser(sub)
    add_demo_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = _settings(args)
        return int(args.func(args, settings))
    except RetailPulseError as exc:
        print(f"retailpulse: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

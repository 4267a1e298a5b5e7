"""Run the dataflow: bounded (everything in the topics, then exit) or live (tail).

Results depend on event time only, so a bounded replay and a live run over the same events
leave the same Redis state. With ``run.recovery_dir`` set, state is snapshotted every epoch
and a restart resumes from the last snapshot (docs/recovery.md).
"""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import Sequence
from datetime import timedelta

from bytewax.run import cli_main
from bytewax.testing import run_main

from streams.dataflow import FlowExtension, build_flow
from streams.errors import ConfigError
from streams.flows import default_extensions
from streams.recovery import recovery_config
from streams.registry import SchemaCatalog, build_resolver
from streams.settings import RunSettings, Settings

__all__ = ["limit_blas_threads", "run", "tune_gc", "tune_process"]

log = logging.getLogger(__name__)


def run(
    settings: Settings,
    *,
    live: bool,
    extensions: Sequence[FlowExtension] | None = None,
    process_id: int | None = None,
    addresses: Sequence[str] = (),
) -> None:
    """Build the flow from ``settings`` and run it in this process until done (or Ctrl-C).

    ``extensions`` defaults to every model flow (:func:`streams.flows.default_extensions`).
    With ``addresses`` (``host:port`` of every process, the same list everywhere) this
    process is number ``process_id`` of a Bytewax cluster (docs/scaling.md).
    """
    if addresses and (process_id is None or not 0 <= process_id < len(addresses)):
        raise ConfigError(
            f"--process-id must be one of 0..{len(addresses) - 1} for {len(addresses)} addresses"
        )
    resolver = build_resolver(
        SchemaCatalog.load(),
        registry_url=settings.serde.schema_registry_url,
        registry_config=settings.serde.schema_registry,
        topics=settings.topics.input_topics(),
    )
    if extensions is None:
        extensions = default_extensions(settings)
    built = build_flow(settings, resolver, tail=live, extensions=extensions)
    # The store is checked before anything runs: an incompatible one is refused with a
    # ConfigError instead of Bytewax silently dropping its state (docs/recovery.md).
    recovery = recovery_config(settings.run, built.flow, settings.topics.input_topics().values())
    if settings.run.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.run.metrics_port, addr="127.0.0.1")
        log.info("Prometheus metrics on http://127.0.0.1:%d/metrics", settings.run.metrics_port)
    log.info(
        "starting %s with flows %s; settings %s",
        "live (tail)" if live else "bounded (to end of topics)",
        ["ingest", *(ext.name for ext in extensions)],
        json.dumps(settings.describe(), default=str),  # secrets are masked by describe()
    )
    tune_process(settings.run)
    epoch = timedelta(seconds=settings.run.effective_epoch_interval_s)
    if settings.run.workers <= 1 and not addresses:
        run_main(built.flow, epoch_interval=epoch, recovery_config=recovery)
    else:  # threads share the GIL: for CPU scale-out run one process per core (docs/scaling.md)
        cli_main(
            built.flow,
            workers_per_process=max(1, settings.run.workers),
            process_id=process_id if addresses else None,
            addresses=list(addresses) or None,
            epoch_interval=epoch,
            recovery_config=recovery,
        )


def tune_process(run: RunSettings) -> None:
    """This process's settings for a run (GC, BLAS threads), once its flow is built: the
    flow's run and the plain benchmark floor apply the same ones."""
    tune_gc(run.gc_threshold)
    limit_blas_threads(run.blas_threads)


def tune_gc(threshold: int) -> None:
    """Collect less often for the rest of this process (``run.gc_threshold``; 0: leave it).

    Why: CPython runs a young-generation pass every 700 net allocations and every tenth
    one also scans the middle generation; a flow allocates an event dict, its decoded
    fields and its writes per record, so passes ran thousands of times a second, and the
    full-heap ones walked the models' millions of long-lived objects (py-spy: 11-18 % of
    a 2-process run in ``gc_collect_main``). At 50,000 the passes are ~70x rarer; the
    1-process run took 15 % less CPU (212 -> 180 us per event, ``bench_e2e --only bounded
    --gc-threshold 0`` against the default; docs/benchmarks.md), peak memory unchanged.
    ``gc.freeze`` first moves what exists now (modules, schemas, the built flow) out of
    the collector's sight for good: it is never garbage.
    """
    if threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(threshold, middle, old)


def limit_blas_threads(threads: int) -> None:
    """Cap the thread pools of the BLAS libraries loaded now (``run.blas_threads``; 0: leave).

    Why: numpy and scipy each load an OpenBLAS that starts one thread per core, and after
    every call its idle threads spin before they sleep. Our matrices are tiny (the churn
    fit, the forecaster's rows), so the extra threads never help; perf counted their spin
    at 7 % of a 1-process run's CPU, and with one process per core they take the core of
    the process next door. Called after the flow is built, when every model module (and
    so every BLAS library) is loaded: threadpoolctl sets the limit in each library it
    finds, which an environment variable can only do before numpy is imported.
    """
    if threads <= 0:
        return
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads, user_api="blas")

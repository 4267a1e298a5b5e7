"""Settings: precedence, pass-through, redaction, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streams.errors import ConfigError
from streams.settings import load_settings


def test_defaults_and_precedence(tmp_path: Path):
    toml = tmp_path / "rp.toml"
    toml.write_text(
        '[kafka]\nbootstrap_servers = "from-file:9092"\n'
        '[kafka.client]\n"security.protocol" = "SASL_SSL"\n"sasl.mechanisms" = "PLAIN"\n'
        "[topics]\npartitions = 6\n"
    )
    env = {
        "RETAILPULSE_KAFKA_BOOTSTRAP_SERVERS": "from-env:9092",
        "RETAILPULSE_KAFKA__SASL_USERNAME": "svc",
        "RETAILPULSE_TOPICS_PARTITIONS": "4",
    }
    s = load_settings(
        config_file=toml, env=env, overrides={"topics": {"partitions": 8}}, use_embedded=False
    )
    assert s.kafka.bootstrap_servers == "from-env:9092"
    assert s.topics.partitions == 8
    conf = s.kafka.client_config()
    assert conf["security.protocol"] == "SASL_SSL" and conf["sasl.username"] == "svc"
    assert conf["sasl.mechanisms"] == "PLAIN"


def test_secrets_never_in_repr_or_describe():
    env = {
        "RETAILPULSE_KAFKA__SASL_PASSWORD": "s3cret",
        "RETAILPULSE_KAFKA__SSL_KEY_PASSWORD": "k3y",
        "RETAILPULSE_REDIS_URL": "rediss://writer:p4ss@cache.example:6380/0",
        "RETAILPULSE_SERDE_SCHEMA_REGISTRY_URL": "https://u:regpw@sr.example",
    }
    s = load_settings(env=env, use_embedded=False)
    text = repr(s) + json.dumps(s.describe())
    for secret in ("s3cret", "k3y", "p4ss", "regpw"):
        assert secret not in text
    assert "writer:***@cache.example:6380" in text


def test_unknown_settings_are_refused_with_a_hint(tmp_path: Path):
    with pytest.raises(ConfigError, match="unknown environment variable RETAILPULSE_KAFAK_X"):
        load_settings(env={"RETAILPULSE_KAFAK_X": "1"}, use_embedded=False)
    with pytest.raises(ConfigError, match=r"topics\.partitons"):
        load_settings(env={"RETAILPULSE_TOPICS_PARTITONS": "1"}, use_embedded=False)
    with pytest.raises(ConfigError, match="not a valid int"):
        load_settings(env={"RETAILPULSE_TOPICS_PARTITIONS": "many"}, use_embedded=False)


def test_missing_addresses_say_how_to_fix(tmp_path: Path):
    s = load_settings(env={"RETAILPULSE_STATE_DIR": str(tmp_path)})
    with pytest.raises(ConfigError, match="infra up"):
        s.kafka.client_config()
    with pytest.raises(ConfigError, match="RETAILPULSE_REDIS_URL"):
        s.redis.require_url()


def test_embedded_state_file_fills_in_addresses(tmp_path: Path):
    (tmp_path / "infra.json").write_text(
        json.dumps(
            {
                "kafka": {"address": "127.0.0.1:1234"},
                "redis": {"address": "redis://127.0.0.1:5678/0"},
            }
        )
    )
    s = load_settings(env={}, overrides={"state_dir": tmp_path})  # type: ignore[dict-item]
    assert s.kafka.bootstrap_servers == "127.0.0.1:1234"
    assert s.redis.url == "redis://127.0.0.1:5678/0"
    explicit = load_settings(
        env={"RETAILPULSE_KAFKA_BOOTSTRAP_SERVERS": "k:1", "RETAILPULSE_STATE_DIR": str(tmp_path)}
    )
    assert explicit.kafka.bootstrap_servers == "k:1"


def test_gc_threshold_is_applied_for_the_run_and_zero_leaves_python_alone():
    import gc

    from streams.runner import tune_gc

    before = gc.get_threshold()
    try:
        tune_gc(0)
        assert gc.get_threshold() == before
        tune_gc(50_000)
        assert gc.get_threshold() == (50_000, *before[1:])
        assert gc.get_freeze_count() > 0  # what existed is out of the collector's sight
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
    with pytest.raises(ConfigError, match="gc_threshold"):
        load_settings(env={"RETAILPULSE_RUN_GC_THRESHOLD": "-1"}, use_embedded=False)


def test_blas_threads_caps_every_loaded_blas_library_and_zero_leaves_them():
    import scipy.linalg  # noqa: F401  (loads scipy's own OpenBLAS besides numpy's)
    from threadpoolctl import threadpool_info, threadpool_limits

    from streams.runner import limit_blas_threads

    def blas() -> list[int]:
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    assert blas(), "numpy and scipy load a BLAS library"
    with threadpool_limits(limits=2, user_api="blas"):  # restored on exit
        limit_blas_threads(0)
        assert set(blas()) == {2}
        limit_blas_threads(1)
        assert set(blas()) == {1}
    assert load_settings(env={}, use_embedded=False).run.blas_threads == 1
    with pytest.raises(ConfigError, match="blas_threads"):
        load_settings(env={"RETAILPULSE_RUN_BLAS_THREADS": "-1"}, use_embedded=False)

"""The dashboard in a real browser: Debian's headless Chromium, driven by Selenium.

The embedded stack (the session's Kafka and Redis), a short simulation through the real
flows (bounded run) while the dashboard listens, then the page: its charts and alert feed
must render with data, and a supply alert written afterwards must appear without a
reload. A screenshot is saved under pytest's tmp_path and copied to
``.retailpulse/artifacts/dashboard.png``. Skipped, with the reason, where Chromium or its
driver is missing (CI installs Debian's ``chromium`` and ``chromium-driver``).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import redis

from infra.redis_sink import RedisWriter, redis_key
from processors.writes import StreamAdd
from streams.dashboard import DashboardServer, serve
from streams.kafka_io import create_topics
from streams.produce import EventProducer
from streams.runner import run
from streams.settings import Settings
from streams.simulator import SimulationConfig, Simulator

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACT = Path(__file__).resolve().parents[1] / ".retailpulse" / "artifacts" / "dashboard.png"
DAY = 86_400_000


def _browser_missing() -> str:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (Debian: apt-get install chromium chromium-driver)"
    if not CHROMEDRIVER.exists():
        return f"{CHROMEDRIVER} is missing (Debian: apt-get install chromium-driver)"
    return ""


@pytest.fixture
def driver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    reason = _browser_missing()
    if reason:
        pytest.skip(reason)
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must never download a driver
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--window-size=1400,1900", f"--user-data-dir={tmp_path / 'chromium'}",
    ):  # fmt: skip
        options.add_argument(arg)
    browser = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield browser
    finally:
        browser.quit()  # stops chromium and chromedriver, the processes this test started


def _wait(what: str, check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last: {value!r})")


def _simulate_and_run(settings: Settings) -> None:
    """~11 weeks over Black Friday and Christmas, small world, one supplier disruption."""
    create_topics(settings.kafka, settings.topics)
    cfg = SimulationConfig(
        seed=7,
        start_date=date(2024, 11, 1),
        days=75,
        skus=20,
        stores=3,
        customers=300,
        suppliers=4,
        scheduled_disruptions=(20,),
    )
    EventProducer(settings).send_all(Simulator(cfg).events())
    run(settings, live=False)


def test_dashboard_renders_live_data_in_headless_chromium(
    settings: Settings, driver: Any, tmp_path: Path
) -> None:
    dash: DashboardServer = serve(settings, "127.0.0.1", 0, tick_s=0.5).start()
    try:
        # The demand flow stores every closed day (demand_day hashes, docs/redis.md), so
        # the chart shows the whole 75-day run, not only the days seen closing live (a
        # bounded run closes many days per epoch and the sink publishes only the newest).
        t0 = time.monotonic()
        _simulate_and_run(settings)
        print(f"simulation + bounded run: {time.monotonic() - t0:.1f} s")
        driver.get(dash.url)
        js = driver.execute_script
        hook = "return window.rpDashboard"
        _wait("forecast chart", lambda: (js(hook) or {}).get("forecastPoints", 0) >= 60)
        _wait("supply alert rows", lambda: js(hook)["alertRows"] >= 1)
        traces = js(
            "return document.querySelectorAll('#forecast-chart.js-plotly-plot .trace').length"
        )
        assert traces >= 4, traces
        _wait(
            "health table",
            lambda: js("return document.querySelectorAll('#health-table tbody tr').length") == 6,
        )
        _wait(
            "churn table",
            lambda: js("return document.querySelectorAll('#churn-table tbody tr').length") > 0,
        )
        _wait(
            "scores chart",
            lambda: js("return document.querySelectorAll('#mase-chart .trace').length") > 0,
        )
        _wait(
            "rate chart",
            lambda: js("return document.querySelectorAll('#rate-chart .trace').length") > 0,
        )
        _wait("live badge", lambda: js(hook)["sseOpen"])
        assert js(hook)["calendarMarks"] >= 1, "holidays and retail events should be marked"

        # A new supply alert, written like the supply flow writes it, must show up live.
        js("window.__notReloaded = true")
        client = redis.Redis.from_url(settings.redis.require_url(), decode_responses=True)
        newest = client.xrevrange(redis_key(settings.redis.key_prefix, "alerts", "supply"), count=1)
        client.close()
        ms = int(newest[0][0].split("-")[0]) + DAY if newest else 1_736_000_000_000
        fields = {
            "alert_id": "SUPTEST-1", "status": "open", "supplier_id": "SUPTEST",
            "severity": "high", "score": 42.0, "affected_skus": '["SKU-NEW-1", "SKU-NEW-2"]',
            "affected_stores": '["S001"]', "impacted_pairs": "[]", "evidence": "{}",
            "opened_at": ms, "updated_at": ms,
        }  # fmt: skip
        writer = RedisWriter(settings.redis.require_url(), prefix=settings.redis.key_prefix)
        writer.write([StreamAdd("alerts", "supply", fields, ms, 0, channel="alerts.supply")])
        writer.close()
        row = "return document.querySelector('#alert-table tr[data-alert-id=\"SUPTEST-1\"]')"
        _wait("the new alert in the feed", lambda: js(row))
        text = js(row.replace("')", "').textContent"))
        assert "SKU-NEW-1" in text and "open" in text, text
        assert js("return window.__notReloaded === true"), "the page reloaded"
        assert js(hook)["loads"] == 1
        assert js("return performance.getEntriesByType('navigation').length") == 1

        shot = tmp_path / "dashboard.png"
        driver.execute_script("window.scrollTo(0, 0)")
        time.sleep(0.5)  # let the fresh-row highlight and plotly's resize settle for the shot
        assert driver.save_screenshot(str(shot))
        ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, ARTIFACT)
        print(f"screenshot: {shot} and {ARTIFACT}")

        # The picker: another level's series loads in place (no navigation either).
        from selenium.webdriver.support.ui import Select

        Select(driver.find_element("id", "level")).select_by_value("category")
        _wait(
            "a category's forecast",
            lambda: js("return location.hash").startswith("#series=category"),
        )
        _wait("category chart", lambda: js(hook)["forecastPoints"] >= 1)
        assert js("return performance.getEntriesByType('navigation').length") == 1
        assert os.path.getsize(ARTIFACT) > 10_000
    except AssertionError:
        # What the page saw, for the failure report (and a screenshot to look at).
        driver.save_screenshot(str(tmp_path / "failure.png"))
        print("page state:", driver.execute_script("return window.rpDashboard"))
        print("browser log:", driver.get_log("browser"))
        print("failure screenshot:", tmp_path / "failure.png")
        raise
    finally:
        dash.stop()

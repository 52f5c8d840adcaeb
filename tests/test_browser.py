"""A finished study in the real MLflow UI, read by headless Chromium (`make setup-browser`).

The test serves a real store with `mlflow server` on 127.0.0.1 and opens the study's page as a
user would: the run list in the model-training view with the parent run and its trials, the
parent's metric charts and a figure among its artifacts. Screenshots go to
test-artifacts/browser/.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from admire import Study
from admire.tracking import local_store_dir, run_name, ui_url
from tests.conftest import REPO

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SHOTS = REPO / "test-artifacts" / "browser"

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="Chromium is not installed: run `make setup-browser` (Debian chromium, chromium-driver)",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def mlflow_server(finished_pile: str) -> Iterator[str]:
    """`mlflow server` over the finished study's store; yields its base URL."""
    port = _free_port()
    store = local_store_dir(finished_pile)
    assert store is not None
    log = (store / "server.log").open("w")
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "mlflow", "server", "--backend-store-uri", finished_pile),
            *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        # Without job execution the server makes no huey store in /dev/shm (MLflow's GenAI
        # jobs need one and never remove it); the UI does not need them.
        env={
            **os.environ,
            "MLFLOW_TRACKING_URI": finished_pile,
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        },
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if server.poll() is not None:
                    pytest.fail(f"mlflow server exited: {(store / 'server.log').read_text()}")
                time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not answer /health within 2 minutes")
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tmp_path_factory.mktemp("chromium-profile")
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1920,1080",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


def _wait_for_text(driver, *texts: str, timeout: float = 60) -> str:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    body: list[str] = [""]

    def shown(d) -> bool:  # type: ignore[no-untyped-def]
        body[0] = d.find_element(By.TAG_NAME, "body").text
        return all(t in body[0] for t in texts)

    try:
        WebDriverWait(driver, timeout, poll_frequency=0.5).until(shown)
    except Exception:
        missing = [t for t in texts if t not in body[0]]
        pytest.fail(f"not shown after {timeout}s: {missing}\npage text:\n{body[0][:2000]}")
    return body[0]


def _close_assistant(driver) -> None:  # type: ignore[no-untyped-def]
    """Close MLflow's assistant side panel, if shown, so screenshots show the study."""
    from selenium.webdriver.common.by import By

    for button in driver.find_elements(By.CSS_SELECTOR, "button[aria-label='Close']"):
        if button.is_displayed():
            button.click()
            return


def test_browser_shows_the_study_its_trials_charts_and_plots(
    finished_pile: str, mlflow_server: str, browser
) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    study = Study.load("pile-replay", tracking_uri=finished_pile)
    exp_id = MlflowClient(finished_pile).get_run(study.parent_id).info.experiment_id
    first = study.trials[0]

    # The run list opens in the model-training view with the study's columns.
    browser.get(ui_url(exp_id, mlflow_server))
    _wait_for_text(browser, "Model training", "pile-replay", "objective", "cost")
    _close_assistant(browser)
    _wait_for_text(browser, "fidelity")
    # The trials are nested under the parent: expand it and find them by name.
    listed = _wait_for_text(browser, "pile-replay")
    assert "t000 · " not in listed  # the parent only, collapsed
    parent_row = next(
        r
        for r in browser.find_elements(By.CSS_SELECTOR, ".ag-row")
        if "pile-replay" in r.text and r.find_elements(By.CSS_SELECTOR, "button")
    )
    parent_row.find_element(By.CSS_SELECTOR, "button").click()  # its expander
    text = _wait_for_text(browser, run_name(first.spec, first.objective)[:20], "t005 · ")
    assert "7 matching runs" in text  # the parent and six trials
    browser.save_screenshot(str(SHOTS / "runs.png"))

    # The parent run: description with the recommended mixture, and its summary metrics.
    base = f"{mlflow_server}/#/experiments/{exp_id}/runs/{study.parent_id}"
    browser.get(f"{base}?workflowType=machine_learning")
    _wait_for_text(browser, "Recommended mixture", "recommended_predicted", "trials.completed")
    browser.save_screenshot(str(SHOTS / "parent.png"))

    # Its metric charts (step = trial index).
    browser.get(f"{base}/model-metrics?workflowType=machine_learning")
    _wait_for_text(browser, "best_objective_target", "cumulative_cost", "Step")
    charts = browser.find_elements(By.CSS_SELECTOR, "canvas, svg.main-svg")
    assert charts, "no chart drawn on the model-metrics tab"
    browser.save_screenshot(str(SHOTS / "metrics.png"))

    # A figure among its artifacts, loaded as an image.
    browser.get(f"{base}/artifacts/plots/progress.png?workflowType=machine_learning")
    _wait_for_text(browser, "plots/progress.png", "recommendation.json", "study.yaml")
    images = []
    for _ in range(60):
        images = [
            img
            for img in browser.find_elements(By.TAG_NAME, "img")
            if browser.execute_script("return arguments[0].naturalWidth", img) > 300
        ]
        if images:
            break
        time.sleep(0.5)
    assert images, "the progress figure was not rendered"
    browser.save_screenshot(str(SHOTS / "artifact.png"))
    assert all((SHOTS / f"{n}.png").stat().st_size > 10_000 for n in ("runs", "metrics"))

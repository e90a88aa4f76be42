"""The training display in a real JupyterLab, driven in Chromium by Playwright.

A JupyterLab server on 127.0.0.1 (a free port, a token) serves a temporary folder with a notebook that
trains a tiny model with ``progress="widget"``. The test runs every cell, waits for the progress bar and a
few epochs, clicks Stop, and checks that the button says "Stopping..." at once, that training ended early
on the click, that the live box gave way to a static PNG of the loss curve the size of the live one, with
a line saying how to resume under it; then that a run with early stopping says which epoch it kept, that
one epoch's curve has one whole-epoch tick, and that JupyterLab's news prompt does not show.

Deselected by the default ``pytest`` run (marker ``browser``); run it with ``make test-browser``, or
``python -m pytest -m browser tests/browser``. Skipped when Playwright or a Chromium binary is missing
(``DELPYRO_CHROMIUM`` names one; else ``chromium``, ``chromium-browser`` or ``google-chrome`` on PATH).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.browser

EPOCHS = 100  # far more than the test waits for: the run must end on the click
STEPS_PER_EPOCH = 4  # 64 compounds in batches of 16

CELLS = [
    """import time

import delpyro
from delpyro import ModelConfig, fit

screen = delpyro.simulate_del(seed=0, n_per_cycle=(4, 4, 4))
config = ModelConfig(hidden_size=16, n_layers=1, fingerprint_bits=256, epochs=EPOCHS, batch_size=16)


def slow(event, info):  # steps that take a while, and an epoch's close longer, so the display can be watched
    time.sleep(0.1 if event == "step" else 1.5 if event == "epoch" else 0)""".replace("EPOCHS", str(EPOCHS)),
    """result = fit(screen, None, config, progress="widget", callbacks=[slow])""",
    """print(f"done: step {result.step} epoch {result.epoch} stopped {result.stopped_by_user}")""",
    # early stopping, said under the final curve
    """train, val, _ = delpyro.split(screen, "random", (0.75, 0.25, 0.0), seed=0)
stopped = fit(train, val, config, progress="widget", early_stopping_patience=1)""",
    # the epoch axis after one epoch: whole epochs only
    """from delpyro.widgets import TrainingMonitor

one = TrainingMonitor(total_epochs=5, mode="none")
one.epoch(2.0, 1.9, epoch=1)
axes = one.loss_figure().axes[0]
low, high = axes.get_xlim()
print("epoch ticks:", [t for t in axes.get_xticks().tolist() if low <= t <= high])""",
]


# true once the open notebook's kernel is connected and idle
KERNEL_READY = """() => {
    const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    const kernel = panel && panel.sessionContext && panel.sessionContext.session && panel.sessionContext.session.kernel;
    return Boolean(kernel && kernel.connectionStatus === "connected" && kernel.status === "idle");
}"""


def chromium_binary() -> str | None:
    named = os.environ.get("DELPYRO_CHROMIUM")
    if named:
        return named if Path(named).exists() else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def chromium() -> tuple[str, object]:
    """The Chromium binary and Playwright's sync API, or a skip saying which is missing."""
    binary = chromium_binary()
    if binary is None:
        pytest.skip("no Chromium binary found (install Debian's chromium, or set DELPYRO_CHROMIUM)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    return binary, sync_api


@pytest.fixture
def lab(chromium, tmp_path: Path):
    """A JupyterLab server on a temporary folder holding train.ipynb; yields (url, token, log path)."""
    root = tmp_path / "lab"
    root.mkdir()
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code) for code in CELLS])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, root / "train.ipynb")
    port, token = free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
        "IPYTHONDIR": str(tmp_path / "ipython"),
    }
    env.pop("DELPYRO_PROGRESS", None)
    log = tmp_path / "jupyterlab.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyterlab",
                "--no-browser",
                "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.port={port}",
                "--ServerApp.port_retries=0",
                f"--IdentityProvider.token={token}",
                f"--ServerApp.root_dir={root}",
                "--LabApp.expose_app_in_browser=True",
                f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}",
                *(["--allow-root"] if os.geteuid() == 0 else []),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                pytest.fail(f"JupyterLab exited with {server.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5) as response:
                    json.load(response)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not answer within 120 s:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
        yield url, token, log
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_progress_bar_stop_button_and_final_image(chromium, lab, tmp_path: Path) -> None:
    binary, sync_api = chromium
    url, token, log = lab

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=binary, headless=True, args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(f"{url}/lab/tree/train.ipynb?token={token}", timeout=120_000)
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
            page.wait_for_function(KERNEL_READY, timeout=180_000)  # cells sent before that can be dropped
            # started, not awaited: the command's promise settles only when every cell has run
            page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")

            monitor = page.locator(".delpyro-training-monitor")
            monitor.locator(".widget-hprogress, .widget-progress").wait_for(state="visible", timeout=180_000)
            assert monitor.locator("button", has_text="Stop").count() == 1
            assert monitor.locator("img").count() == 1  # the live curve
            # a few epochs, then Stop
            monitor.get_by_text(re.compile(rf"epoch ([3-9]|\d\d)/{EPOCHS}")).wait_for(timeout=120_000)
            monitor.locator("button", has_text="Stop").click()
            # the button says so as soon as the kernel reads the click, at the next step (0.1 s here; up to
            # 3 s allowed for a loaded machine), and keeps saying it while the epoch closes (1.5 s here)
            monitor.locator("button", has_text="Stopping...").wait_for(timeout=3_000)

            done = page.get_by_text(re.compile(r"done: step \d+ epoch \d+ stopped \w+"))
            done.wait_for(timeout=180_000)
            step, epoch, stopped = re.search(r"step (\d+) epoch (\d+) stopped (\w+)", done.inner_text()).groups()
            # the click ended training early, while the cell ran, after the step under way
            assert stopped == "True" and int(epoch) < EPOCHS and int(step) < EPOCHS * STEPS_PER_EPOCH

            # the live box gave way to a static PNG of the final curve in the cell's output
            final = page.locator(".jp-OutputArea-output.jp-RenderedImage img").first
            final.wait_for(timeout=30_000)
            assert monitor.count() <= 1  # the first run's box is gone (the early-stopping run's may be live)
            source = final.get_attribute("src") or ""
            assert source.startswith("data:image/png;base64,") and len(source) > 2000
            # the size of the live image, not twice it (savefig.dpi of the plotting theme)
            assert final.evaluate("image => [image.naturalWidth, image.naturalHeight]") == [560, 320]
            # under it, how training ended and how to go on
            page.get_by_text(
                re.compile(r"stopped on request after step \d+ \(epoch \d+\); fit\(\.\.\., resume=result\) continues")
            ).wait_for(timeout=10_000)

            # early stopping is said, with the epoch kept
            page.get_by_text(re.compile(r"early stopping: no improvement for 1 epochs, kept epoch \d+")).wait_for(
                timeout=180_000
            )
            page.get_by_text("epoch ticks: [1.0]").wait_for(timeout=60_000)
            # the lab's news prompt was answered by the settings the Makefile writes
            assert page.get_by_text("official Jupyter news").count() == 0
        except Exception:
            page.screenshot(path=str(tmp_path / "jupyterlab.png"), full_page=True)
            print(f"screenshot: {tmp_path / 'jupyterlab.png'}; server log: {log}")
            raise
        finally:
            browser.close()

"""The training display: text lines, the widget box, the Stop button (and resuming after it), the
DELPYRO_PROGRESS override, throttling, and the handling of a click that arrives while a cell runs."""

from __future__ import annotations

import io
import math
import re
from types import SimpleNamespace

import ipywidgets
import pytest
from jupyter_client.session import Session

import delpyro
import delpyro.train
from delpyro import ModelConfig, fit
from delpyro.widgets import ENV_VAR, TrainingMonitor, _deliver_pending_clicks, resolve_mode

BATCH = 16  # 64 compounds: 4 steps an epoch


@pytest.fixture(scope="module")
def screen() -> delpyro.DELData:
    return delpyro.simulate_del(seed=0, n_per_cycle=(4, 4, 4))


@pytest.fixture(scope="module")
def halves(screen):
    train, val, _ = delpyro.split(screen, "random", (0.75, 0.25, 0.0), seed=0)
    return train, val


def tiny(**overrides) -> ModelConfig:
    return ModelConfig(**{"hidden_size": 16, "n_layers": 1, "fingerprint_bits": 256, "epochs": 2, **overrides})


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def no_override(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)


# ---------------------------------------------------------------------------------------------------
# text


def test_text_mode_prints_one_line_per_epoch(screen, capsys) -> None:
    result = fit(screen, None, tiny(), batch_size=BATCH, progress="text")
    lines = capsys.readouterr().out.splitlines()
    assert result.step == 8
    epoch_lines = [line for line in lines if line.startswith("epoch ")]
    assert len(epoch_lines) == 2
    for number, (line, row) in enumerate(zip(epoch_lines, result.records, strict=True), start=1):
        pattern = (
            rf"epoch {number}/2  train_loss (\S+)  val_loss -  \S+ s  step {4 * number}  \S+ steps/s  \S+ compounds/s"
        )
        match = re.match(pattern, line)
        assert match, line
        assert float(match.group(1)) == pytest.approx(row["train_loss"], abs=5e-5)
    assert "0:00 left" in epoch_lines[1]  # the end


def test_monitor_as_callback_writes_the_losses_fit_records(halves) -> None:
    train, val = halves
    stream = io.StringIO()
    monitor = TrainingMonitor(mode="text", stream=stream, text_interval=0)
    result = fit(train, val, tiny(), batch_size=BATCH, progress="none", callbacks=[monitor])
    lines = stream.getvalue().splitlines()
    steps = math.ceil(train.n_compounds / BATCH)
    step_lines = [line for line in lines if line.startswith("  epoch")]
    epoch_lines = [line for line in lines if line.startswith("epoch")]
    assert len(step_lines) == 2 * steps and len(epoch_lines) == 2
    assert step_lines[0].startswith(f"  epoch 1/2  ·  step 1 (1/{steps} in this epoch)")
    assert monitor.closed and monitor.steps == result.step == 2 * steps
    assert monitor.total_epochs == 2 and monitor.steps_per_epoch == steps
    assert monitor.compounds == 2 * train.n_compounds
    for line, row in zip(epoch_lines, result.records, strict=True):
        assert f"train_loss {row['train_loss']:.4f}  val_loss {row['val_loss']:.4f}" in line
    assert [r["train_loss"] for r in monitor.records] == [r["train_loss"] for r in result.records]
    with pytest.raises(RuntimeError, match="closed"):
        monitor.step(1.0)


def test_manual_loop_rates_time_left_and_metrics() -> None:
    clock = Clock()
    stream = io.StringIO()
    monitor = TrainingMonitor(total_epochs=2, steps_per_epoch=10, mode="text", stream=stream, clock=clock)
    for _ in range(5):
        clock.now += 1.0
        monitor.step(2.0, epoch=1, compounds=100)
    # 4 steps in the 4 s since the first step, 0.4 epochs gained: 1.5 epochs left take 15 s
    assert monitor.rates() == (1.0, 100.0)
    assert monitor.time_left() == pytest.approx(15.0)
    assert monitor.status_text() == (
        "epoch 1/2  ·  step 5 (5/10 in this epoch)  ·  loss 2.0000  ·  1.0 steps/s  ·  100 compounds/s  ·  0:15 left"
    )
    for _ in range(5):
        clock.now += 1.0
        monitor.step(1.0, epoch=1, compounds=100)
    row = monitor.epoch(val_loss=1.25, auc=0.875)
    assert row == {"epoch": 1, "train_loss": 1.5, "val_loss": 1.25, "seconds": 10.0, "auc": 0.875}
    assert stream.getvalue().splitlines()[-1] == (
        "epoch 1/2  train_loss 1.5000  val_loss 1.2500  auc 0.8750  10.0 s  step 10  1.0 steps/s  100 compounds/s  "
        "0:10 left"
    )
    monitor.step(1.0)  # the epoch defaults to the one after the last recorded
    assert monitor.current_epoch == 2 and monitor.epoch_steps == 1 and monitor.last_step == 11
    monitor.request_stop()
    monitor.close()
    assert stream.getvalue().splitlines()[-1] == "stopped on request after step 11 (epoch 2)"


# ---------------------------------------------------------------------------------------------------
# widget


def widgets_in(box) -> list:
    found = [box]
    for child in getattr(box, "children", ()):
        found += widgets_in(child)
    return found


def test_widget_mode_builds_its_widgets_without_a_browser() -> None:
    clock = Clock()
    monitor = TrainingMonitor(total_epochs=3, steps_per_epoch=4, mode="widget", min_interval=0, clock=clock)
    assert monitor.mode == "widget" and isinstance(monitor.widget, ipywidgets.VBox)
    parts = widgets_in(monitor.widget)
    bars = [w for w in parts if isinstance(w, ipywidgets.FloatProgress)]
    images = [w for w in parts if isinstance(w, ipywidgets.Image)]
    buttons = [w for w in parts if isinstance(w, ipywidgets.Button)]
    assert bars == [monitor.progress_bar] and images == [monitor.loss_image] and buttons == [monitor.stop_button]
    assert monitor.stop_button.description == "Stop" and bars[0].max == 3.0
    assert images[0].format == "png" and bytes(images[0].value).startswith(b"\x89PNG")
    placeholder = bytes(images[0].value)

    for step in range(1, 5):
        clock.now += 0.5
        monitor.step(3.0, epoch=1, step=step, compounds=16)
        if step == 2:
            assert monitor.progress_bar.value == 0.5 and "step 2 (2/4 in this epoch)" in monitor.status.value
    monitor.epoch(2.5, 2.75, epoch=1, seconds=2.0, spearman=0.4321)
    assert monitor.progress_bar.value == 1.0
    assert "32 compounds/s" in monitor.status.value  # 48 compounds after the first step, in 1.5 s
    assert bytes(images[0].value) != placeholder and bytes(images[0].value).startswith(b"\x89PNG")  # the curve, redrawn
    assert "spearman" in monitor.metrics_view.value and "0.4321" in monitor.metrics_view.value
    assert "2.7500" in monitor.metrics_view.value  # val_loss, and the best so far

    monitor.close()
    assert monitor.closed and all(w.comm is None for w in parts)  # every widget closed


def test_stop_button_stops_fit_after_the_current_step_and_the_run_resumes(halves) -> None:
    train, val = halves
    steps = math.ceil(train.n_compounds / BATCH)
    monitor = TrainingMonitor(mode="widget", min_interval=0)
    stop_at = steps + 2  # the second step of the second epoch

    def click(event: str, info: dict) -> None:
        if event == "step" and info["step"] == stop_at:
            monitor.stop_button.click()

    result = fit(train, val, tiny(), epochs=4, batch_size=BATCH, progress="none", callbacks=[monitor, click])
    assert result.stopped_by_user and monitor.stop_requested and monitor.stop_button.comm is None
    assert result.step == stop_at and result.epoch == 2 and len(result.records) == 2
    assert math.isfinite(result.records[1]["val_loss"])  # the stopped epoch was closed: validation ran
    assert monitor.records[-1]["epoch"] == 2

    more = fit(train, val, resume=result, epochs=4, batch_size=BATCH, progress="none")
    assert not more.stopped_by_user and more is result
    assert more.epoch == 4 and len(more.history) == 4 and list(more.history["epoch"]) == [1, 2, 3, 4]
    assert more.step == stop_at + 2 * steps


def test_stop_through_fits_own_widget(screen, monkeypatch) -> None:
    monitors = []

    def capture(*args, **kwargs):
        monitor = TrainingMonitor(*args, **kwargs)
        monitors.append(monitor)
        return monitor

    monkeypatch.setattr(delpyro.train, "TrainingMonitor", capture)  # the display fit makes for itself

    def click(event: str, info: dict) -> None:
        if event == "step" and info["step"] == 3:
            monitors[0].stop_button.click()

    result = fit(screen, None, tiny(), epochs=3, batch_size=BATCH, progress="widget", callbacks=[click])
    assert monitors[0].mode == "widget" and monitors[0].closed
    assert result.stopped_by_user and result.step == 3 and result.epoch == 1
    assert result.records[0]["train_loss"] == pytest.approx(monitors[0].records[0]["train_loss"])
    again = fit(screen, None, resume=result, epochs=3, batch_size=BATCH, progress="none")
    assert again.epoch == 3 and again.step == 3 + 2 * 4


def test_throttling_limits_redraws() -> None:
    clock = Clock()
    throttled = TrainingMonitor(total_epochs=10, steps_per_epoch=100, mode="widget", min_interval=0.25, clock=clock)
    eager = TrainingMonitor(total_epochs=10, steps_per_epoch=100, mode="widget", min_interval=0, clock=clock)
    for step in range(1, 1001):
        clock.now += 1 / 128  # 128 steps a second (a step length exact in binary)
        throttled.step(1.0, epoch=(step - 1) // 100 + 1)
        eager.step(1.0, epoch=(step - 1) // 100 + 1)
    assert eager.redraws == 1000
    assert throttled.redraws == 32  # steps 1, 33, 65, ..., 993: one update every 0.25 s
    throttled.close()
    eager.close()


# ---------------------------------------------------------------------------------------------------
# the mode


def test_environment_override(monkeypatch, screen, capsys) -> None:
    assert resolve_mode("auto") == "text"  # no kernel here
    for value in ("widget", "text", "none"):
        monkeypatch.setenv(ENV_VAR, value)
        assert resolve_mode("auto") == value and TrainingMonitor().mode == value
    monkeypatch.setenv(ENV_VAR, "widget")
    assert TrainingMonitor(mode="text").mode == "text"  # an explicit mode is kept
    assert TrainingMonitor(mode="none").widget is None
    monkeypatch.setenv(ENV_VAR, "none")
    fit(screen, None, tiny(epochs=1), batch_size=BATCH)  # progress="auto"
    assert capsys.readouterr().out == ""
    monkeypatch.setenv(ENV_VAR, "text")
    fit(screen, None, tiny(epochs=1), batch_size=BATCH)
    assert capsys.readouterr().out.startswith("epoch 1/1  train_loss")
    monkeypatch.setenv(ENV_VAR, "fancy")
    with pytest.raises(ValueError, match=ENV_VAR):
        TrainingMonitor()
    with pytest.raises(ValueError, match="progress must be"):
        fit(screen, None, tiny(epochs=1), batch_size=BATCH, progress="loud")


def test_a_notebook_server_kernel_gets_the_widget(monkeypatch) -> None:
    monkeypatch.setattr("delpyro.widgets.in_jupyter", lambda: True)
    monkeypatch.delenv("VSCODE_PID", raising=False)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.setattr(ipywidgets.Widget, "_control_comm", None)
    monkeypatch.setattr("IPython.get_ipython", lambda: SimpleNamespace(user_ns={}))
    assert resolve_mode("auto") == "text"  # a headless kernel (papermill, nbclient)
    monkeypatch.setenv("JPY_SESSION_NAME", "train.ipynb")
    assert resolve_mode("auto") == "widget"


# ---------------------------------------------------------------------------------------------------
# a click that arrives while the cell runs


class PendingStream:
    """Stands for the kernel's main shell stream: messages wait in it until flushed to its callback."""

    def __init__(self, messages: list[list[bytes]]) -> None:
        self.waiting = list(messages)
        self._recv_copy = True
        self.passed_on: list[list[bytes]] = []
        self._recv_callback = self.passed_on.append

    def closed(self) -> bool:
        return False

    def flush(self, flag: int) -> int:
        handled = 0
        while self.waiting:
            self._recv_callback(self.waiting.pop(0))
            handled += 1
        return handled


def test_a_click_waiting_in_the_kernel_reaches_the_stop_button(monkeypatch) -> None:
    monitor = TrainingMonitor(mode="widget")
    session = Session(key=b"secret")
    click = session.msg(
        "comm_msg",
        content={
            "comm_id": monitor.stop_button.comm.comm_id,
            "data": {"method": "custom", "content": {"event": "click"}},
        },
    )
    other_comm = session.msg("comm_msg", content={"comm_id": "another", "data": {"method": "update", "state": {}}})
    execute = session.msg("execute_request", content={"code": "1 + 1"})
    waiting = [session.serialize(m, ident=[b"frontend"]) for m in (execute, click, other_comm)]
    stream = PendingStream(waiting)
    original = stream._recv_callback
    kernel = SimpleNamespace(session=session, shell_channel_thread=None, shell_stream=stream)
    events: list[str] = []
    shell = SimpleNamespace(kernel=kernel, events=SimpleNamespace(trigger=events.append))
    monkeypatch.setattr("IPython.get_ipython", lambda: shell)

    assert _deliver_pending_clicks(monitor.stop_button)
    assert monitor.stop_requested and monitor.stop_button.disabled
    assert stream.passed_on == [waiting[0], waiting[2]]  # the rest go on to the kernel, in their order
    assert stream._recv_callback == original  # the kernel's handler is back
    assert events == ["pre_execute", "post_execute"]  # the click was handled as the kernel handles comm messages
    monkeypatch.setattr("IPython.get_ipython", lambda: None)
    assert not _deliver_pending_clicks(monitor.stop_button)  # outside a kernel: nothing to read
    monitor.close()


# ---------------------------------------------------------------------------------------------------
# how training ended, said in both modes


def test_early_stopping_is_said_in_text_and_on_the_final_image(halves, capsys, monkeypatch) -> None:
    """Early stopping names the patience and the epoch kept, as the last text line and in the final
    curve's title; the final PNG is the live image's size (560 x 320) whatever savefig.dpi says."""
    import matplotlib

    train, val = halves
    monkeypatch.setitem(matplotlib.rcParams, "savefig.dpi", 200)  # as the plotting theme sets it
    result = fit(train, val, tiny(), epochs=60, batch_size=BATCH, progress="text", early_stopping_patience=1)
    assert result.stopped_early and result.epoch < 60
    last = capsys.readouterr().out.splitlines()[-1]
    assert last == f"early stopping: no improvement for 1 epochs, kept epoch {result.best_epoch}"

    monitor = TrainingMonitor(total_epochs=60, mode="none")
    for row in result.records:
        monitor.epoch(row["train_loss"], row["val_loss"], epoch=row["epoch"])
    delpyro.train.end_display(monitor, result, patience=1)
    assert monitor.loss_figure(final=True).axes[0].get_title().endswith(f"kept epoch {result.best_epoch}")
    from PIL import Image

    image = Image.open(io.BytesIO(monitor.loss_png(final=True)))
    assert image.size == (560, 320)


def test_one_epoch_has_one_integer_tick() -> None:
    monitor = TrainingMonitor(total_epochs=5, mode="none")
    monitor.epoch(2.0, 1.9, epoch=1)
    axes = monitor.loss_figure().axes[0]
    ticks = [t for t in axes.get_xticks() if axes.get_xlim()[0] <= t <= axes.get_xlim()[1]]
    assert ticks == [1.0]


def test_stop_says_stopping_at_once_and_ends_with_how_to_go_on(halves, capsys) -> None:
    """The click sets "Stopping..." before the step under way ends; the run's last line says how to go on,
    after the final image (widget mode) or the last epoch line (text mode)."""
    train, val = halves
    monitor = TrainingMonitor(mode="widget", min_interval=0)
    seen = []

    def click(event: str, info: dict) -> None:
        if event == "step" and info["step"] == 2:
            monitor.stop_button.click()
            seen.append(monitor.stop_button.description)

    result = fit(train, val, tiny(), epochs=4, batch_size=BATCH, progress="none", callbacks=[monitor, click])
    assert seen == ["Stopping..."] and result.stopped_by_user
    assert delpyro.train.ending(result) == (
        "stopped on request after step 2 (epoch 1); fit(..., resume=result) continues from the next epoch"
    )
    stream = io.StringIO()
    text = TrainingMonitor(mode="text", stream=stream)
    text.step(1.0, epoch=1, step=1)
    text.epoch(1.0, epoch=1)
    text.close(delpyro.train.ending(result, interrupted=True))
    assert stream.getvalue().splitlines()[-1] == (
        "interrupted after step 2 (epoch 1): the result keeps every step taken; fit(..., resume=result) "
        "continues from the next epoch"
    )

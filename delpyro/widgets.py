"""Live display of training: :class:`TrainingMonitor`.

A monitor shows how training goes and lets a person stop it:

- ``"widget"`` (JupyterLab): a box with a progress bar over the epochs (step, epoch, steps/s, compounds/s,
  time left), a live curve of the training and validation loss per epoch, the latest metrics and a Stop
  button. Updates come at most every ``min_interval`` seconds. When training ends the box is replaced by a
  static PNG of the final curve, so a saved notebook shows it without any widget state;
- ``"text"`` (a terminal, CI, a notebook run headless by papermill or nbclient): one line per epoch with
  the losses, the step, the rate and the time left, and within a long epoch a step line at most every
  ``text_interval`` seconds;
- ``"none"``: nothing is shown; the monitor still keeps the history and the stop flag.

``"auto"`` takes the environment variable ``DELPYRO_PROGRESS`` (``widget``, ``text`` or ``none``) when it
is set, else the widget inside a Jupyter kernel that a notebook frontend shows, and text elsewhere.

With :func:`delpyro.fit` the monitor is a callback (``progress="widget"`` builds the same display)::

    from delpyro.widgets import TrainingMonitor

    monitor = TrainingMonitor()
    result = fit(train, val, config, epochs=50, progress="none", callbacks=[monitor])
    if result.stopped_by_user:          # Stop was clicked: training ended after the step under way
        result = fit(train, val, resume=result, epochs=50, callbacks=[TrainingMonitor()])

Around the steps, by hand::

    batches = Minibatches(encoding.encode(train), batch_size=256, seed=0)
    val_batch = next(iter(Minibatches(encoding.encode(val), 4096, shuffle=False)))
    with TrainingMonitor(total_epochs=20, steps_per_epoch=len(batches)) as monitor:
        for epoch in range(1, 21):
            for batch in batches:
                loss = train_step(svi, batch)
                monitor.step(loss, epoch=epoch, compounds=len(batch["index"]))
                if monitor.stop_requested:
                    break
            monitor.epoch(val_loss=eval_step(svi, val_batch), lr=1e-3)   # train_loss: the mean of the steps
            if monitor.stop_requested:
                break

A monitor serves one run: after :meth:`TrainingMonitor.close` (or the ``"end"`` event from ``fit``) it
takes no more steps. This module knows nothing else of delpyro: the training loop feeds it numbers.
"""

from __future__ import annotations

import html
import io
import math
import numbers
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ENV_VAR",
    "MODES",
    "TrainingMonitor",
    "Words",
    "in_jupyter",
    "resolve_mode",
    "widget_frontend",
]

ENV_VAR = "DELPYRO_PROGRESS"
MODES = ("auto", "widget", "text", "none")
_ROW_KEYS = ("epoch", "train_loss", "val_loss", "seconds")


# ---------------------------------------------------------------------------------------------------
# where the display goes


def in_jupyter() -> bool:
    """True inside a Jupyter (IPython kernel) session."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def widget_frontend() -> bool:
    """True inside a Jupyter kernel that a notebook frontend shows (JupyterLab, Notebook, VS Code).

    False outside a kernel, and in a kernel that papermill or nbclient runs headless. The signs read: a
    widget frontend has opened ipywidgets' control channel, or the kernel was started by a Jupyter server
    for a notebook (``JPY_SESSION_NAME``), or by VS Code.
    """
    if not in_jupyter():
        return False
    widgets = sys.modules.get("ipywidgets")
    if widgets is not None and getattr(widgets.Widget, "_control_comm", None) is not None:
        return True
    if os.environ.get("JPY_SESSION_NAME") or os.environ.get("VSCODE_PID"):
        return True
    from IPython import get_ipython

    return "__vsc_ipynb_file__" in getattr(get_ipython(), "user_ns", {})


def resolve_mode(mode: str = "auto") -> str:
    """The display for ``mode``: "widget", "text" or "none".

    "auto" takes ``DELPYRO_PROGRESS`` when it is set (to "widget", "text", "none" or "auto"), else "widget"
    under a notebook frontend (:func:`widget_frontend`) and "text" elsewhere. Other modes stay as they are.

    >>> resolve_mode("none")
    'none'
    """
    if mode not in MODES:
        raise ValueError(f"mode must be 'auto', 'text', 'widget' or 'none', got {mode!r}")
    if mode != "auto":
        return mode
    chosen = os.environ.get(ENV_VAR, "").strip().lower()
    if chosen and chosen not in MODES:
        raise ValueError(f"{ENV_VAR} must be 'widget', 'text', 'none' or 'auto', got {chosen!r}")
    if chosen and chosen != "auto":
        return chosen
    return "widget" if widget_frontend() else "text"


# ---------------------------------------------------------------------------------------------------
# formatting


def _format(value: Any) -> str:
    """A number as the display shows it: 4 decimals for reals, "-" for None and NaN."""
    if value is None:
        return "-"
    if isinstance(value, bool) or isinstance(value, numbers.Integral):
        return str(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return "-" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def _duration(seconds: float) -> str:
    """Seconds as m:ss or h:mm:ss.

    >>> _duration(75.4), _duration(3725)
    ('1:15', '1:02:05')
    """
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _real(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


# ---------------------------------------------------------------------------------------------------
# the monitor


@dataclass(frozen=True)
class Words:
    """What a :class:`TrainingMonitor` calls things: the run, its periods and their steps (the progress bar,
    status and lines), the curve's quantity, the two losses of a period's row (``validation`` None: not
    shown) and the running mean of the steps in the status line."""

    run: str = "training"
    period: str = "epoch"
    unit: str = "step"
    quantity: str = "loss per compound"
    loss: str = "train_loss"
    validation: str | None = "val_loss"
    running: str = "loss"  # the mean of the period's steps so far, in the status line


class TrainingMonitor:
    """A live display of training: progress, rate, time left, the loss curve, metrics and a Stop button.

    Args:
        total_epochs: the epoch training ends at (for the bar and the time left); ``fit`` sets it.
        steps_per_epoch: steps in one epoch; ``fit`` sets it, and otherwise it is learned from the first
            epoch.
        mode: "auto" | "widget" | "text" | "none" (see :func:`resolve_mode`).
        min_interval: the fewest seconds between two updates of the widget (the curve, whose drawing takes
            some milliseconds, is redrawn less often where drawing would take over a tenth of the time).
        text_interval: the fewest seconds between two step lines within an epoch in text mode.
        stream: where text mode writes (default: ``sys.stdout`` at the time of writing).
        clock: the clock the rates, the time left and the throttling read (seconds, monotonic).
        words: what the display calls things (:class:`Words`: the run, its periods, their steps, the
            curve and the losses); ``run_nuts`` shows sampling by chains of draws.

    Feed it with :meth:`step` after every training step and :meth:`epoch` after every epoch, or pass it to
    ``fit(..., callbacks=[monitor])``: calling ``monitor(event, info)`` takes fit's "step", "epoch" and
    "end" events. ``stop_requested`` turns true when Stop is clicked (or :meth:`request_stop` is called);
    ``fit`` then ends training after the current step. ``records`` holds the epoch rows seen.

    >>> monitor = TrainingMonitor(total_epochs=2, steps_per_epoch=2, mode="none")
    >>> for epoch in (1, 2):
    ...     monitor.step(2.0 / epoch, epoch=epoch)
    ...     monitor.step(1.0 / epoch, epoch=epoch)
    ...     row = monitor.epoch(val_loss=1.6 / epoch, auc=0.5 + epoch / 10)
    >>> row["epoch"], row["train_loss"], row["auc"], monitor.steps
    (2, 0.75, 0.7, 4)
    """

    def __init__(
        self,
        total_epochs: int | None = None,
        steps_per_epoch: int | None = None,
        mode: str = "auto",
        min_interval: float = 0.25,
        *,
        text_interval: float = 30.0,
        stream: Any = None,
        clock: Callable[[], float] = time.monotonic,
        words: Words | None = None,
    ) -> None:
        if min_interval < 0 or text_interval < 0:
            raise ValueError("min_interval and text_interval must not be negative")
        self.total_epochs = total_epochs
        self.steps_per_epoch = steps_per_epoch
        self.min_interval = float(min_interval)
        self.text_interval = float(text_interval)
        self.stream = stream
        self._clock = clock
        self.mode = resolve_mode(mode)
        self.words = words or Words()

        self.records: list[dict[str, Any]] = []
        self.stop_requested = False
        self.closed = False
        self.kept_epoch: int | None = None  # the epoch early stopping kept, as close() was told
        self.steps = 0  # steps this monitor was shown
        self.compounds = 0  # compounds in those steps (where given)
        self.last_step: int | None = None  # the step number last reported (fit counts across resumed runs)
        self.last_loss = math.nan
        self.current_epoch: int | None = None  # the epoch under way (or the last one finished)
        self.epoch_steps = 0  # steps into the current epoch
        self.redraws = 0  # updates of the display: widget refreshes or text lines
        self._loss_sum = 0.0
        self._loss_count = 0
        self._created = clock()
        self._epoch_clock = self._created  # when the current epoch began (the previous one ended)
        self._reference: tuple[float, int, int, float] | None = None  # time, steps, compounds, progress
        self._last_draw = -math.inf
        self._last_text = self._created
        self._plotted = -1  # records in the curve last drawn
        self._tabled = -1  # records in the metrics table last written
        self._plot_due = -math.inf  # the curve is redrawn no sooner (drawing takes at most a tenth of the time)
        self._handle: Any = None
        self._can_poll = True
        self._boxes: tuple[Any, ...] = ()

        self.widget: Any = None
        self.progress_bar: Any = None
        self.stop_button: Any = None
        self.status: Any = None
        self.loss_image: Any = None
        self.metrics_view: Any = None
        if self.mode == "widget":
            try:
                self._build_widgets()
            except ImportError:
                if mode == "widget":
                    raise
                self.mode = "text"

    # ---- feeding it ---------------------------------------------------------------------------------
    def __call__(self, event: str, info: dict[str, Any]) -> None:
        """The ``fit`` callback: "step" (step, epoch, loss, compounds, epochs, steps_per_epoch), "epoch" (the
        history row; keys beyond epoch, train_loss, val_loss and seconds are shown as metrics) and "end"."""
        if event == "step":
            if info.get("epochs") is not None:
                self.total_epochs = info["epochs"]
            if info.get("steps_per_epoch") is not None:
                self.steps_per_epoch = info["steps_per_epoch"]
            self.step(info.get("loss"), epoch=info.get("epoch"), step=info.get("step"), compounds=info.get("compounds"))
        elif event == "epoch":
            metrics = {key: value for key, value in info.items() if key not in _ROW_KEYS}
            self.epoch(
                info.get("train_loss"),
                info.get("val_loss"),
                epoch=info.get("epoch"),
                seconds=info.get("seconds"),
                **metrics,
            )
        elif event == "end":
            self.close()

    def step(
        self,
        loss: float | None = None,
        *,
        epoch: int | None = None,
        step: int | None = None,
        compounds: int | None = None,
    ) -> None:
        """One training step done: its ``loss``, the (1-based) ``epoch`` it belongs to (default: the one after
        the last epoch reported), its number ``step`` (default: counted here) and the ``compounds`` in its
        batch (for compounds/s)."""
        self._check_open()
        now = self._clock()
        if epoch is None:
            epoch = self._epochs_done() + 1
        if epoch != self.current_epoch:
            self.current_epoch = epoch
            self.epoch_steps = 0
            self._loss_sum = 0.0
            self._loss_count = 0
        self.epoch_steps += 1
        self.steps += 1
        self.last_step = step if step is not None else (self.last_step or 0) + 1
        if compounds is not None:
            self.compounds += int(compounds)
        if loss is not None and math.isfinite(_real(loss)):
            self.last_loss = _real(loss)
            self._loss_sum += self.last_loss
            self._loss_count += 1
        if self._reference is None:
            self._reference = (now, self.steps, self.compounds, self.progress())
        if self.mode == "text":
            if now - self._last_text >= self.text_interval:
                self._write(self._step_line(now))
                self._last_text = now
        else:
            self._refresh(now)

    def epoch(
        self,
        train_loss: float | None = None,
        val_loss: float | None = None,
        *,
        epoch: int | None = None,
        seconds: float | None = None,
        **metrics: Any,
    ) -> dict[str, Any]:
        """One epoch done: its training loss (default: the mean loss of its steps), validation loss, number
        (default: the epoch of the last step, or the one after the last epoch), duration (default: the time
        since the previous epoch ended) and any further ``metrics``. Returns the row it records."""
        self._check_open()
        now = self._clock()
        done = self._epochs_done()
        if epoch is None:
            epoch = self.current_epoch if self.current_epoch is not None and self.current_epoch > done else done + 1
        if train_loss is None and self._loss_count:
            train_loss = self._loss_sum / self._loss_count
        if seconds is None:
            seconds = now - self._epoch_clock
        row = {
            "epoch": epoch,
            "train_loss": math.nan if train_loss is None else train_loss,
            "val_loss": math.nan if val_loss is None else val_loss,
            "seconds": seconds,
            **metrics,
        }
        if self.steps_per_epoch is None and self.current_epoch == epoch and self.epoch_steps:
            self.steps_per_epoch = self.epoch_steps
        self.records.append(row)
        if self.current_epoch != epoch:
            self.current_epoch = epoch
            self.epoch_steps = 0
        self._epoch_clock = now
        if self._reference is None:  # epochs without steps: time is measured from the start of this one
            self._reference = (now - _real(seconds) if math.isfinite(_real(seconds)) else now, 0, 0, epoch - 1.0)
        if self.mode == "text":
            self._write(self._epoch_line(row, now))
            self._last_text = now
        else:
            self._refresh(now)
        return row

    def request_stop(self) -> None:
        """Ask training to end after the current step (what the Stop button does)."""
        self.stop_requested = True
        if self.stop_button is not None:
            self.stop_button.disabled = True
            self.stop_button.description = "Stopping..."
            self.status.value = html.escape(self.status_text())

    def close(self, ending: str | None = None, *, kept_epoch: int | None = None) -> None:
        """End the display: in widget mode the box gives way to a static image of the final curve (the size
        of the live one). ``ending`` is a line saying how training ended (``fit`` gives it: early stopping,
        Stop, an interrupt, each with what to do next); it follows the curve or the last epoch line. Without
        it, a Stop gets a line of its own. ``kept_epoch``: the epoch early stopping kept, named in the final
        curve's title."""
        if self.closed:
            return
        self.closed = True
        self.kept_epoch = kept_epoch
        if ending is None and self.stop_requested and self.last_step is not None:
            words = self.words
            ending = f"stopped on request after {words.unit} {self.last_step} ({words.period} {self.current_epoch})"
        if self.mode == "text" and ending is not None:
            self._write(ending)
        if self.mode != "widget":
            return
        if self._handle is not None:
            from IPython.display import HTML, Image

            if self.records:
                self._handle.update(Image(data=self.loss_png(final=True), format="png"))
            else:
                self._handle.update(
                    HTML(f"<p>{self.words.run} ended before its first {self.words.period}: {self._summary()}</p>")
                )
            if ending is not None:
                self._write(ending)
        for widget in (self.progress_bar, self.stop_button, self.status, self.loss_image, self.metrics_view):
            widget.close()
        for box in self._boxes:
            box.close()

    def __enter__(self) -> TrainingMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ipython_display_(self) -> None:
        self._show()

    # ---- what it shows --------------------------------------------------------------------------------
    def progress(self) -> float | None:
        """Epochs done, with the fraction of the current epoch: 2.5 is halfway through the third."""
        done = self._epochs_done()
        if self.current_epoch is not None and self.current_epoch > done:
            fraction = min(self.epoch_steps / self.steps_per_epoch, 1.0) if self.steps_per_epoch else 0.0
            return self.current_epoch - 1 + fraction
        return float(done) if self.records or self.current_epoch is not None else None

    def rates(self, now: float | None = None) -> tuple[float | None, float | None]:
        """Steps per second and compounds per second since the first step (None until measurable)."""
        if self._reference is None:
            return None, None
        now = self._clock() if now is None else now
        since, steps, compounds, _ = self._reference
        elapsed = now - since
        if elapsed <= 0 or self.steps <= steps:
            return None, None
        compound_rate = (self.compounds - compounds) / elapsed if self.compounds > compounds else None
        return (self.steps - steps) / elapsed, compound_rate

    def time_left(self, now: float | None = None) -> float | None:
        """Seconds to ``total_epochs`` at the pace so far (validation included); None until known."""
        progress = self.progress()
        if self._reference is None or self.total_epochs is None or progress is None:
            return None
        now = self._clock() if now is None else now
        since, _, _, start = self._reference
        gained = progress - start
        if gained <= 0 or now <= since:
            return None
        return max(self.total_epochs - progress, 0.0) * (now - since) / gained

    def status_text(self, now: float | None = None) -> str:
        """One line: epoch, step, running loss, rates and time left."""
        now = self._clock() if now is None else now
        parts = []
        if self.current_epoch is not None:
            total = f"/{self.total_epochs}" if self.total_epochs else ""
            parts.append(f"{self.words.period} {self.current_epoch}{total}")
        if self.last_step is not None:
            within = f"{self.epoch_steps}/{self.steps_per_epoch}" if self.steps_per_epoch else f"{self.epoch_steps}"
            parts.append(f"{self.words.unit} {self.last_step} ({within} in this {self.words.period})")
        if self._loss_count:
            parts.append(f"{self.words.running} {_format(self._loss_sum / self._loss_count)}")
        parts.extend(self._pace(now))
        if self.stop_requested and not self.closed:
            parts.append("stopping after this step")
        return "  ·  ".join(parts) if parts else "waiting for the first step"

    def loss_figure(self, final: bool = False) -> Any:
        """The loss curve as a matplotlib Figure (not tied to pyplot): training and validation loss per epoch."""
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator

        figure = Figure(figsize=(5.6, 3.2), dpi=100, layout="constrained")
        axes = figure.add_subplot()
        epochs = [row["epoch"] for row in self.records]
        train = [_real(row["train_loss"]) for row in self.records]
        val = [_real(row["val_loss"]) for row in self.records]
        marker = "o" if len(epochs) <= 40 else None
        if epochs:
            axes.plot(epochs, train, marker=marker, markersize=3, label="training")
            if any(math.isfinite(v) for v in val):
                axes.plot(epochs, val, marker=marker, markersize=3, label="validation")
            axes.legend(frameon=False)
            axes.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # one epoch: one tick
        else:
            waiting = f"the curve starts after the first {self.words.period}"
            axes.text(0.5, 0.5, waiting, ha="center", va="center", color="0.45")
            axes.set_xticks([])
            axes.set_yticks([])
        axes.set_xlabel(self.words.period)
        axes.set_ylabel(self.words.quantity)
        axes.grid(alpha=0.3)
        if final:
            axes.set_title(self._summary(), fontsize=9)
        return figure

    def loss_png(self, final: bool = False) -> bytes:
        """:meth:`loss_figure` as PNG bytes."""
        buffer = io.BytesIO()
        figure = self.loss_figure(final)
        figure.savefig(buffer, format="png", dpi=figure.dpi)  # the live image's size, whatever the rcParams say
        return buffer.getvalue()

    # ---- internals --------------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError("this TrainingMonitor is closed; make a new one for another run")

    def _epochs_done(self) -> int:
        return int(self.records[-1]["epoch"]) if self.records else 0

    def _pace(self, now: float) -> list[str]:
        parts = []
        step_rate, compound_rate = self.rates(now)
        if step_rate is not None:
            parts.append(f"{step_rate:.1f} {self.words.unit}s/s")
        if compound_rate is not None:
            parts.append(f"{compound_rate:,.0f} compounds/s")
        left = self.time_left(now)
        if left is not None:
            parts.append(f"{_duration(left)} left")
        return parts

    def _summary(self) -> str:
        epochs = self._epochs_done()
        total = f" of {self.total_epochs}" if self.total_epochs else ""
        stopped = ", stopped on request" if self.stop_requested else ""
        if self.kept_epoch is not None:
            stopped = f", kept epoch {self.kept_epoch}"
        steps = f", {self.steps} {self.words.unit}s" if self.steps else ""
        return f"{epochs} {self.words.period}{'s' if epochs != 1 else ''}{total}{steps}{stopped}"

    def _write(self, line: str) -> None:
        print(line, file=self.stream or sys.stdout, flush=True)
        self.redraws += 1

    def _step_line(self, now: float) -> str:
        return "  " + self.status_text(now)

    def _epoch_line(self, row: dict[str, Any], now: float) -> str:
        total = f"/{self.total_epochs}" if self.total_epochs else ""
        parts = [
            f"{self.words.period} {row['epoch']}{total}",
            f"{self.words.loss} {_format(row['train_loss'])}",
        ]
        if self.words.validation is not None:
            parts.append(f"{self.words.validation} {_format(row['val_loss'])}")
        parts += [f"{key} {_format(value)}" for key, value in row.items() if key not in _ROW_KEYS]
        parts.append(f"{_real(row['seconds']):.1f} s")
        if self.last_step is not None:
            parts.append(f"{self.words.unit} {self.last_step}")
        parts += self._pace(now)
        return "  ".join(parts)

    def _build_widgets(self) -> None:
        import ipywidgets

        self.progress_bar = ipywidgets.FloatProgress(
            value=0.0,
            min=0.0,
            max=float(self.total_epochs or 1),
            description=self.words.run,
            bar_style="info",
            layout=ipywidgets.Layout(width="60%"),
        )
        self.stop_button = ipywidgets.Button(
            description="Stop",
            icon="stop",
            button_style="danger",
            tooltip=f"end {self.words.run}, keeping what is done",
        )
        self.stop_button.on_click(lambda _button: self.request_stop())
        self.status = ipywidgets.HTML(value=self.status_text(self._created))
        self.loss_image = ipywidgets.Image(value=self.loss_png(), format="png", layout=ipywidgets.Layout(width="560px"))
        self.metrics_view = ipywidgets.HTML(value=self._metrics_html())
        self._plotted = self._tabled = 0
        top = ipywidgets.HBox([self.progress_bar, self.stop_button])
        middle = ipywidgets.HBox([self.loss_image, self.metrics_view])
        self.widget = ipywidgets.VBox([top, self.status, middle])
        self.widget.add_class("delpyro-training-monitor")
        self._boxes = (top, middle, self.widget)

    def _metrics_html(self) -> str:
        if not self.records:
            return "<p>no epoch finished yet</p>"
        row = self.records[-1]
        lines = [(self.words.period, row["epoch"]), (self.words.loss, row["train_loss"])]
        if self.words.validation is not None:
            lines.append((self.words.validation, row["val_loss"]))
        lines += [(key, value) for key, value in row.items() if key not in _ROW_KEYS]
        best = [_real(r["val_loss"]) for r in self.records if math.isfinite(_real(r["val_loss"]))]
        if best:
            lines.append(("best val_loss", min(best)))
        cells = "".join(
            f"<tr><td>{html.escape(str(key))}</td><td style='text-align:right'>{html.escape(_format(value))}</td></tr>"
            for key, value in lines
        )
        return f"<table>{cells}</table>"

    def _show(self) -> None:
        if self.widget is None or self._handle is not None or self.closed or not in_jupyter():
            return
        from IPython.display import display

        self._handle = display(self.widget, display_id=True)

    def _refresh(self, now: float) -> None:
        if self.mode != "widget":
            return
        # a click on Stop is read at every step (a few microseconds), not only when the box is redrawn,
        # so the button says "Stopping..." at once
        if self._handle is not None and self._can_poll and not self.stop_requested:
            self._can_poll = _deliver_pending_clicks(self.stop_button)
        if now - self._last_draw < self.min_interval:
            return
        self._last_draw = now
        self.redraws += 1
        self._show()
        progress = self.progress()
        if self.total_epochs:
            self.progress_bar.max = float(self.total_epochs)
        if progress is not None:
            self.progress_bar.value = min(progress, self.progress_bar.max)
        self.status.value = html.escape(self.status_text(now))
        if len(self.records) != self._tabled:
            self.metrics_view.value = self._metrics_html()
            self._tabled = len(self.records)
        if len(self.records) != self._plotted and now >= self._plot_due:
            started = time.perf_counter()
            self.loss_image.value = self.loss_png()
            self._plot_due = now + 10 * (time.perf_counter() - started)
            self._plotted = len(self.records)


# ---------------------------------------------------------------------------------------------------
# the Stop button while a cell runs


def _main_shell_stream(kernel: Any) -> Any:
    """The stream on which the kernel's main thread receives the frontend's shell messages."""
    thread = getattr(kernel, "shell_channel_thread", None)
    if thread is None:  # the shell socket itself is read on the main thread
        return getattr(kernel, "shell_stream", None)
    # the shell channel thread passes the main shell's messages on through an in-process socket pair
    pair = getattr(getattr(thread, "manager", None), "_shell_channel_to_main", None)
    return getattr(pair, "to_stream", None)


def _deliver_pending_clicks(button: Any) -> bool:
    """Hand ``button`` the clicks that the frontend sent while the current cell runs.

    A kernel reads the frontend's messages between cells, so a click on Stop during a long ``fit`` would
    otherwise arrive only after training. The messages waiting for the main shell are read here: a message
    for ``button`` is handled at once, and every other one is passed to the kernel's own handler, which
    queues it exactly as it would have (in order, to run after the cell). Returns False where this kernel
    is not laid out as expected; clicks then arrive after the cell, as for any widget.
    """
    try:
        from IPython import get_ipython

        kernel = getattr(get_ipython(), "kernel", None)
        comm = getattr(button, "comm", None)
        if kernel is None or comm is None or threading.current_thread() is not threading.main_thread():
            return False
        stream = _main_shell_stream(kernel)
        handler = getattr(stream, "_recv_callback", None)
        if stream is None or handler is None or stream.closed():
            return False
        session = kernel.session
        copy = bool(getattr(stream, "_recv_copy", False))

        def receive(frames: list[Any]) -> Any:
            try:
                _, parts = session.feed_identities(frames, copy=copy)
                message = session.deserialize(parts, content=False, copy=copy)  # a peek: the signature is not kept
                mine = False
                if message["header"]["msg_type"] == "comm_msg":
                    content = message["content"]
                    content = getattr(content, "bytes", content)
                    mine = session.unpack(content).get("comm_id") == comm.comm_id
            except Exception:
                mine = False
            if not mine:
                return handler(frames)
            comm.handle_msg(session.deserialize(parts, content=True, copy=copy))
            return None

        stream._recv_callback = receive
        try:
            stream.flush(1)  # zmq.POLLIN: received messages only
        finally:
            stream._recv_callback = handler
        return True
    except Exception:
        return False

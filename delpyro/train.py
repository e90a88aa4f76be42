"""Training: :func:`fit`, a loop of SVI steps over epochs that calls its callbacks.

Per step the loop takes one :func:`~delpyro.steps.train_step`; per epoch it scores the validation screen.
Everything else is a callback, called in this order:

1. :class:`MovingAverage`: updates the moving average of the parameters after every step;
2. the progress display (:class:`~delpyro.widgets.TrainingMonitor`) and the user's callbacks;
3. :class:`EarlyStopping`: keeps the best epoch's parameters and, after ``patience`` epochs without
   improvement, restores them and ends training;
4. :class:`Checkpoint`: writes the result after every epoch, after early stopping, so the file holds
   what ``fit`` returns (the best epoch's parameters, and ``stopped_early``).

A callback whose ``stop_requested`` is true (the display's Stop button) ends training after the step under
way, or, when it asks during an epoch's end, after that epoch; ``result.stopped_by_user`` records it.

With ``distributed``, several processes run the same loop on their shards of the screen
(:mod:`delpyro.distributed`): the display and the user's callbacks run in process 0, a Stop there stops
every process after the same step, and checkpoints hold the whole screen.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyro
import torch

from delpyro import checkpoint
from delpyro.batches import Minibatches, Shard, ShardedMinibatches
from delpyro.config import ModelConfig, batch_size_for
from delpyro.data import DELData
from delpyro.distributed import (
    GradientExchange,
    Group,
    Processes,
    gather_state,
    join_group,
    new_folder,
    per_process_seed,
    shard_state,
)
from delpyro.effects import screened_positions
from delpyro.encoding import Encoding, screen_digest
from delpyro.guides import build_guide
from delpyro.keys import BATCH_TOTAL, INDEX
from delpyro.results import FitResult, from_state, load
from delpyro.steps import NonFiniteLossError, train_step
from delpyro.widgets import MODES, TrainingMonitor

__all__ = ["Callback", "CallbackError", "Checkpoint", "EarlyStopping", "MovingAverage", "fit"]


class Callback:
    """A part of the training loop: hooks called after each step, after each epoch, and at the end."""

    #: set to end training after the current step (a person's request: ``result.stopped_by_user``)
    stop_requested = False
    #: set after an epoch to end training there (the callback's own decision, as early stopping's)
    finished = False

    def on_start(self, result: FitResult) -> None:
        """Before the first step (of a fresh or a resumed run)."""

    def on_batch(self, result: FitResult, batch: dict[str, Any]) -> None:
        """Before a step is taken on ``batch``."""

    def on_step(self, result: FitResult, info: dict[str, Any]) -> None:
        """After a step; ``info``: step, epoch, loss, compounds in the batch, epochs, steps_per_epoch."""

    def on_epoch(self, result: FitResult, row: dict[str, Any]) -> None:
        """After an epoch (its history row already recorded)."""

    def on_end(self, result: FitResult) -> None:
        """When training has ended (not after an error)."""


class MovingAverage(Callback):
    """The exponential moving average of the parameters (``result.ema``), updated after every step; the
    per-compound rows of the batch only (:class:`~delpyro.optim.EMA`, named before the step)."""

    def on_batch(self, result: FitResult, batch: dict[str, Any]) -> None:
        if "compound" in result.model.encoding.terms:
            result.ema.before_step(screened_positions(batch)[0])

    def on_step(self, result: FitResult, info: dict[str, Any]) -> None:
        with result.model.param_scope():
            result.ema.update()


class EarlyStopping(Callback):
    """Ends training when the validation loss has not improved for ``patience`` epochs, and restores the
    best parameters and moving average (``result.best_epoch``, ``result.stopped_early``): the best epoch's,
    or, when a resumed run never beats the loss it resumed with, those it resumed from."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.without_improvement = 0
        self.best: dict[str, Any] = {}

    def on_start(self, result: FitResult) -> None:
        self.best = _snapshot(result)

    def on_epoch(self, result: FitResult, row: dict[str, Any]) -> None:
        if row["val_loss"] < result.best_val_loss:
            result.best_val_loss = row["val_loss"]
            result.best_epoch = row["epoch"]
            self.best = _snapshot(result)
            self.without_improvement = 0
            return
        self.without_improvement += 1
        if self.without_improvement >= self.patience:
            _restore(result, self.best)
            result.stopped_early = self.finished = True


class Checkpoint(Callback):
    """Writes ``checkpoint.pt`` in ``folder`` after every epoch. In a group of processes every process
    sends its shard's rows and process 0 writes the whole screen's checkpoint."""

    def __init__(self, folder: str | Path, group: Group | None = None) -> None:
        self.path = Path(folder) / "checkpoint.pt"
        self.group = group

    def on_epoch(self, result: FitResult, row: dict[str, Any]) -> None:
        if self.group is None:
            result.save(self.path)
            return
        state = gather_state(result.state(), result.model.shard, self.group)
        if state is not None:
            checkpoint.write(state, self.path)


class CallbackError(RuntimeError):
    """A user's callback raised an exception: training stopped there, and ``result`` keeps what it had."""

    def __init__(self, message: str, result: FitResult) -> None:
        super().__init__(message)
        self.result = result


class _UserCallback(Callback):
    """A callable ``callback(event, info)`` (events "step", "epoch" and "end"), or a progress display. An
    exception it raises ends training as a :class:`CallbackError` that keeps the result."""

    def __init__(self, function: Callable[[str, dict[str, Any]], None]) -> None:
        self.function = function

    @property
    def stop_requested(self) -> bool:  # type: ignore[override]
        return bool(getattr(self.function, "stop_requested", False))

    def _call(self, result: FitResult, event: str, info: dict[str, Any]) -> None:
        try:
            self.function(event, info)
        except Exception as err:
            name = getattr(self.function, "__qualname__", type(self.function).__name__)
            raise CallbackError(
                f"the callback {name} raised {type(err).__name__} on the {event!r} event ({err}); training "
                f"stopped after step {result.step} and this error's .result keeps the fit so far",
                result,
            ) from err

    def on_step(self, result: FitResult, info: dict[str, Any]) -> None:
        self._call(result, "step", info)

    def on_epoch(self, result: FitResult, row: dict[str, Any]) -> None:
        self._call(result, "epoch", row)

    def on_end(self, result: FitResult) -> None:
        self._call(result, "end", {"result": result})


class _Display(_UserCallback):
    """The progress display: fed like a user's callback, closed at the end (with :func:`ending`) rather
    than told of it."""

    def on_end(self, result: FitResult) -> None:
        self.function.close()

    def finish(self, result: FitResult, *, interrupted: bool, patience: int | None) -> None:
        end_display(self.function, result, interrupted=interrupted, patience=patience)


def end_display(
    monitor: TrainingMonitor, result: FitResult, *, interrupted: bool = False, patience: int | None = None
) -> None:
    """Close ``monitor`` saying how training ended (:func:`ending`), with the epoch early stopping kept."""
    monitor.close(
        ending(result, interrupted=interrupted, patience=patience),
        kept_epoch=result.best_epoch if result.stopped_early else None,
    )


def ending(result: FitResult, *, interrupted: bool = False, patience: int | None = None) -> str | None:
    """The line a display ends with when training ended before its last epoch, saying what to do next; None
    when it ran to the end."""
    resume = "fit(..., resume=result) continues from the next epoch"
    where = f"step {result.step} (epoch {result.epoch})"
    if interrupted:
        return f"interrupted after {where}: the result keeps every step taken; {resume}"
    if result.stopped_by_user:
        return f"stopped on request after {where}; {resume}"
    if result.stopped_early:
        return f"early stopping: no improvement for {patience} epochs, kept epoch {result.best_epoch}"
    return None


def _snapshot(result: FitResult) -> dict[str, Any]:
    with result.model.param_scope():
        params = {name: value.detach().clone() for name, value in pyro.get_param_store().named_parameters()}
    return {"params": params, "ema": result.ema.state_dict()}


def _restore(result: FitResult, snapshot: dict[str, Any]) -> None:
    with result.model.param_scope(), torch.no_grad():
        for name, value in pyro.get_param_store().named_parameters():
            if name in snapshot["params"]:
                value.copy_(snapshot["params"][name])
    result.ema.load_state_dict(snapshot["ema"])


def fit(
    train: DELData,
    val: DELData | None = None,
    config: ModelConfig | None = None,
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    progress: str = "auto",
    callbacks: Iterable[Callable[[str, dict[str, Any]], None]] = (),
    checkpoint_dir: str | Path | None = None,
    early_stopping_patience: int | None = None,
    resume: FitResult | str | Path | None = None,
    cache_dir: str | None = None,
    device: str | torch.device | None = None,
    distributed: bool | int | None = None,
) -> FitResult | None:
    """Fit a model to a screen by SVI and return a :class:`~delpyro.results.FitResult`.

    Args:
        train, val: the training screen and an optional validation screen (same replicates).
        config: a :class:`~delpyro.config.ModelConfig` (default ``ModelConfig()``); ``epochs`` and
            ``batch_size`` override it.
        seed: seeds the weights, the batch order and every draw; the same seed gives the same fit.
        progress: "auto" (a live widget in JupyterLab, text lines elsewhere; the environment variable
            ``DELPYRO_PROGRESS`` overrides that choice) | "text" | "widget" | "none". See
            :class:`delpyro.widgets.TrainingMonitor`.
        callbacks: callables ``callback(event, info)``: event "step" (info: step, epoch, loss, compounds in
            the batch, epochs, steps_per_epoch), "epoch" (info: the history row) and "end" (info:
            {"result": FitResult}). A callback (or the progress display) whose ``stop_requested`` attribute
            is true after a step ends training there: that epoch is closed on the steps done (its row,
            validation and checkpoint as usual), ``result.stopped_by_user`` is set, and
            ``fit(..., resume=result)`` goes on from the next epoch.
        checkpoint_dir: write ``checkpoint.pt`` there after every epoch (after early stopping, so the file
            holds the parameters ``fit`` returns).
        early_stopping_patience: stop when the validation loss has not improved for this many epochs, and
            keep the best epoch's parameters (``result.best_epoch``).
        resume: a FitResult or a checkpoint path; training goes on from its epoch up to ``epochs``, on the
            same training screen (its compound ids and SMILES are checked) with the run's own settings (a
            ``config`` that differs is refused, naming the fields).
        cache_dir: where fingerprints are cached.
        device: where to train ("cpu", "cuda", a torch.device; default the CPU). The screen's arrays are
            moved there once, and batches are sliced there; the result stays on that device, and
            ``predict`` runs there too. A checkpoint loads on the CPU.

        distributed: train in several processes, each holding a shard of the compounds (see
            :mod:`delpyro.distributed`). A number ``n`` (at least 2) starts ``n`` processes on this machine
            (gloo on the CPU; with ``device="cuda"``, NCCL and one GPU each) and returns the fit as one
            result on the CPU, with progress shown here as usual. ``True``: this process is one of a
            group started by ``torchrun`` (which sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT);
            every process calls ``fit`` with the same arguments, process 0 shows progress, runs the
            callbacks and gets the result (on the CPU), the others get None.

    The training loss is the negative ELBO per compound over each epoch's steps (as they happened); the
    validation loss is computed with the moving-average parameters. A NaN or infinite loss (or a divergence
    that breaks a covariance) stops training with :class:`~delpyro.steps.NonFiniteLossError` naming the
    step; its ``result`` keeps the last good state. An exception in a callback stops it with a
    :class:`CallbackError` whose ``result`` keeps the fit so far. An interrupt (Ctrl-C, the notebook's stop
    square) ends training like Stop: the epoch is closed on the steps taken, and the result is returned
    with a warning. Arguments are checked before anything is built: epochs, batch size and patience are
    integers of at least 1, the screens are not empty, and a CUDA device exists where one is asked for.
    """
    _check_arguments(train, val, progress, epochs, batch_size, early_stopping_patience, device)
    options = {
        "epochs": epochs,
        "batch_size": batch_size,
        "seed": seed,
        "checkpoint_dir": checkpoint_dir,
        "early_stopping_patience": early_stopping_patience,
        "cache_dir": cache_dir,
        "device": device,
    }
    if distributed is not None and not isinstance(distributed, bool):  # a number: start the processes here
        return _fit_in_processes(distributed, train, val, config, resume, options, progress, callbacks)
    group = join_group(device) if distributed else None
    shard = None if group is None else group.shard(train.n_compounds)
    if group is not None and device is not None:
        device = group.device
    if resume is not None and group is not None:
        if isinstance(resume, dict):  # a state, as fit(..., distributed=n) passes a FitResult on
            state, source = resume, "resume"
        elif isinstance(resume, FitResult):
            state, source = resume.state(), "resume"
        else:
            state, source = checkpoint.read(resume), resume
        result = from_state(shard_state(state, shard), source, shard=shard)
        if device is not None:
            result.model.to(device)
        _check_resume(result, train, config, device)
    elif resume is not None:
        result = resume if isinstance(resume, FitResult) else load(resume)
        _check_resume(result, train, config, device)
    else:
        config = config or ModelConfig()
        pyro.set_rng_seed(seed)
        encoding = Encoding.fit(train, config)
        result = FitResult.new(config, encoding, seed)
        result.model.shard = shard
        if device is not None:
            result.model.to(device)
    config, seed, model = result.config, result.seed, result.model
    epochs = config.epochs if epochs is None else epochs
    batch_size = batch_size or config.batch_size or batch_size_for(train.n_compounds)
    encoding = model.encoding
    if group is None:
        batches = Minibatches(encoding.encode(train, cache_dir=cache_dir), batch_size, seed=seed, device=model.device)
    else:
        batches = _shard_batches(train, np.arange(shard.start, shard.stop), model, group, batch_size, seed, cache_dir)
    batches.epoch = result.epoch
    val_batches = None
    if val is not None and group is None:
        encoded = encoding.encode(val, cache_dir=cache_dir)
        val_batches = Minibatches(encoded, max(batch_size, 1024), shuffle=False, device=model.device)
    elif val is not None:
        val_rows = _validation_rows(val, encoding, shard)
        val_batches = _shard_batches(val, val_rows, model, group, max(batch_size, 1024), None, cache_dir)
    build_guide(result.guide, model)
    exchange = None
    if group is not None:
        exchange = GradientExchange(model, group)
        if resume is None:
            with model.param_scope():
                exchange.broadcast()
        pyro.set_rng_seed(per_process_seed(seed + result.step, group.rank))

    leading = group is None or group.rank == 0  # the process that shows progress and runs the callbacks
    display = _Display(TrainingMonitor(epochs, mode=progress if leading else "none"))
    loop: list[Callback] = [MovingAverage(), display, *(_UserCallback(c) for c in callbacks if leading)]
    if early_stopping_patience and val_batches is not None:
        loop.append(EarlyStopping(early_stopping_patience))
    if checkpoint_dir is not None:
        loop.append(Checkpoint(checkpoint_dir, group))

    def stop_requested() -> bool:
        asked = any(callback.stop_requested for callback in loop)
        return asked if group is None else group.any(asked)

    result.stopped_by_user = False
    first_step = result.step
    for callback in loop:
        callback.on_start(result)
    interrupted = False
    try:
        for epoch in range(result.epoch, epochs):
            started = time.perf_counter()
            total = 0.0
            seen = 0
            for batch in batches:
                for callback in loop:
                    callback.on_batch(result, batch)
                try:
                    loss = train_step(result.svi, batch, validate=result.step == first_step, exchange=exchange)
                except NonFiniteLossError as err:
                    err.step = result.step + 1
                    err.result = result
                    err.args = (f"training stopped at step {err.step} (epoch {epoch + 1}): {err.args[0]}",)
                    raise
                except KeyboardInterrupt:  # the notebook's interrupt: keep what was learned, as Stop does
                    interrupted = True
                    break
                result.step += 1
                compounds = batch.get(BATCH_TOTAL, len(batch[INDEX]))
                total += loss * compounds
                seen += compounds
                info = {
                    "step": result.step,
                    "epoch": epoch + 1,
                    "loss": loss,
                    "compounds": compounds,
                    "epochs": epochs,
                    "steps_per_epoch": len(batches),
                }
                try:
                    for callback in loop:
                        callback.on_step(result, info)
                except KeyboardInterrupt:  # the step is taken; what a callback missed of it is lost
                    interrupted = True
                    break
                if stop_requested():
                    result.stopped_by_user = True
                    break
            if interrupted:
                result.stopped_by_user = True
            if seen == 0:  # interrupted before the epoch's first step: nothing to close
                break
            val_loss = math.nan
            if val_batches is not None and not interrupted:  # an interrupted run returns without waiting
                try:
                    val_loss = result.loss(val_batches)
                except KeyboardInterrupt:
                    interrupted = result.stopped_by_user = True
            row = {"epoch": epoch + 1, "train_loss": total / seen, "val_loss": val_loss}
            row["seconds"] = time.perf_counter() - started
            result.records.append(row)
            result.epoch = epoch + 1
            if val_batches is not None and not any(isinstance(c, EarlyStopping) for c in loop):
                result.best_val_loss = min(result.best_val_loss, val_loss)
            for callback in loop:
                callback.on_epoch(result, row)
            if stop_requested():  # asked while the epoch was closed
                result.stopped_by_user = True
            if interrupted or result.stopped_by_user or any(callback.finished for callback in loop):
                break
    finally:
        display.finish(result, interrupted=interrupted, patience=early_stopping_patience)
    if interrupted:
        warnings.warn(
            f"training interrupted at step {result.step} (epoch {result.epoch}): the result keeps every step "
            "taken; fit(..., resume=result) goes on from the next epoch",
            stacklevel=2,
        )
    if group is not None:  # one result of the whole screen, in process 0
        state = gather_state(result.state(), shard, group)
        result = None if state is None else from_state(state, "the processes' fit")
    if result is None:
        return None
    for callback in loop:
        if callback is not display:
            callback.on_end(result)
    return result


def _shard_batches(
    data: DELData, rows: np.ndarray, model: Any, group: Group, batch_size: int, seed: int | None, cache_dir: str | None
) -> ShardedMinibatches:
    """This process's part of the batches of ``data`` (shuffled with ``seed``; None: in order): the rows
    it holds, ``rows`` of the screen."""
    encoded = model.encoding.encode(data.subset(rows), cache_dir=cache_dir)
    return ShardedMinibatches(
        encoded,
        rows,
        data.n_compounds,
        batch_size,
        shuffle=seed is not None,
        seed=seed or 0,
        device=model.device,
        position_offset=model.shard.start,
        sum_over=group.sum,
    )


def _validation_rows(val: DELData, encoding: Encoding, shard: Shard) -> np.ndarray:
    """The validation compounds this process scores: those of the training screen in its shard (their
    effects are here), and its share of the others (every ``world``-th)."""
    positions = encoding.training_positions(val) if "compound" in encoding.terms else np.full(len(val), -1)
    starts = np.array([Shard.of(r, shard.world, shard.total).start for r in range(shard.world)])
    shares = np.arange(len(val)) % shard.world
    owner = np.where(positions >= 0, np.searchsorted(starts, positions, side="right") - 1, shares)
    return np.flatnonzero(owner == shard.rank)


class _Relay:
    """Process 0's callback in a run started by :func:`fit`: passes step and epoch events to the process
    that started it, and stops when that one asks."""

    def __init__(self, events: Any, stop: Any) -> None:
        self.events = events
        self.stop = stop

    @property
    def stop_requested(self) -> bool:
        return self.stop.is_set()

    def __call__(self, event: str, info: dict[str, Any]) -> None:
        if event in ("step", "epoch"):
            self.events.put((event, dict(info)))


def _process_main(
    rank: int,
    nproc: int,
    folder: Path,
    events: Any,
    stop: Any,
    train: DELData,
    val: DELData | None,
    config: ModelConfig | None,
    resume: Any,
    options: dict[str, Any],
) -> None:
    """One process of :func:`fit` with ``distributed=n``: fit its shard; process 0 saves the result."""
    options = dict(options)
    if options["device"] is not None and torch.device(options["device"]).type == "cuda":
        options["device"] = torch.device("cuda", rank)
    callbacks = [] if events is None else [_Relay(events, stop)]
    result = fit(train, val, config, resume=resume, progress="none", callbacks=callbacks, distributed=True, **options)
    if result is not None:
        result.save(folder / "result.pt")


def _fit_in_processes(
    nproc: Any,
    train: DELData,
    val: DELData | None,
    config: ModelConfig | None,
    resume: FitResult | str | Path | None,
    options: dict[str, Any],
    progress: str,
    callbacks: Iterable[Callable[[str, dict[str, Any]], None]],
) -> FitResult:
    """``fit(..., distributed=nproc)``: start the processes, show their progress here, return the fit."""
    device = options["device"]
    cuda = device is not None and torch.device(device).type == "cuda"
    if cuda and torch.cuda.device_count() < (nproc if isinstance(nproc, int) else 0):
        count = torch.cuda.device_count()
        raise ValueError(f"distributed={nproc} on CUDA needs a GPU per process; this machine has {count}")
    if isinstance(resume, FitResult):
        resume = resume.state()
    callbacks = list(callbacks)
    epochs = options["epochs"] or (config or ModelConfig()).epochs
    if isinstance(resume, dict):
        epochs = options["epochs"] or ModelConfig.from_dict(resume["config"]).epochs
    with new_folder() as name:
        folder = Path(name)
        processes = Processes(
            nproc, _process_main, (train, val, config, resume, options), folder, "nccl" if cuda else "gloo"
        )
        monitor = TrainingMonitor(epochs, mode=progress)
        try:
            for event, info in processes.messages():
                monitor(event, info)
                for callback in callbacks:
                    callback(event, info)
                if monitor.stop_requested or any(getattr(c, "stop_requested", False) for c in callbacks):
                    processes.stop.set()
            processes.join()
            result = load(folder / "result.pt", restore_rng=False)
        except BaseException:
            monitor.close()  # a failure: the display ends without a line
            raise
        end_display(monitor, result, patience=options["early_stopping_patience"])
    for callback in callbacks:
        callback("end", {"result": result})
    return result


def _check_arguments(
    train: DELData,
    val: DELData | None,
    progress: str,
    epochs: int | None,
    batch_size: int | None,
    patience: int | None,
    device: str | torch.device | None,
) -> None:
    """Refuse bad arguments before anything is built or trained."""
    if progress not in MODES:
        raise ValueError(f"progress must be 'auto', 'text', 'widget' or 'none', got {progress!r}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("early_stopping_patience", patience)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be an integer of at least 1 (or None), got {value!r}")
    if train.n_compounds == 0:
        raise ValueError("train: the training screen holds no compounds")
    if val is not None and val.n_compounds == 0:
        raise ValueError("val: the validation screen holds no compounds; pass val=None to train without one")
    if device is not None:
        device = torch.device(device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r}: this torch has no CUDA device; train on the CPU")


def _check_resume(result: FitResult, train: DELData, config: ModelConfig | None, device: Any) -> None:
    """A resumed fit goes on with the same settings on the same training screen, where it lives."""
    if config is not None and config != result.config:
        changed = [
            f"{name} ({getattr(result.config, name)!r} -> {getattr(config, name)!r})"
            for name in result.config.to_dict()
            if getattr(config, name) != getattr(result.config, name)
        ]
        raise ValueError(
            f"fit(resume=...): config differs from the run's in {', '.join(changed)}; leave config out to "
            "go on with the run's settings (epochs= and batch_size= may change), or fit anew"
        )
    digest = result.model.encoding.training_digest
    if digest is not None and screen_digest(train) != digest:
        raise ValueError(
            "fit(resume=...): train is not the screen this run was trained on (its compound ids or SMILES "
            "differ); resume on the same training screen, or fit anew"
        )
    if device is not None and torch.device(device) != result.model.device:
        raise ValueError(f"device: the run to resume lives on {result.model.device}; resume it there")

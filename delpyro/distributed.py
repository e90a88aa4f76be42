r"""Data-parallel SVI on ``torch.distributed``: each process holds a shard of the screen's compounds.

A run of :math:`R` processes (``fit(..., distributed=R)`` starts them on this machine; under ``torchrun``
each process calls ``fit(..., distributed=True)``) splits the training screen's :math:`N` compounds into
:math:`R` contiguous shards (:class:`~delpyro.batches.Shard`). Process :math:`r` keeps the per-compound
guide parameters of its shard only, with their Adam state and moving average; those never cross the
network. The networks' weights, the latent globals and the pairs of blocks are replicated: every process
starts from process 0's values and applies the same update.

The objective stays that of the whole screen. A step's batch :math:`B` is the one a single process would
take (:class:`~delpyro.batches.ShardedMinibatches`: the epoch's order is the same everywhere), and process
:math:`r` holds its part :math:`B_r`. Its loss :math:`L_r` is the ordinary SVI loss of :math:`B_r`: the
globals' terms once, and each compound's terms scaled by :math:`N / |B_r|` (the compound plate, and the
screened plate of a shard: :class:`~delpyro.model.WeightedPlate`). Weighted by its share of the batch,
:math:`w_r = |B_r| / |B|`,

.. math::

    \sum_r w_r L_r = \text{globals} + \frac{N}{|B|} \sum_{i \in B} \ell_i ,

the single-process loss of :math:`B`: exactly when the globals take the same value on every process (a
point estimate), in expectation when each process draws its own (then :math:`R` draws are averaged). So
:class:`GradientExchange` multiplies every gradient by :math:`w_r`, adds the replicated parameters'
gradients over the processes (one all-reduce of one flat buffer, which carries the weighted loss and a
finiteness flag too), and leaves the per-compound rows' gradients where they are. The validation loss is
added over the processes the same way.

Checkpoints hold the whole screen: :func:`gather_state` collects every shard's rows on process 0, which
writes one file, and :func:`shard_state` cuts a whole state to a shard, so a run written by :math:`R`
processes resumes in any number of them.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import tempfile
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyro
import torch
import torch.distributed as dist

from delpyro.batches import Shard
from delpyro.keys import BATCH_TOTAL, INDEX
from delpyro.model import DELModel, is_compound_row

__all__ = [
    "GradientExchange",
    "Group",
    "Processes",
    "gather_state",
    "join_group",
    "shard_state",
]


@dataclass(frozen=True)
class Group:
    """This process's place in the default process group of ``torch.distributed``."""

    rank: int
    world: int
    device: torch.device

    def sum(self, value: float) -> float:
        """``value`` added over the processes."""
        tensor = torch.tensor([value], dtype=torch.float64, device=self._wire)
        dist.all_reduce(tensor)
        return float(tensor.item())

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is true in any process (every process gets the same answer)."""
        return self.sum(1.0 if flag else 0.0) > 0

    def gather_values(self, values: np.ndarray) -> np.ndarray:
        """Every process's 1-d float array, one after another in rank order, on every process."""
        local = torch.as_tensor(np.asarray(values, dtype=np.float64), device=self._wire)
        lengths = torch.zeros(self.world, dtype=torch.float64, device=self._wire)
        lengths[self.rank] = local.numel()
        dist.all_reduce(lengths)
        sizes = [int(x) for x in lengths.tolist()]
        padded = torch.zeros(max(sizes), dtype=torch.float64, device=self._wire)
        padded[: local.numel()] = local
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded)
        return torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)]).cpu().numpy()

    def shard(self, n: int) -> Shard:
        return Shard.of(self.rank, self.world, n)

    @property
    def _wire(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")


def join_group(device: str | torch.device | None = None) -> Group:
    """Join the process group this process was started in (``torchrun``'s environment: RANK,
    WORLD_SIZE, MASTER_ADDR, MASTER_PORT), unless it is joined already: NCCL on a CUDA device, gloo on the
    CPU. With ``device="cuda"`` each process takes the GPU of its LOCAL_RANK."""
    device = torch.device(device or "cpu")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if not dist.is_initialized():
        missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
        if missing:
            raise RuntimeError(
                f"fit(..., distributed=True) runs in a process group, and this process has none (no "
                f"{', '.join(missing)} in its environment): start it with torchrun, or pass "
                "distributed=<number of processes> to start them here"
            )
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return Group(dist.get_rank(), dist.get_world_size(), device)


class GradientExchange:
    """The step's exchange between processes (called by :func:`~delpyro.steps.train_step` after the
    gradients are made): see the module docstring."""

    def __init__(self, model: DELModel, group: Group) -> None:
        self.model = model
        self.group = group

    def parameters(self) -> set[torch.Tensor]:
        """Every parameter of the model's store (call inside its param scope)."""
        return {value for _, value in pyro.get_param_store().named_parameters()}

    @torch.no_grad()
    def __call__(
        self, params: set[torch.Tensor], loss: float, finite: bool, batch: dict[str, Any]
    ) -> tuple[float, bool]:
        weight = len(batch[INDEX]) / batch[BATCH_TOTAL]
        store = dict(pyro.get_param_store().named_parameters())
        params.update(store.values())  # every process steps every parameter, so the replicas stay equal
        replicated = []
        for name in sorted(store):
            value = store[name]
            if value.grad is None:
                value.grad = torch.zeros_like(value)
            value.grad.mul_(weight)
            if not is_compound_row(name):
                replicated.append(value)
        status = torch.tensor([weight * loss, 0.0 if finite else 1.0], device=self.group.device)
        flat = torch.cat([*(p.grad.reshape(-1) for p in replicated), status.to(replicated[0].dtype)])
        dist.all_reduce(flat)
        offset = 0
        for value in replicated:
            value.grad.copy_(flat[offset : offset + value.numel()].view_as(value))
            offset += value.numel()
        return float(flat[-2]), float(flat[-1]) == 0.0

    @torch.no_grad()
    def broadcast(self) -> None:
        """Every process takes process 0's replicated parameters (call inside the model's param scope,
        after the guide is built): the replicas start equal."""
        store = dict(pyro.get_param_store().named_parameters())
        for name in sorted(store):
            if not is_compound_row(name):
                dist.broadcast(store[name].data, src=0)


# ---- states of the whole screen and of a shard -----------------------------------------------------------
def _row_tensors(state: dict[str, Any]) -> Iterator[tuple[dict[str, Any], str]]:
    """(container, key) of every tensor in a checkpoint state with a row per screened compound."""
    for name in list(state["params"]):
        if is_compound_row(name):
            yield state["params"], name
    for name, entry in state["optim_state"].items():
        if is_compound_row(name):
            held = entry["state"].get(0, {})
            for key in ("step", "exp_avg", "exp_avg_sq"):
                if torch.is_tensor(held.get(key)):
                    yield held, key
    for name in list(state["ema"]["shadow"]):
        if is_compound_row(name):
            yield state["ema"]["shadow"], name


def shard_state(state: dict[str, Any], shard: Shard) -> dict[str, Any]:
    """A checkpoint state of the whole screen cut to ``shard``'s rows (the rest shared, not copied)."""
    out = {**state, "params": dict(state["params"]), "ema": {**state["ema"], "shadow": dict(state["ema"]["shadow"])}}
    out["optim_state"] = {
        name: {**entry, "state": {k: dict(v) for k, v in entry["state"].items()}} if is_compound_row(name) else entry
        for name, entry in state["optim_state"].items()
    }
    for container, key in _row_tensors(out):
        container[key] = container[key][shard.start : shard.stop].clone()
    return out


def gather_state(state: dict[str, Any], shard: Shard, group: Group) -> dict[str, Any] | None:
    """The whole screen's checkpoint state from every process's state of its shard: on process 0 (its own
    globals, every shard's rows in order), None elsewhere. Every process must call it together.

    A row tensor missing on a process (the optimizer state of a shard that has not been stepped yet) is
    taken as zeros, which is the state a row starts from."""
    sizes = [Shard.of(rank, shard.world, shard.total).size for rank in range(shard.world)]
    out = {**state, "params": dict(state["params"]), "ema": {**state["ema"], "shadow": dict(state["ema"]["shadow"])}}
    out["optim_state"] = {
        name: {**entry, "state": {k: dict(v) for k, v in entry["state"].items()}} if is_compound_row(name) else entry
        for name, entry in state["optim_state"].items()
    }
    for name, entry in out["optim_state"].items():
        if is_compound_row(name) and 0 not in entry["state"]:
            rows = out["params"][name].reshape(shard.size, -1)
            entry["state"][0] = {
                "step": torch.zeros(shard.size, dtype=rows.dtype),
                "exp_avg": torch.zeros_like(rows),
                "exp_avg_sq": torch.zeros_like(rows),
            }
    for container, key in _row_tensors(out):
        container[key] = _gather_rows(container[key], shard, group, sizes)
    return out if group.rank == 0 else None


def _gather_rows(tensor: torch.Tensor, shard: Shard, group: Group, sizes: list[int]) -> torch.Tensor | None:
    """Every process's rows of ``tensor`` ``[shard rows, ...]`` one after another, on process 0."""
    longest = max(sizes)
    padded = torch.zeros((longest, *tensor.shape[1:]), dtype=tensor.dtype, device=group._wire)
    padded[: tensor.shape[0]] = tensor.to(group._wire)
    parts = [torch.empty_like(padded) for _ in range(group.world)] if group.rank == 0 else None
    dist.gather(padded, parts, dst=0)
    if group.rank != 0:
        return None
    return torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)]).to(tensor.device)


# ---- processes started on this machine --------------------------------------------------------------------
class Processes:
    """``nproc`` processes started here (spawned, so safe from a notebook), each calling ``worker(rank,
    nproc, folder, events, stop, *args)`` in a process group that meets in ``folder``. Process 0 sends
    progress events through ``events`` (a queue of ``(event, info)``); ``stop`` (an event) asks it to stop.
    A process that fails writes its traceback to ``folder/error_<rank>.txt``."""

    def __init__(
        self, nproc: int, worker: Callable[..., None], args: tuple, folder: Path, backend: str = "gloo"
    ) -> None:
        if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 2:
            raise ValueError(f"distributed: a number of processes of at least 2, or True under torchrun; got {nproc!r}")
        context = multiprocessing.get_context("spawn")
        self.folder = folder
        self.events = context.Queue()
        self.stop = context.Event()
        self.processes = [
            context.Process(
                target=_run, args=(worker, backend, rank, nproc, str(folder), self.events, self.stop, *args)
            )
            for rank in range(nproc)
        ]
        for process in self.processes:
            process.start()

    def messages(self, poll: float = 0.1) -> Iterator[tuple[str, dict[str, Any]]]:
        """Progress events as they come, until every process has ended. When one process fails, the
        others (which would wait for it forever in a collective) are stopped."""
        while True:
            try:
                yield self.events.get(timeout=poll)
                continue
            except queue.Empty:
                pass
            if any(process.exitcode not in (None, 0) for process in self.processes):
                for process in self.processes:
                    if process.is_alive():
                        process.terminate()
            if not any(process.is_alive() for process in self.processes):
                while True:  # what was sent before the end
                    try:
                        yield self.events.get_nowait()
                    except queue.Empty:
                        return

    def join(self) -> None:
        """Wait for every process; a failure raises a RuntimeError with the failing process's traceback."""
        failed = []
        for rank, process in enumerate(self.processes):
            process.join()
            if process.exitcode != 0 and Path(self.folder, f"error_{rank}.txt").exists():
                failed.append(rank)
        if not failed:  # stopped from here after another failed: name the ones that were stopped
            failed = [rank for rank, process in enumerate(self.processes) if process.exitcode != 0]
        if failed:
            for process in self.processes:
                if process.is_alive():
                    process.terminate()
            reports = []
            for rank in failed:
                path = self.folder / f"error_{rank}.txt"
                text = path.read_text() if path.exists() else f"exit code {self.processes[rank].exitcode}"
                reports.append(f"process {rank}:\n{text}")
            raise RuntimeError("processes failed: " + ", ".join(map(str, failed)) + "\n" + "\n".join(reports))


def _run(
    worker: Callable[..., None], backend: str, rank: int, nproc: int, folder: str, events: Any, stop: Any, *args: Any
) -> None:
    """A started process: join the group (gloo, or NCCL for training on GPUs), run the worker."""
    try:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // nproc))
        dist.init_process_group(
            backend,
            init_method=Path(folder, "rendezvous").resolve().as_uri(),
            rank=rank,
            world_size=nproc,
        )
        try:
            worker(rank, nproc, Path(folder), events if rank == 0 else None, stop, *args)
        finally:
            dist.destroy_process_group()
    except BaseException:
        Path(folder, f"error_{rank}.txt").write_text(traceback.format_exc())
        raise SystemExit(1) from None


def new_folder() -> tempfile.TemporaryDirectory:
    """A folder for one run of processes: the screens they read, where they meet, what they leave."""
    return tempfile.TemporaryDirectory(prefix="delpyro-processes-")


def per_process_seed(seed: int, rank: int) -> int:
    """The random stream of process ``rank`` after the replicas are built: process 0 keeps ``seed``'s."""
    return seed if rank == 0 else (seed * 1_000_003 + rank * 7_919) % (2**31 - 1)

"""Minibatches of tensors sliced from arrays assembled once, for training and prediction loops.

- :class:`Minibatches`: the batches of one process.
- :class:`Shard` and :class:`ShardedMinibatches`: a process's part of every batch when several processes
  train together (:mod:`delpyro.distributed`): the batches are those one process would take, and each
  process gets the members of each batch that it holds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np
import torch

from delpyro.keys import (
    BATCH_TOTAL,
    BLOCK_CODES,
    CONTROL_COUNTS,
    INDEX,
    SCREEN_SIZE,
    TARGET_COUNTS,
    TRAINING_POSITION,
)

__all__ = ["BATCH_DTYPES", "Minibatches", "Shard", "ShardedMinibatches"]

#: The dtype a batch holds each of these in (:mod:`delpyro.keys`), whatever the array it is sliced from
#: holds: a screen's counts are sliced from its own int64 array and block codes from an int32 one, each
#: batch cast on its way out, so that the screen's arrays are not copied whole to another dtype.
BATCH_DTYPES = {
    TARGET_COUNTS: torch.float32,
    CONTROL_COUNTS: torch.float32,
    BLOCK_CODES: torch.int64,
    TRAINING_POSITION: torch.int64,
    INDEX: torch.int64,
}


class Minibatches:
    """Minibatches of tensors sliced from arrays assembled once (no per-compound Python objects).

    Args:
        arrays: named arrays with the same first dimension (numpy arrays or torch tensors); each is turned
            into a tensor once (without a copy where the dtype allows) and moved to ``device``.
        batch_size: compounds per batch.
        shuffle: a new permutation every epoch, from ``seed`` and the epoch number.
        drop_last: drop the final short batch (fixed shapes, as traced models want).
        device: where batches live.

    A memory-mapped array (``np.load(path, mmap_mode="r")``, as ``read_counts`` opens a ``.npy`` of pose
    features) is not loaded: each batch reads its rows from the file, so a screen's poses need not fit
    in memory. Every other array is turned into one tensor up front. Batches hold the arrays named in
    :data:`BATCH_DTYPES` in the dtype named there (cast batch by batch; on a GPU an array is cast once,
    up front, when that makes it no larger).

    Each batch is a dict of tensors with the same keys plus ``INDEX`` (``"index"``: int64 row positions)
    and ``SCREEN_SIZE`` (``"screen_size"``: the number of rows in all, a Python int, what a subsampled
    plate scales to); see :mod:`delpyro.keys`.

    >>> import numpy as np
    >>> batches = Minibatches({"counts": np.arange(10).reshape(5, 2)}, batch_size=2, shuffle=False)
    >>> [b["index"].tolist() for b in batches]
    [[0, 1], [2, 3], [4]]
    """

    def __init__(
        self,
        arrays: Mapping[str, Any],
        batch_size: int,
        *,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
        device: str | Any = "cpu",
    ) -> None:

        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.tensors: dict[str, torch.Tensor] = {}
        self.mapped: dict[str, np.ndarray] = {}  # memory-mapped arrays stay on disk; batches are read from them
        lengths = set()
        for name, array in arrays.items():
            if array is None:
                continue
            if isinstance(array, np.memmap) or (isinstance(array, np.ndarray) and isinstance(array.base, np.memmap)):
                self.mapped[name] = array
                lengths.add(int(array.shape[0]))
                continue
            if not isinstance(array, torch.Tensor):
                array = np.asarray(array)
                if not array.flags.writeable:  # torch needs writable memory
                    array = np.array(array)
                array = np.ascontiguousarray(array)
                array = torch.from_numpy(array)
            wanted = BATCH_DTYPES.get(name, array.dtype)
            if torch.device(device).type != "cpu" and wanted.itemsize <= array.dtype.itemsize:
                array = array.to(wanted)  # cast before the copy to the device, not per batch
            self.tensors[name] = array.to(device)
            lengths.add(int(array.shape[0]))
        if len(lengths) != 1:
            raise ValueError(f"arrays must share their first dimension, got lengths {sorted(lengths)}")
        self.n = lengths.pop()
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.device = device
        self.epoch = 0

    def __len__(self) -> int:
        if self.drop_last:
            return self.n // self.batch_size
        return math.ceil(self.n / self.batch_size)

    def sum_over_shards(self, value: float) -> float:
        """A per-process sum added over the processes that share these batches (here, one: itself)."""
        return value

    def _mapped_rows(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """The memory-mapped arrays' rows ``index``, read in file order (faster) and put back in batch order."""
        if not self.mapped:
            return {}
        rows = index.cpu().numpy()
        ascending = np.argsort(rows, kind="stable")
        out = {}
        for name, array in self.mapped.items():
            block = np.empty((len(rows), *array.shape[1:]), dtype=array.dtype)
            block[ascending] = array[rows[ascending]]
            out[name] = torch.from_numpy(block).to(self.device)
        return out

    def __iter__(self) -> Iterator[dict[str, Any]]:

        order = _epoch_order(self.n, self.seed, self.epoch) if self.shuffle else None
        if order is not None:
            order = order.to(self.device)
        self.epoch += 1
        stop = (self.n // self.batch_size) * self.batch_size if self.drop_last else self.n
        for start in range(0, stop, self.batch_size):
            end = min(start + self.batch_size, stop)
            if order is None:
                batch = {name: t[start:end] for name, t in self.tensors.items()}
                batch[INDEX] = torch.arange(start, end, device=self.device)
                for name, array in self.mapped.items():
                    batch[name] = torch.from_numpy(np.array(array[start:end])).to(self.device)
            else:
                index = order[start:end]
                batch = {name: t.index_select(0, index) for name, t in self.tensors.items()}
                batch[INDEX] = index
                batch.update(self._mapped_rows(index))
            batch[SCREEN_SIZE] = self.n
            yield _in_batch_dtypes(batch)


def _in_batch_dtypes(batch: dict[str, Any]) -> dict[str, Any]:
    """``batch`` with every key of :data:`BATCH_DTYPES` in its dtype."""
    for name, dtype in BATCH_DTYPES.items():
        value = batch.get(name)
        if value is not None and value.dtype != dtype:
            batch[name] = value.to(dtype)
    return batch


def _epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of a shuffled epoch's rows: the same on every process, from the seed and the epoch (int32
    below 2^31 rows: the same permutation as int64, in half the memory)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator, dtype=torch.int32 if n < 2**31 else torch.int64)


class Shard(NamedTuple):
    """The rows ``[start, stop)`` of a training screen of ``total`` rows that process ``rank`` of ``world``
    holds: its compounds, their per-compound parameters and their optimizer state."""

    rank: int
    world: int
    start: int
    stop: int
    total: int

    @classmethod
    def of(cls, rank: int, world: int, n: int) -> Shard:
        """Process ``rank``'s contiguous share of ``n`` rows (shares differ by at most one row)."""
        if not 0 <= rank < world:
            raise ValueError(f"rank must be in [0, {world}), got {rank}")
        return cls(rank, world, rank * n // world, (rank + 1) * n // world, n)

    @property
    def size(self) -> int:
        return self.stop - self.start


class ShardedMinibatches(Minibatches):
    """One process's part of every batch that :class:`Minibatches` would make of a whole screen.

    Args:
        arrays: the arrays of the rows this process holds (``rows``), as :class:`Minibatches` takes them.
        rows: int64 ``[n held]``, sorted: those rows' positions in the whole screen.
        n: rows in the whole screen (every process's together).
        batch_size, shuffle, seed, device: as :class:`Minibatches`; the epoch's order is the same on
            every process, so the parts of a step's batch make up the batch one process would take.
        position_offset: subtracted from ``TRAINING_POSITION`` (screened compounds' rows in the training
            screen become rows of this process's shard of it; compounds never screened stay -1).
        sum_over: adds a per-process number over the processes (an all-reduce); None: one process.

    A batch holds this process's members of the step's batch (possibly none) in the step's order:
    ``INDEX`` are their rows in the whole screen, ``SCREEN_SIZE`` is ``n`` and ``BATCH_TOTAL`` is the
    size of the step's whole batch, so a process's loss weighted by its share of the batch adds up, over
    the processes, to the loss of the whole batch (see :mod:`delpyro.distributed`).
    """

    def __init__(
        self,
        arrays: Mapping[str, Any],
        rows: np.ndarray,
        n: int,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        device: str | Any = "cpu",
        position_offset: int = 0,
        sum_over: Callable[[float], float] | None = None,
    ) -> None:
        super().__init__(arrays, batch_size, shuffle=shuffle, seed=seed, device=device)
        rows = np.asarray(rows, dtype=np.int64)
        if rows.shape != (self.n,) or (rows.size and (np.any(np.diff(rows) <= 0) or rows[0] < 0 or rows[-1] >= n)):
            raise ValueError(f"rows must be {self.n} sorted distinct positions in [0, {n})")
        self.rows = torch.from_numpy(rows)
        self.n_held = self.n
        self.n = int(n)
        self.position_offset = int(position_offset)
        self.sum_over = sum_over

    def sum_over_shards(self, value: float) -> float:
        return value if self.sum_over is None else self.sum_over(value)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        order = _epoch_order(self.n, self.seed, self.epoch) if self.shuffle else torch.arange(self.n)
        self.epoch += 1
        for start in range(0, self.n, self.batch_size):
            members = order[start : start + self.batch_size].long()
            found = torch.searchsorted(self.rows, members).clamp(max=max(self.n_held - 1, 0))
            mine = self.rows[found] == members if self.n_held else torch.zeros_like(members, dtype=torch.bool)
            local = found[mine].to(self.device)
            batch = {name: t.index_select(0, local) for name, t in self.tensors.items()}
            batch.update(self._mapped_rows(local))
            if TRAINING_POSITION in batch and self.position_offset:
                position = batch[TRAINING_POSITION]
                batch[TRAINING_POSITION] = torch.where(position >= 0, position - self.position_offset, position)
            batch[INDEX] = members[mine].to(self.device)
            batch[SCREEN_SIZE] = self.n
            batch[BATCH_TOTAL] = len(members)
            yield _in_batch_dtypes(batch)

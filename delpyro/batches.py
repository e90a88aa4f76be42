"""Minibatches of tensors sliced from arrays assembled once, for training and prediction loops."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

from delpyro.keys import INDEX, SCREEN_SIZE

__all__ = ["Minibatches"]


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
    in memory. Every other array is turned into one tensor up front.

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

    def __iter__(self) -> Iterator[dict[str, Any]]:

        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.n, generator=generator).to(self.device)
        else:
            order = None
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
                if self.mapped:  # rows in file order read faster; put them back in batch order after
                    rows = index.cpu().numpy()
                    ascending = np.argsort(rows, kind="stable")
                    for name, array in self.mapped.items():
                        block = np.empty((len(rows), *array.shape[1:]), dtype=array.dtype)
                        block[ascending] = array[rows[ascending]]
                        batch[name] = torch.from_numpy(block).to(self.device)
            batch[SCREEN_SIZE] = self.n
            yield batch

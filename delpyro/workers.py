"""The CPU's workers: processes for the work done once per SMILES, and how torch's threads treat
subnormal floats.

Processes (checking that RDKit parses a SMILES, fingerprints): inputs above :data:`PARALLEL_THRESHOLD`
rows are cut into chunks of :func:`chunk_size` rows, about four per worker so that a slow chunk does not
hold the others up, and handed to a pool of processes started by ``fork`` where the system has it
(``spawn`` elsewhere). ``n_jobs=None`` means every CPU this process may run on.

Subnormal floats (below 1.2e-38 in float32) cost a CPU up to a hundred times a normal number's time, and
a network's weights and activations drift into them as training goes on: after about 1,500 steps the
default model's step took three to four times as long (``bench/subnormals.py``). :func:`flushing_subnormals`
makes them zero (the x86 flags flush-to-zero and denormals-are-zero, ``torch.set_flush_denormal``) while
delpyro trains and predicts. The flags belong to each thread, and a thread starts with its creator's: so
:func:`start_threads_flushing`, run once when delpyro is imported, starts torch's pool of CPU threads with
the flags set, and then clears them again in the importing thread, whose other work is left as it was.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

__all__ = [
    "MAX_CHUNK_SIZE",
    "MIN_CHUNK_SIZE",
    "PARALLEL_THRESHOLD",
    "chunk_size",
    "flushes_subnormals",
    "flushing_subnormals",
    "n_workers",
    "pool_context",
    "start_threads_flushing",
]

#: Inputs with more rows than this are split across worker processes (unless ``n_jobs == 1``).
PARALLEL_THRESHOLD = 20_000
#: The smallest and the largest number of rows handed to one worker at a time (the largest bounds what a
#: chunk holds in memory on its way back).
MIN_CHUNK_SIZE = 2_000
MAX_CHUNK_SIZE = 100_000


def n_workers(n_jobs: Any = None) -> int:
    """How many processes ``n_jobs`` asks for: None, every CPU this process may use; else a positive int."""
    if n_jobs is None:
        if hasattr(os, "sched_getaffinity"):
            return max(1, len(os.sched_getaffinity(0)))
        return max(1, os.cpu_count() or 1)
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, (int, np.integer)) or n_jobs < 1:
        raise ValueError(f"n_jobs must be None (all CPUs) or a positive integer, got {n_jobs!r}")
    return int(n_jobs)


def chunk_size(n: int, workers: int) -> int:
    """Rows a worker takes at a time for an input of ``n`` rows: about four chunks per worker, within
    [MIN_CHUNK_SIZE, MAX_CHUNK_SIZE]."""
    return min(MAX_CHUNK_SIZE, max(MIN_CHUNK_SIZE, math.ceil(n / (4 * workers))))


def pool_context() -> Any:
    """The multiprocessing context pools start from: ``fork`` where available (no re-import), else ``spawn``."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


#: Elements of the tensor that probes torch's threads: enough for every thread of a large machine to take
#: a part of one elementwise operation (torch hands a thread 32,768 elements at least).
_PROBE_SIZE = 1 << 21


def _subnormals(n: int) -> torch.Tensor:
    """``n`` float32 subnormals (the smallest one, 1.4e-45), made from their bits: no arithmetic, so no
    thread's flags can turn them to zero on the way."""
    return torch.ones(n, dtype=torch.int32).view(torch.float32)


def flushes_subnormals(every_thread: bool = False) -> bool:
    """Whether arithmetic on this thread turns subnormal floats to zero; with ``every_thread``, whether
    every thread of torch's CPU pool that takes a part of a large elementwise operation does too."""
    if every_thread:
        return bool((_subnormals(_PROBE_SIZE) * 1.0).eq(0).all())
    return bool((_subnormals(1) * 1.0).item() == 0.0)


@contextmanager
def flushing_subnormals() -> Iterator[None]:
    """Subnormal floats are zero in this thread inside the block (and in torch's pool threads once
    :func:`start_threads_flushing` has run); the thread's flags are restored after it."""
    before = flushes_subnormals()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if not before:
            torch.set_flush_denormal(False)


def start_threads_flushing() -> bool:
    """Start torch's CPU thread pool with flush-to-zero set, so that its threads keep the flags; this
    thread's flags are restored after. Returns whether every pool thread now flushes. When the pool was
    started before (torch did parallel work before delpyro was imported), its threads keep subnormals and
    a warning says so: a long fit on the CPU can then slow down several times."""
    before = flushes_subnormals()
    if not torch.set_flush_denormal(True):
        return False  # a CPU without the flags: nothing to do
    try:
        every = flushes_subnormals(every_thread=True)  # the pool's threads start here, with the flags
    finally:
        if not before:
            torch.set_flush_denormal(False)
    if not every:
        warnings.warn(
            "torch's CPU threads were started before delpyro was imported and keep subnormal floats, "
            "which can slow a long fit on the CPU several times; import delpyro before running torch code",
            RuntimeWarning,
            stacklevel=2,
        )
    return every

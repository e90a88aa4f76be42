"""Worker processes for the work done once per SMILES (checking that RDKit parses it, fingerprints): how
many, how they start, and how the rows are cut into the chunks each takes.

Inputs above :data:`PARALLEL_THRESHOLD` rows are cut into chunks of :func:`chunk_size` rows, about four
per worker so that a slow chunk does not hold the others up, and handed to a pool of processes started by
``fork`` where the system has it (``spawn`` elsewhere). ``n_jobs=None`` means every CPU this process may
run on.
"""

from __future__ import annotations

import math
import multiprocessing
import os
from typing import Any

import numpy as np

__all__ = ["MAX_CHUNK_SIZE", "MIN_CHUNK_SIZE", "PARALLEL_THRESHOLD", "chunk_size", "n_workers", "pool_context"]

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

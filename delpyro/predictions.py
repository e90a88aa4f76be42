"""Predictions of a whole screen written to parquet a chunk of compounds at a time, by one process or
shared among several.

:func:`write_predictions` writes the table :func:`~delpyro.posterior.predict` returns, without holding it:
the screen is cut into chunks of ``chunk_size`` compounds, each chunk is predicted and appended to the file
as a row group, so memory grows with the chunk, not the screen. Each chunk's draws are seeded by its
number, so the rows are the same whether one process writes them all or several write their parts.

With ``distributed`` the chunks are shared among processes, each writing its own file
``part-<rank>.parquet`` in the folder ``path``: process ``r`` of ``R`` takes a contiguous run of chunks (and
writes no file when there are more processes than chunks), so ``pandas.read_parquet(path)`` gives the
screen in order. ``True``: this process is one of a group started by ``torchrun`` (every process calls it
with the same arguments); a number ``n``: start ``n`` processes here.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from delpyro import files
from delpyro.data import DELData
from delpyro.distributed import Group, Processes, join_group, new_folder
from delpyro.posterior import predict
from delpyro.results import FitResult, from_state

__all__ = ["write_predictions"]

#: chunk seeds: chunk k's draws are seeded by seed * CHUNK_SEED_STRIDE + k
CHUNK_SEED_STRIDE = 1_000_003


def write_predictions(
    result: FitResult,
    data: DELData,
    path: str | Path,
    num_samples: int = 200,
    batch_size: int = 4096,
    *,
    chunk_size: int = 65_536,
    threshold: float | None = None,
    seed: int = 0,
    target: str | None = None,
    cache_dir: str | None = None,
    distributed: bool | int | None = None,
) -> Path:
    """Write ``predict``'s columns for every compound of ``data`` to ``path`` (a parquet file; with
    ``distributed``, a folder of part files), a chunk at a time, and return ``path``.

    ``threshold`` of ``p_enriched``: None takes ``predict``'s default over the whole screen (the median of
    the posterior means plus log 2), which costs a first pass that computes the means; give it to save
    that pass. The file is written whole or not at all (a temporary file, then a rename)."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    path = Path(path)
    options = {
        "num_samples": num_samples,
        "batch_size": batch_size,
        "chunk_size": chunk_size,
        "threshold": threshold,
        "seed": seed,
        "target": target,
        "cache_dir": cache_dir,
    }
    if distributed is None or distributed is False:
        return _write_part(result, data, path, None, **options)
    if distributed is True:
        group = join_group(result.model.device)
        path.mkdir(parents=True, exist_ok=True)
        _write_part(result, data, path / f"part-{group.rank:05d}.parquet", group, **options)
        return path
    path.mkdir(parents=True, exist_ok=True)
    with new_folder() as name:
        processes = Processes(distributed, _process_main, (result.state(), data, str(path), options), Path(name))
        for _ in processes.messages():
            pass
        processes.join()
    return path


def _process_main(
    rank: int, nproc: int, folder: Path, events: Any, stop: Any, state: dict, data: DELData, path: str, options: dict
) -> None:
    """One process of ``write_predictions(..., distributed=n)``."""
    result = from_state(state, "the fit to predict with")
    write_predictions(result, data, path, distributed=True, **options)


def _write_part(
    result: FitResult,
    data: DELData,
    path: Path,
    group: Group | None,
    *,
    num_samples: int,
    batch_size: int,
    chunk_size: int,
    threshold: float | None,
    seed: int,
    target: str | None,
    cache_dir: str | None,
) -> Path:
    """Write the chunks of ``data`` that this process takes (all of them without a group) to ``path``."""
    n_chunks = max(1, math.ceil(data.n_compounds / chunk_size))
    rank, world = (0, 1) if group is None else (group.rank, group.world)
    mine = range(rank * n_chunks // world, (rank + 1) * n_chunks // world)

    def chunk(k: int) -> DELData:
        return data.subset(np.arange(k * chunk_size, min((k + 1) * chunk_size, data.n_compounds)))

    def predicted(k: int, level: float) -> Any:
        return predict(
            result,
            chunk(k),
            num_samples,
            batch_size,
            threshold=level,
            seed=seed * CHUNK_SEED_STRIDE + k,
            cache_dir=cache_dir,
            target=target,
        )

    if threshold is None:  # the first pass: every chunk's posterior means, for the screen's median
        means = [predicted(k, math.inf)["log_enrichment_mean"].to_numpy() for k in mine]
        values = np.concatenate(means) if means else np.empty(0)
        values = values if group is None else group.gather_values(values)
        threshold = float(np.median(values) + math.log(2.0))
    if not mine:  # more processes than chunks: this one has nothing to write
        return path
    with files.replacing(path) as temporary:
        writer = None
        try:
            for k in mine:
                table = pa.Table.from_pandas(predicted(k, threshold), preserve_index=False)
                metadata = {**(table.schema.metadata or {}), b"delpyro_threshold": repr(threshold).encode()}
                table = table.replace_schema_metadata(metadata)
                if writer is None:
                    writer = pq.ParquetWriter(temporary, table.schema)
                writer.write_table(table)
        finally:
            if writer is not None:
                writer.close()
    return path

"""Baselines a model must beat, from counts alone: a naive enrichment and a building-block average."""

from __future__ import annotations

import numpy as np
import pandas as pd

from delpyro.data import DELData

__all__ = ["building_block_baseline", "naive_enrichment"]


def naive_enrichment(data: DELData) -> np.ndarray:
    """The baseline a model must beat ``[n]``: log((mean target + 1) / (mean control + 1)) over the
    replicates, each count divided by its replicate's reads per compound (log(mean target + 1) without
    controls)."""
    target = data.target_counts / np.maximum(data.target_counts.sum(0), 1) * data.n_compounds
    if data.n_control_replicates == 0:
        return np.log(target.mean(1) + 1)
    control = data.control_counts / np.maximum(data.control_counts.sum(0), 1) * data.n_compounds
    return np.log((target.mean(1) + 1) / (control.mean(1) + 1))


def building_block_baseline(train: DELData, test: DELData) -> np.ndarray:
    """A building-block-mean baseline for ``test`` ``[n_test]``: each building block scores the mean
    naive enrichment (:func:`naive_enrichment`) of the training compounds that carry it, and a compound
    scores the mean over its cycles of its blocks' scores; a block absent from training scores the
    overall training mean."""
    if train.building_blocks is None or test.building_blocks is None:
        raise ValueError("building_blocks: the baseline needs building-block id columns in both screens")
    naive = naive_enrichment(train)
    overall = float(naive.mean())
    score = np.zeros(test.n_compounds)
    for cycle in train.building_blocks.columns:
        means = pd.Series(naive).groupby(train.building_blocks[cycle].to_numpy()).mean()
        score += test.building_blocks[cycle].map(means).fillna(overall).to_numpy(np.float64)
    return score / len(train.building_blocks.columns)

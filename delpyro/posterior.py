"""Posterior summaries per compound, batched so that a million compounds fit in memory.

:func:`predict` turns a fitted model into one row per compound: the posterior mean, sd and quantiles of
the log target enrichment, the log matrix enrichment, the probability of being enriched, and the pose
attention weights when the model has poses.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from delpyro.data import DELData, Minibatches

if TYPE_CHECKING:
    from delpyro.infer import FitResult

__all__ = ["predict"]


def predict(
    result: FitResult,
    data: DELData,
    num_samples: int = 200,
    batch_size: int = 4096,
    *,
    threshold: float | None = None,
    cache_dir: str | None = None,
) -> pd.DataFrame:
    """Posterior summaries of every compound of ``data``, one row each, in the screen's order.

    Columns: ``compound_id``; ``log_enrichment_mean``, ``log_enrichment_sd``, ``log_enrichment_q05``,
    ``log_enrichment_q50``, ``log_enrichment_q95`` (the log target enrichment, natural log); ``log_matrix_mean``
    (NaN without a matrix arm); ``p_enriched``, the posterior probability that the log target enrichment
    exceeds ``threshold`` (default: the median of the predicted means over ``data`` plus log 2); and, for a
    model with poses, ``attention_pose_0`` ... ``attention_pose_{k-1}``.

    The moving-average parameters are used, with dropout off. In a model without latent variables, such
    as the ``del-dock`` preset and the network-only models, the fit is a point estimate: the sd is 0, every
    quantile equals the mean, ``p_enriched`` is 0 or 1, and ``num_samples`` draws would all be the same, so
    one pass is made.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    model = result.model
    arrays = model.arrays(data, cache_dir=cache_dir)
    arrays = {k: v for k, v in arrays.items() if k not in ("target_counts", "control_counts")}
    batches = Minibatches(arrays, batch_size, shuffle=False)
    n = data.n_compounds
    log_target = np.empty(n, dtype=np.float64)
    log_matrix = np.full(n, math.nan)
    attention = np.empty((n, model.spec.n_poses), dtype=np.float32) if "poses" in model.term_names else None
    was_training = model.training
    model.eval()
    try:
        with result.averaged(), torch.no_grad():
            for batch in batches:
                index = batch["index"].numpy()
                target, matrix, extras = model.enrichments(batch)
                log_target[index] = target.double().numpy()
                if matrix is not None:
                    log_matrix[index] = matrix.double().numpy()
                if attention is not None:
                    attention[index] = extras["attention"].numpy()
    finally:
        model.train(was_training)
    if threshold is None:
        threshold = float(np.median(log_target) + math.log(2.0))
    columns: dict[str, Any] = {
        "compound_id": data.compound_id,
        "log_enrichment_mean": log_target,
        "log_enrichment_sd": np.zeros(n),
        "log_enrichment_q05": log_target.copy(),
        "log_enrichment_q50": log_target.copy(),
        "log_enrichment_q95": log_target.copy(),
        "log_matrix_mean": log_matrix,
        "p_enriched": (log_target > threshold).astype(np.float64),
    }
    if attention is not None:
        for k in range(attention.shape[1]):
            columns[f"attention_pose_{k}"] = attention[:, k]
    frame = pd.DataFrame(columns)
    frame.attrs["threshold"] = threshold
    return frame

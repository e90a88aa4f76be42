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
import pyro
import torch
from pyro import poutine

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
    seed: int = 0,
    cache_dir: str | None = None,
) -> pd.DataFrame:
    """Posterior summaries of every compound of ``data``, one row each, in the screen's order.

    Columns: ``compound_id``; ``log_enrichment_mean``, ``log_enrichment_sd``, ``log_enrichment_q05``,
    ``log_enrichment_q50``, ``log_enrichment_q95`` (the log target enrichment, natural log: networks +
    building-block effects + the compound's own effect); ``log_matrix_mean`` (NaN without a matrix arm);
    ``p_enriched``, the posterior probability that the log target enrichment exceeds ``threshold``
    (default: the median of the posterior means over ``data`` plus log 2); and, for a model with poses,
    ``attention_pose_0`` ... ``attention_pose_{k-1}``.

    The moving-average parameters are used, with dropout off. Latent terms are summarized from
    ``num_samples`` draws of the guide: a compound of the training screen gets its own posterior
    effect, a compound never screened (or a building block never seen) the prior. In a model without
    latent terms, such as the ``del-dock`` preset and the network-only models, the fit is a point
    estimate: the sd is 0, every quantile equals the mean and ``p_enriched`` is 0 or 1 (one pass is made).
    Draws are seeded by ``seed``; memory grows with ``batch_size * num_samples``, not with the screen.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    model = result.model
    arrays = model.arrays(data, cache_dir=cache_dir)
    arrays = {k: v for k, v in arrays.items() if k not in ("target_counts", "control_counts")}
    batches = Minibatches(arrays, batch_size, shuffle=False)
    n = data.n_compounds
    samples = num_samples if model.latent_terms else 1
    summaries = {name: np.empty(n) for name in ("mean", "sd", "q05", "q50", "q95")}
    log_matrix = np.full(n, math.nan)
    attention = np.empty((n, model.spec.n_poses), dtype=np.float32) if "poses" in model.term_names else None
    p_enriched = np.empty(n)
    threshold_known = threshold is not None
    was_training = model.training
    model.eval()
    try:
        with result.averaged(), torch.no_grad():
            for number, batch in enumerate(batches):
                index = batch["index"].numpy()
                target, matrix, extras = _draws(result, batch, samples, seed * 7919 + number)
                if threshold_known:
                    p_enriched[index] = (target > threshold).mean(0)
                summaries["mean"][index] = target.mean(0)
                summaries["sd"][index] = target.std(0, ddof=1) if samples > 1 else 0.0
                for name, q in (("q05", 0.05), ("q50", 0.5), ("q95", 0.95)):
                    summaries[name][index] = np.quantile(target, q, axis=0) if samples > 1 else target[0]
                if matrix is not None:
                    log_matrix[index] = matrix.mean(0)
                if attention is not None:
                    attention[index] = extras["attention"].numpy()
            if not threshold_known:  # a second pass over the same (seeded) draws, now that it is known
                threshold = float(np.median(summaries["mean"]) + math.log(2.0))
                for number, batch in enumerate(batches):
                    target = _draws(result, batch, samples, seed * 7919 + number)[0]
                    p_enriched[batch["index"].numpy()] = (target > threshold).mean(0)
    finally:
        model.train(was_training)
    columns: dict[str, Any] = {"compound_id": data.compound_id}
    for name in ("mean", "sd", "q05", "q50", "q95"):
        columns[f"log_enrichment_{name}"] = summaries[name]
    columns["log_matrix_mean"] = log_matrix
    columns["p_enriched"] = p_enriched
    if attention is not None:
        for k in range(attention.shape[1]):
            columns[f"attention_pose_{k}"] = attention[:, k]
    frame = pd.DataFrame(columns)
    frame.attrs["threshold"] = threshold
    return frame


def _draws(
    result: FitResult, batch: dict[str, Any], samples: int, seed: int
) -> tuple[np.ndarray, np.ndarray | None, dict[str, torch.Tensor]]:
    """``(log target [samples, batch], log matrix [samples, batch] or None, extras)`` for one batch:
    the networks once, the latent terms once per draw of the guide (seeded, so a second pass repeats)."""
    model = result.model
    size = batch["index"].shape[0]
    target, matrix, extras = model.enrichments(batch, latent=False) if _has_networks(model) else (None, None, {})
    base_target = torch.zeros(size) if target is None else target
    base_matrix = matrix
    if not model.latent_terms:
        return base_target.double().numpy()[None], None if matrix is None else matrix.double().numpy()[None], extras
    has_compound = "compound" in model.term_names
    if has_compound:
        position = batch["training_position"]
        screened = position >= 0
        guide_batch = {
            "index": position[screened] if bool(screened.any()) else torch.zeros(1, dtype=torch.long),
            "size": len(model.spec.training_ids),
        }
    else:
        guide_batch = {"index": torch.zeros(1, dtype=torch.long), "size": 1}
    targets = np.empty((samples, size))
    matrices = None if not model.observation.has_control else np.empty((samples, size))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for s in range(samples):
            trace = poutine.trace(result.guide).get_trace(guide_batch)
            values = {
                name: site["value"]
                for name, site in trace.nodes.items()
                if site["type"] == "sample" and not site["is_observed"]
            }
            if has_compound:
                z = torch.randn(size, 1)  # a compound never screened: its effect from the prior
                if bool(screened.any()):
                    z[screened] = values["compound_effect"].reshape(-1, 1)
                values["compound_effect"] = z
            context: dict[str, torch.Tensor] = {}
            with poutine.condition(data=values):
                for name in model.latent_terms:
                    model.terms[name].sample_globals(context)
                with pyro.plate("compounds", size, dim=-2):
                    latent_target, latent_matrix, _ = model.enrichments(batch, context, networks=False)
            targets[s] = (base_target + (0.0 if latent_target is None else latent_target)).double().numpy()
            if matrices is not None:
                total = (
                    latent_matrix
                    if base_matrix is None
                    else (base_matrix if latent_matrix is None else base_matrix + latent_matrix)
                )
                matrices[s] = total.double().numpy()
    return targets, matrices, extras


def _has_networks(model: Any) -> bool:
    return any(not getattr(term, "is_latent", False) for term in model.terms.values())

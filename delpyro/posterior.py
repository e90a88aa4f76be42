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

__all__ = ["building_block_baseline", "naive_enrichment", "predict", "truth_on_model_scale"]


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

    Columns: ``compound_id``; ``log_enrichment_mean``, ``log_enrichment_sd`` and the quantiles
    ``log_enrichment_q05``, ``_q25``, ``_q50``, ``_q75``, ``_q95`` (so the 90% and 50% central intervals)
    of the log target enrichment (natural log: networks +
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
    quantiles = {"q05": 0.05, "q25": 0.25, "q50": 0.5, "q75": 0.75, "q95": 0.95}
    summaries = {name: np.empty(n) for name in ("mean", "sd", *quantiles)}
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
                if samples > 1:
                    values = np.quantile(target, list(quantiles.values()), axis=0)
                    for name, row in zip(quantiles, values, strict=True):
                        summaries[name][index] = row
                else:
                    for name in quantiles:
                        summaries[name][index] = target[0]
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
    for name in summaries:
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
        screened = batch["training_position"] >= 0
        guide_batch = batch  # the guide's plate reads the batch's training positions
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
            context: dict[str, torch.Tensor] = {}
            with poutine.condition(data=values):
                for name in model.latent_terms:
                    model.terms[name].sample_globals(context)
                if has_compound:
                    term = model.terms["compound"]
                    z = term.prior(context).sample((size,))  # a compound never screened: the prior
                    if bool(screened.any()):
                        z[screened] = term.in_batch_order(values["compound_effect"], guide_batch)
                    context["compound_z"] = z
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


def truth_on_model_scale(result: FitResult, data: DELData) -> np.ndarray:
    """A simulated screen's true log target enrichment converted to the model's convention ``[n]``.

    A model knows enrichment only relative to its normalization: counts are divided by each replicate's
    library size (reads per compound), by the load relative to its mean, and the zero-inflation gate
    takes its share. The simulator's enrichment is relative to its own per-replicate depths
    (``attrs["target_scale"]``, ``attrs["control_scale"]``) and the compounds' true relative load. Per
    arm, with the model's library-size depths, its load offset (0 without one: the load stays in the
    enrichment) and its gate (posterior mean, learned or fixed)::

        s_arm = mean_r log(scale_r / depth_r) + log(1 - gate_true) - log(1 - gate_model)
        additive combine:        log t_i + s_target + log load_i - load_offset_i
        multiplicative combine:  log t_i + s_target - s_control   (the target arm's rate is m * t)

    is what a perfectly fitted model would report. Only the screen's known simulation constants and the
    model's own settings enter; nothing is fitted to the truth.
    """
    if data.truth is None or "target_scale" not in data.attrs:
        raise ValueError("truth_on_model_scale needs a screen from simulate_del (truth and attrs)")
    spec = result.model.spec
    if list(data.target_names) != list(spec.target_names) or list(data.control_names) != list(spec.control_names):
        raise ValueError("the screen's replicates differ from the model's")
    observation = result.model.observation

    def arm_shift(arm: str) -> float:
        scale = np.asarray(data.attrs[f"{arm}_scale"], dtype=np.float64)
        depth = np.asarray(getattr(spec, f"log_depth_{arm}"), dtype=np.float64)
        gate_true = float(data.attrs.get(f"{arm}_gate", 0.0))
        return float(np.mean(np.log(scale) - depth)) + math.log1p(-gate_true) - math.log1p(-_gate(result, arm))

    truth = data.truth["log_target_enrichment"].to_numpy(np.float64) + arm_shift("target")
    if observation.has_control and observation.combine == "multiplicative":
        return truth - arm_shift("control")
    offset = spec.log_load_offset(data.load) if spec.uses_load else 0.0
    return truth + np.log(data.truth["load"].to_numpy(np.float64)) - offset


def _gate(result: FitResult, arm: str) -> float:
    """The fitted probability of a structural zero in an arm (0 for Poisson and NB)."""
    observation = result.model.observation
    if not observation.zero_inflated:
        return 0.0
    if observation.gates == "global":
        return float(result.sample_globals(500)[f"{arm}_gate"].mean())
    if observation.gates == "per_compound":
        raise ValueError("per-compound gates have no single gate per arm")
    with result.averaged():
        logits = observation.gate_logits(arm)
    return float(torch.sigmoid(logits.detach()))


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

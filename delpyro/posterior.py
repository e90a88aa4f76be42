"""Posterior summaries of a fitted model: per compound, per latent global, per building block.

Every function takes a fitted result (:class:`~delpyro.results.FitResult` or
:class:`~delpyro.results.MCMCResult`) and reads its posterior through their shared interface:
``averaged()`` (the parameters to use), ``draw_sites(batch, count)`` (many posterior draws of the latent
sites at once) and ``sample_globals(num_samples, seed)``.

- :func:`predict`: one row per compound: posterior mean, sd and quantiles of the log target enrichment,
  the log matrix enrichment, the probability of being enriched, pose attention; batched, so that a
  million compounds fit in memory.
- :func:`globals_summary`, :func:`building_block_effects`, :func:`disynthon_effects`: tables of the
  latent globals and of the building-block and disynthon effects.
- :func:`truth_on_model_scale`: a simulated screen's true enrichment in the model's convention.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pyro
import torch

from delpyro.batches import Minibatches
from delpyro.data import DELData
from delpyro.effects import family_effects
from delpyro.keys import INDEX, SCREEN_SIZE
from delpyro.model import GATE, GATE_LOGITS
from delpyro.workers import flushing_subnormals

__all__ = [
    "DRAW_CHUNK_ELEMENTS",
    "building_block_draws",
    "building_block_effects",
    "disynthon_effects",
    "enrichment_draws",
    "globals_summary",
    "predict",
    "summarize_draws",
    "target_position",
    "truth_on_model_scale",
]

#: Draws of one batch computed together are capped so that draws x compounds stays near this (memory).
DRAW_CHUNK_ELEMENTS = 1 << 20


def summarize_draws(draws: np.ndarray, quantiles: tuple[float, ...] = (0.05, 0.5, 0.95)) -> dict[str, np.ndarray]:
    """Posterior summaries of draws ``[num_draws, ...]`` over the first dim: ``mean``, ``sd`` (ddof 1; 0 for
    a single draw) and one ``qNN`` per quantile (``q05`` for 0.05)."""
    out = {"mean": draws.mean(0), "sd": draws.std(0, ddof=1) if len(draws) > 1 else np.zeros(draws.shape[1:])}
    if len(draws) > 1:
        values = np.quantile(draws, list(quantiles), axis=0)
    else:
        values = [draws[0]] * len(quantiles)
    for q, value in zip(quantiles, values, strict=True):
        out[f"q{round(100 * q):02d}"] = value
    return out


# ---------------------------------------------------------------------------------------------------
# per compound


def predict(
    result: Any,
    data: DELData,
    num_samples: int = 200,
    batch_size: int = 4096,
    *,
    threshold: float | None = None,
    seed: int = 0,
    cache_dir: str | None = None,
    target: str | None = None,
) -> pd.DataFrame:
    """Posterior summaries of every compound of ``data``, one row each, in the screen's order.

    Columns: ``compound_id``; ``log_enrichment_mean``, ``log_enrichment_sd`` and the quantiles
    ``log_enrichment_q05``, ``_q25``, ``_q50``, ``_q75``, ``_q95`` (so the 90% and 50% central intervals)
    of the log target enrichment (natural log: networks + building-block effects + the compound's own
    effect); ``log_matrix_mean`` (NaN without a matrix arm); ``p_enriched``, the posterior probability
    that the log target enrichment exceeds ``threshold`` (default: the median of the posterior means over
    ``data`` plus log 2); and, for a model with poses, ``attention_pose_0`` ... ``attention_pose_{k-1}``.

    The moving-average parameters are used, with dropout off. Latent terms are summarized from
    ``num_samples`` posterior draws: a compound of the training screen gets its own posterior effect, a
    compound never screened (or a building block never seen) the prior. In a model without latent terms,
    such as the ``del-dock`` preset and the network-only models, the fit is a point estimate: the sd is 0,
    every quantile equals the mean and ``p_enriched`` is 0 or 1 (one pass is made). Draws are seeded by
    ``seed``; memory grows with ``batch_size * num_samples``, not with the screen. A model of several
    targets summarizes the one named by ``target`` (needed then, and only then).
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    model = result.model
    which = target_position(model, target)
    bead_set = None if model.bead_sets is None else model.encoding.target_bead_set[which]
    batches = _batches(result, data, batch_size, cache_dir)
    n = data.n_compounds
    quantiles = (0.05, 0.25, 0.5, 0.75, 0.95)
    summaries: dict[str, np.ndarray] = {}
    log_matrix = np.full(n, math.nan)
    attention = np.empty((n, model.encoding.n_poses), dtype=np.float32) if "poses" in model.terms else None
    p_enriched = np.empty(n)
    threshold_known = threshold is not None
    for index, log_target, matrix, pose_attention in _batch_draws(result, batches, num_samples, seed):
        log_target = log_target if which is None else log_target[..., which]
        if threshold_known:
            p_enriched[index] = (log_target > threshold).mean(0)
        for name, value in summarize_draws(log_target, quantiles).items():
            summaries.setdefault(name, np.empty(n))[index] = value
        if matrix is not None:
            log_matrix[index] = (matrix if bead_set is None else matrix[..., bead_set]).mean(0)
        if attention is not None:
            attention[index] = pose_attention.cpu().numpy()
    if not threshold_known:  # a second pass over the same (seeded) draws, now that it is known
        threshold = float(np.median(summaries["mean"]) + math.log(2.0))
        for index, log_target, _, _ in _batch_draws(result, batches, num_samples, seed):
            log_target = log_target if which is None else log_target[..., which]
            p_enriched[index] = (log_target > threshold).mean(0)
    columns: dict[str, Any] = {"compound_id": data.compound_id}
    for name, values in summaries.items():
        columns[f"log_enrichment_{name}"] = values
    columns["log_matrix_mean"] = log_matrix
    columns["p_enriched"] = p_enriched
    if attention is not None:
        for k in range(attention.shape[1]):
            columns[f"attention_pose_{k}"] = attention[:, k]
    frame = pd.DataFrame(columns)
    frame.attrs["threshold"] = threshold
    return frame


def target_position(model: Any, target: str | None) -> int | None:
    """Where ``target`` sits in a model of several targets (None for a model of one, which takes no
    ``target``); a ValueError names the targets when it is missing or unknown."""
    if model.targets is None:
        if target is not None:
            raise ValueError(f"target={target!r}: this model fits one target; leave target out")
        return None
    if target not in model.targets:
        raise ValueError(f"target: this model fits {model.targets}; name one of them (got {target!r})")
    return model.targets.index(target)


def enrichment_draws(
    result: Any,
    data: DELData,
    num_samples: int = 200,
    batch_size: int = 4096,
    *,
    seed: int = 0,
    cache_dir: str | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Posterior draws of the log target enrichment of ``data``'s compounds, batch by batch: pairs of
    (rows of ``data`` ``[batch]``, draws ``[num_samples, batch]``; ``[num_samples, batch, n_targets]``
    for a model of several targets, every target's from the same posterior draw), the screen in order.
    The draws are those :func:`predict` summarizes with the same ``seed`` and ``batch_size``; a model
    without latent terms gives one draw. Memory grows with ``batch_size * num_samples``, not the screen."""
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    batches = _batches(result, data, batch_size, cache_dir)
    for rows, log_target, _, _ in _batch_draws(result, batches, num_samples, seed):
        yield rows, log_target


def _batches(result: Any, data: DELData, batch_size: int, cache_dir: str | None) -> Minibatches:
    """``data``'s compounds in order, in batches, encoded once for ``result``'s model."""
    model = result.model
    arrays = model.encoding.encode(data, cache_dir=cache_dir, counts=False)
    return Minibatches(arrays, batch_size, shuffle=False, device=model.device)


def _batch_draws(
    result: Any, batches: Minibatches, num_samples: int, seed: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None, torch.Tensor | None]]:
    """``(rows, log target, log matrix, pose attention)`` of :func:`_draws` batch by batch, each batch's
    draws seeded by ``seed`` and its number (a second pass repeats them), ``num_samples`` of them (one for a
    model without latent terms). The model's evaluation state is set for each batch and restored before
    the yield, so a caller may draw from other results (with parameters of their own) between batches."""
    model = result.model
    samples = num_samples if model.latent_terms else 1
    for number, batch in enumerate(batches):
        with model.evaluating(), result.averaged(), torch.no_grad(), flushing_subnormals():
            draws = _draws(result, batch, samples, seed * 7919 + number)
        yield (batch[INDEX].cpu().numpy(), *draws)


def _draws(
    result: Any, batch: dict[str, Any], samples: int, seed: int
) -> tuple[np.ndarray, np.ndarray | None, torch.Tensor | None]:
    """``(log target [samples, batch] ([samples, batch, n_targets] with several targets), log matrix
    [samples, batch] ([samples, batch, n_bead_sets] with bead sets) or None, pose attention or None)`` for
    one batch: the networks once, the latent terms for many posterior draws at a time (seeded, so a second
    pass repeats): one vectorized draw gives every draw's globals and compound effects, and the latent
    terms compute on ``[draws, ...]`` tensors."""
    model = result.model
    size = batch[INDEX].shape[0]
    network = model.network_enrichments(batch)
    shape = (size,) if model.targets is None else (size, len(model.targets))
    if not model.latent_terms:
        log_target, log_matrix = model.enrichments(network, {}, {})
        matrix = None if log_matrix is None else log_matrix.double().cpu().numpy()[None]
        return log_target.expand(shape).double().cpu().numpy()[None], matrix, network.attention
    if model.local_sites:
        draw_batch = batch  # the local sites' plates read the batch's training positions and pairs
    else:
        draw_batch = {INDEX: torch.zeros(1, dtype=torch.long, device=model.device), SCREEN_SIZE: 1}
    targets = np.empty((samples, *shape))
    matrix_shape = (size,) if model.bead_sets is None else (size, len(model.bead_sets))
    matrices = np.empty((samples, *matrix_shape)) if "matrix" in model.arms else None
    chunk = max(1, min(samples, DRAW_CHUNK_ELEMENTS // max(int(np.prod(shape)), 1)))
    with torch.random.fork_rng(devices=[model.device] if model.device.type == "cuda" else []):
        torch.manual_seed(seed)
        for first in range(0, samples, chunk):
            count = min(chunk, samples - first)
            values = result.draw_sites(draw_batch, count)
            log_target, log_matrix = model.draw_enrichments(batch, network, values, count)
            targets[first : first + count] = log_target.expand(count, *shape).double().cpu().numpy()
            if matrices is not None:
                matrices[first : first + count] = log_matrix.expand(count, *matrix_shape).double().cpu().numpy()
    return targets, matrices, network.attention


# ---------------------------------------------------------------------------------------------------
# latent globals and building blocks


def globals_summary(result: Any, num_samples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Posterior mean, sd and 5/50/95% quantiles of every latent global, one row per element: columns
    ``site``, ``element``, ``mean``, ``sd``, ``q05``, ``q50``, ``q95``."""
    frames = []
    for name, draws in result.sample_globals(num_samples, seed).items():
        flat = draws.reshape(num_samples, -1)
        frame = pd.DataFrame({"site": name, "element": np.arange(flat.shape[1])})
        frames.append(frame.assign(**summarize_draws(flat)))
    columns = ["site", "element", "mean", "sd", "q05", "q50", "q95"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def _family_draws(result: Any, draws: dict[str, np.ndarray], arm: str, family: str, num_samples: int) -> np.ndarray:
    """``[num_samples, n_slots]`` effects of one building-block family from draws of the globals (a cycle's
    centred as the model centres them)."""
    key = f"bb_{arm}_{family}"
    if key not in draws:
        raise ValueError(f"no building-block effects on the {arm!r} arm")
    scale = torch.as_tensor(draws[f"bb_{arm}_scale_{family}"].reshape(-1))
    z = torch.as_tensor(draws[key].reshape(num_samples, -1))
    return family_effects(scale, z, centred=family in (result.model.encoding.bb_vocabulary or {})).numpy()


def _effect_summary(effects: np.ndarray, labels: dict[str, Any]) -> pd.DataFrame:
    """One row per column of ``effects`` ``[draws, n]``: the labels, then mean, sd, q05, q50, q95."""
    return pd.DataFrame(labels, index=range(effects.shape[1])).assign(**summarize_draws(effects))


def building_block_draws(
    result: Any, arm: str = "target", num_samples: int = 1000, seed: int = 0, *, target: str | None = None
) -> dict[str, tuple[list[str], np.ndarray]]:
    """Posterior draws of every building block's effect (natural log) on one arm ("target" or "matrix"):
    ``{cycle: (block ids, draws [num_samples, n_blocks])}``, the blocks seen in training, each cycle's
    effects centred as the model centres them. In a model of several targets the "target" arm is their
    shared part; ``target=`` gives one target's whole effect, the shared part plus its own."""
    vocabulary = result.model.encoding.bb_vocabulary
    if vocabulary is None:
        raise ValueError("this model has no 'building_blocks' term")
    arms = [arm]
    if target is not None and target_position(result.model, target) is not None:
        if arm != "target":
            raise ValueError(f"target={target!r} is for the target arm, not {arm!r}")
        arms.append(f"target:{target}")
    draws = result.sample_globals(num_samples, seed)
    return {
        cycle: (list(ids), sum(_family_draws(result, draws, a, cycle, num_samples)[:, : len(ids)] for a in arms))
        for cycle, ids in vocabulary.items()
    }


def building_block_effects(
    result: Any, arm: str = "target", num_samples: int = 1000, seed: int = 0, *, target: str | None = None
) -> pd.DataFrame:
    """Posterior of every building block's effect (natural log) on one arm ("target" or "matrix"): one row
    per block, with ``cycle``, ``building_block``, ``mean``, ``sd``, ``q05``, ``q50``, ``q95``; ``target``
    as for :func:`building_block_draws`."""
    frames = [
        _effect_summary(effects, {"cycle": cycle, "building_block": ids})
        for cycle, (ids, effects) in building_block_draws(result, arm, num_samples, seed, target=target).items()
    ]
    return pd.concat(frames, ignore_index=True)


def disynthon_effects(
    result: Any, cycles: tuple[str, str] | None = None, arm: str = "target", num_samples: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Posterior of the disynthon (pair) effects (``ModelConfig(bb_pairs=...)``), in the layout of
    :func:`building_block_effects`: one row per pair of blocks seen in training, with ``cycle`` (the
    family, "cycle1+cycle2"), ``building_block`` ("A001+B003"), ``block_a``, ``block_b``, ``mean``, ``sd``,
    ``q05``, ``q50``, ``q95``. A disynthon's effect on a compound is its two blocks' effects plus this: what
    the pair adds to them. ``cycles`` picks one family (either order); default every family."""
    encoding = result.model.encoding
    if encoding.bb_vocabulary is None:
        raise ValueError("this model has no 'building_blocks' term")
    families = list(encoding.pair_keys or {})
    if not families:
        raise ValueError(
            "this model has no disynthon families (ModelConfig(bb_pairs=True) adds them; the default, 'auto', "
            "leaves out pairs of cycles with about one compound a pair, as in two-cycle libraries)"
        )
    if cycles is not None:
        a, b = cycles
        families = [f for f in (f"{a}+{b}", f"{b}+{a}") if f in families][:1]
        if not families:
            raise ValueError(f"no disynthon family for cycles {cycles}; the families are {list(encoding.pair_keys)}")
    draws = result.sample_globals(num_samples, seed)
    frames = []
    for family in families:
        first, second = family.split("+")
        rows, columns = encoding.pair_blocks(family)
        block_a = [encoding.bb_vocabulary[first][k] for k in rows]
        block_b = [encoding.bb_vocabulary[second][k] for k in columns]
        effects = _family_draws(result, draws, arm, family, num_samples)
        labels = {
            "cycle": family,
            "building_block": [f"{x}+{y}" for x, y in zip(block_a, block_b, strict=True)],
            "block_a": block_a,
            "block_b": block_b,
        }
        frames.append(_effect_summary(effects[:, : len(rows)], labels))
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------------------------------------------
# a simulated screen's truth on the model's scale


def truth_on_model_scale(result: Any, data: DELData) -> np.ndarray:
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
    encoding = result.model.encoding
    if list(data.target_names) != list(encoding.target_names) or list(data.control_names) != list(
        encoding.control_names
    ):
        raise ValueError("the screen's replicates differ from the model's")

    def arm_shift(arm: str) -> float:
        scale = np.asarray(data.attrs[f"{arm}_scale"], dtype=np.float64)
        depth = np.asarray(getattr(encoding, f"log_depth_{arm}"), dtype=np.float64)
        gate_true = float(data.attrs.get(f"{arm}_gate", 0.0))
        return float(np.mean(np.log(scale) - depth)) + math.log1p(-gate_true) - math.log1p(-_gate(result, arm))

    truth = data.truth["log_target_enrichment"].to_numpy(np.float64) + arm_shift("target")
    if encoding.has_control and result.config.combine == "multiplicative":
        return truth - arm_shift("control")
    offset = encoding.log_load_offset(data.load) if encoding.uses_load else 0.0
    return truth + np.log(data.truth["load"].to_numpy(np.float64)) - offset


def _gate(result: Any, arm: str) -> float:
    """The fitted probability of a structural zero in an arm (0 for Poisson and NB)."""
    model, config = result.model, result.config
    if not model.zero_inflated:
        return 0.0
    if config.gates == "latent":
        return float(result.sample_globals(500)[GATE.format(arm=arm)].mean())
    if config.gates == "per_compound":
        raise ValueError("per-compound gates have no single gate per arm")
    if config.gates == "fixed":
        return getattr(config, f"{arm}_gate")
    with result.averaged():
        logits = pyro.get_param_store()[GATE_LOGITS.format(arm=arm)]
    return float(torch.sigmoid(logits.detach()))

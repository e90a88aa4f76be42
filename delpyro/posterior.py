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
from pyro.poutine.util import site_is_subsample

from delpyro.data import DELData, DELDataError, Minibatches
from delpyro.metrics import affinity_correlation, calibration, hit_recovery, ppc_statistics  # noqa: F401
from delpyro.terms import screened_positions

if TYPE_CHECKING:
    from delpyro.infer import FitResult

__all__ = [
    "building_block_baseline",
    "compare",
    "guide_diagnostic",
    "naive_enrichment",
    "predict",
    "to_inference_data",
    "truth_on_model_scale",
]


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
    batches = Minibatches(arrays, batch_size, shuffle=False, device=model.device)
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
                index = batch["index"].cpu().numpy()
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
                    attention[index] = extras["attention"].cpu().numpy()
            if not threshold_known:  # a second pass over the same (seeded) draws, now that it is known
                threshold = float(np.median(summaries["mean"]) + math.log(2.0))
                for number, batch in enumerate(batches):
                    target = _draws(result, batch, samples, seed * 7919 + number)[0]
                    p_enriched[batch["index"].cpu().numpy()] = (target > threshold).mean(0)
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


#: Draws of one batch computed together are capped so that draws x compounds stays near this (memory).
DRAW_CHUNK_ELEMENTS = 1 << 20


def _draws(
    result: FitResult, batch: dict[str, Any], samples: int, seed: int
) -> tuple[np.ndarray, np.ndarray | None, dict[str, torch.Tensor]]:
    """``(log target [samples, batch], log matrix [samples, batch] or None, extras)`` for one batch: the
    networks once, the latent terms for many draws of the guide at a time (seeded, so a second pass
    repeats): one vectorized run of the guide gives every draw's globals and compound effects, and the
    latent terms compute on ``[draws, ...]`` tensors."""
    model = result.model
    size = batch["index"].shape[0]
    target, matrix, extras = model.enrichments(batch, latent=False) if _has_networks(model) else (None, None, {})
    base_target = torch.zeros(size, device=model.device) if target is None else target
    if not model.latent_terms:
        return (
            base_target.double().cpu().numpy()[None],
            None if matrix is None else matrix.double().cpu().numpy()[None],
            extras,
        )
    if "compound" in model.term_names:
        guide_batch = batch  # the guide's plate reads the batch's training positions
    else:
        guide_batch = {"index": torch.zeros(1, dtype=torch.long, device=model.device), "size": 1}
    targets = np.empty((samples, size))
    matrices = None if not model.observation.has_control else np.empty((samples, size))
    chunk = max(1, min(samples, DRAW_CHUNK_ELEMENTS // max(size, 1)))
    with torch.random.fork_rng(devices=[model.device] if model.device.type == "cuda" else []):
        torch.manual_seed(seed)
        for first in range(0, samples, chunk):
            count = min(chunk, samples - first)
            values = guide_draws(result, guide_batch, count)
            latent_target, latent_matrix = latent_enrichments(model, batch, values, count)
            total = base_target if latent_target is None else base_target + latent_target
            targets[first : first + count] = total.expand(count, size).double().cpu().numpy()
            if matrices is not None:
                if matrix is None:
                    total = latent_matrix
                else:
                    total = matrix if latent_matrix is None else matrix + latent_matrix
                matrices[first : first + count] = total.expand(count, size).double().cpu().numpy()
    return targets, matrices, extras


def guide_draws(result: FitResult, batch: dict[str, Any], count: int) -> dict[str, torch.Tensor]:
    """``count`` draws of the guide's latent sites for ``batch`` at once: ``{site: [count, *shape]}``, each
    site in the shape one draw gives it (the per-compound effects for the batch's screened compounds).

    The guide runs once inside a plate of ``count`` draws, left of every plate the model uses, as Pyro's
    vectorized particles do; a guide of stored samples (NUTS) picks ``count`` of them."""
    guide = result.guide
    if hasattr(guide, "draw"):
        return guide.draw(batch, count)
    one = poutine.trace(guide).get_trace(batch)  # the shapes of a single draw
    shapes = {name: site["value"].shape for name, site in _latent_sites(one)}
    prototype = getattr(guide, "prototype_trace", None)
    prototype = one if prototype is None else prototype
    nesting = max(
        (-frame.dim for _, site in _latent_sites(prototype) for frame in site["cond_indep_stack"] if frame.vectorized),
        default=0,
    )
    nesting = max(nesting, 2)  # the model's compound and replicate plates
    with pyro.plate("draws", count, dim=-(nesting + 1)):
        trace = poutine.trace(guide).get_trace(batch)
    return {name: site["value"].reshape(count, *shapes[name]) for name, site in _latent_sites(trace)}


def _latent_sites(trace: Any) -> list[tuple[str, Any]]:
    return [
        (name, site)
        for name, site in trace.nodes.items()
        if site["type"] == "sample"
        and not site["is_observed"]
        and not site["infer"].get("is_auxiliary")
        and not site_is_subsample(site)  # a subsampled plate's index site
    ]


def latent_enrichments(
    model: Any, batch: dict[str, Any], values: dict[str, torch.Tensor], count: int
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The latent terms' log target and log matrix parts ``[count, batch]`` (None: no part) for ``count``
    draws of the latent sites (``values``: ``{site: [count, ...]}``, as :func:`guide_draws` gives them).
    Compounds never screened draw their effect from the prior, one per draw."""
    size = batch["index"].shape[0]
    context: dict[str, torch.Tensor] = {}
    with poutine.block(), poutine.condition(data=values):
        for name in model.latent_terms:
            model.terms[name].sample_globals(context)
    if "compound" in model.term_names:
        term = model.terms["compound"]
        prior = term.prior(context)  # batch shape [count] with a matrix arm, else [] (Normal(0, 1))
        z = prior.sample((count, size)) if prior.batch_shape == () else prior.sample((size,)).movedim(0, 1)
        positions, screened = screened_positions(batch)
        if bool(screened.any()):
            effect = values["compound_effect"]  # [count, screened in the batch, n_arms], in the plate's order
            if positions.numel() == term.n_screened:  # the whole plate, in its natural order
                effect = effect[:, positions]
            z[:, screened] = effect
        context["compound_z"] = z
    latent_target, latent_matrix, _ = model.enrichments(batch, context, networks=False)
    return latent_target, latent_matrix


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


# ---------------------------------------------------------------------------------------------------
# ArviZ export, model comparison and the guide's importance-sampling diagnostic

UNSEEN = "(unseen)"


def to_inference_data(
    result: FitResult,
    data: DELData,
    num_samples: int = 200,
    compounds: Any = None,
    *,
    batch_size: int = 4096,
    seed: int = 0,
    cache_dir: str | None = None,
) -> Any:
    """An ``arviz.InferenceData`` of a fit on ``data`` (see :meth:`FitResult.to_inference_data`)."""
    import arviz as az

    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    data = _select(data, compounds)
    model = result.model
    if data.target_names != model.spec.target_names or data.control_names != model.spec.control_names:
        raise DELDataError(
            f"replicates: the screen's target {data.target_names} and control {data.control_names} replicates "
            f"differ from the model's {model.spec.target_names} and {model.spec.control_names}"
        )
    draws = _global_draws(result, num_samples, seed)  # [(chain, draw, sample, {site: tensor})]
    n_chains = 1 + max(c for c, _, _, _ in draws)
    n_draws = len(draws) // n_chains
    n = data.n_compounds
    arms = model.observation.arms()
    replicates = {"control": data.control_names, "target": data.target_names}
    per_compound: dict[str, np.ndarray] = {
        "log_target_enrichment": np.empty((n_chains, n_draws, n), np.float32),
    }
    if model.observation.has_control:
        per_compound["log_matrix_enrichment"] = np.empty((n_chains, n_draws, n), np.float32)
    compound_term = model.terms["compound"] if "compound" in model.term_names else None
    if compound_term is not None:
        per_compound["compound_target_effect"] = np.empty((n_chains, n_draws, n), np.float32)
        if "matrix" in compound_term.arms:
            per_compound["compound_matrix_effect"] = np.empty((n_chains, n_draws, n), np.float32)
    predictive = {f"{arm}_counts": np.empty((n_chains, n_draws, n, len(replicates[arm])), np.float32) for arm in arms}
    log_lik = np.zeros((n_chains, n_draws, n))
    batches = Minibatches(model.arrays(data, cache_dir=cache_dir), batch_size, shuffle=False, device=model.device)
    was_training = model.training
    model.eval()
    try:
        with result.averaged(), torch.no_grad(), torch.random.fork_rng():
            for number, batch in enumerate(batches):
                index = batch["index"].cpu().numpy()
                for k, (chain, draw, sample, values) in enumerate(draws):
                    torch.manual_seed(seed * 104729 + number * 7919 + k)
                    latent = {**values, **_local_values(result, batch, values, chain, sample)}
                    trace = poutine.trace(poutine.condition(model, data=latent)).get_trace(batch)
                    for arm in arms:
                        site = trace.nodes[f"{arm}_counts"]
                        log_lik[chain, draw, index] += site["fn"].log_prob(site["value"]).sum(-1).double().cpu().numpy()
                        predictive[f"{arm}_counts"][chain, draw, index] = site["fn"].sample().cpu().numpy()
                    per_compound["log_target_enrichment"][chain, draw, index] = _column(trace, "log_target_enrichment")
                    if "log_matrix_enrichment" in per_compound:
                        per_compound["log_matrix_enrichment"][chain, draw, index] = _column(
                            trace, "log_matrix_enrichment"
                        )
                    if compound_term is not None:
                        effects = _compound_effects(model, trace, batch)
                        per_compound["compound_target_effect"][chain, draw, index] = effects.target.cpu().numpy()
                        if effects.matrix is not None:
                            per_compound["compound_matrix_effect"][chain, draw, index] = effects.matrix.cpu().numpy()
    finally:
        model.train(was_training)
    posterior, dims, coords = _posterior_globals(result, draws, n_chains, n_draws)
    compound_ids = [str(c) for c in data.compound_id]
    coords["compound_id"] = compound_ids
    for arm in arms:
        coords[f"{arm}_replicate"] = list(replicates[arm])
    for name, values in per_compound.items():
        posterior[name] = values
        dims[name] = ["compound_id"]
    observed = {f"{arm}_counts": getattr(data, f"{arm}_counts").astype(np.int64) for arm in arms}
    for arm in arms:
        dims[f"{arm}_counts"] = ["compound_id", f"{arm}_replicate"]
    constant: dict[str, np.ndarray] = {
        f"log_depth_{arm}": np.asarray(getattr(model.spec, f"log_depth_{arm}"), dtype=np.float64) for arm in arms
    }
    for arm in arms:
        dims[f"log_depth_{arm}"] = [f"{arm}_replicate"]
    if data.load is not None:
        constant["load"] = np.asarray(data.load, dtype=np.float64)
        dims["load"] = ["compound_id"]
        if model.spec.uses_load:
            constant["log_load_offset"] = model.spec.log_load_offset(data.load)
            dims["log_load_offset"] = ["compound_id"]
    idata = az.from_dict(
        posterior=posterior,
        posterior_predictive=predictive,
        log_likelihood={"counts": log_lik},
        observed_data=observed,
        constant_data=constant,
        coords=coords,
        dims={**dims, "counts": ["compound_id"]},
        attrs={"inference": "nuts" if _is_mcmc(result) else f"svi ({result.config.guide})"},
    )
    return idata


def _select(data: DELData, compounds: Any) -> DELData:
    if compounds is None:
        return data
    chosen = np.asarray(compounds)
    if chosen.dtype == bool or np.issubdtype(chosen.dtype, np.integer):
        return data.subset(chosen)
    position = {str(c): i for i, c in enumerate(data.compound_id)}
    missing = [str(c) for c in chosen if str(c) not in position]
    if missing:
        raise DELDataError(f"compound_id: {len(missing)} requested compounds are not in the screen: {missing[:5]}")
    return data.subset([position[str(c)] for c in chosen])


def _is_mcmc(result: FitResult) -> bool:
    return isinstance(getattr(result, "samples", None), dict) and bool(result.samples)


Draws = list[tuple[int, int, int, dict[str, torch.Tensor]]]


def _global_draws(result: FitResult, num_samples: int, seed: int) -> Draws:
    """``(chain, draw, sample, globals)`` for every draw: the chains of an MCMC result (thinned evenly to at
    most ``num_samples`` per chain; ``sample`` is the kept sample's position), or ``num_samples`` draws of
    the guide as one chain."""
    if _is_mcmc(result):
        first = next(iter(result.samples.values()))
        n_chains, n_total = first.shape[:2]
        keep = np.unique(np.linspace(0, n_total - 1, min(num_samples, n_total)).round().astype(int))
        return [
            (c, d, int(i), {name: v[c, i] for name, v in result.samples.items() if name != "compound_effect"})
            for c in range(n_chains)
            for d, i in enumerate(keep)
        ]
    if not result.model.latent_terms and not _has_latent_globals(result):
        return [(0, 0, 0, {})]
    sampled = result.sample_sites(num_samples, seed=seed)  # the model's own sites, to condition it on
    return [(0, d, d, {name: torch.as_tensor(v[d]) for name, v in sampled.items()}) for d in range(num_samples)]


def _has_latent_globals(result: FitResult) -> bool:
    try:
        return bool(result.global_sites())
    except RuntimeError:
        return False


def _local_values(
    result: FitResult, batch: dict[str, Any], values: dict[str, torch.Tensor], chain: int, sample: int
) -> dict[str, torch.Tensor]:
    """The per-compound effects of one draw for the batch's screened compounds (empty without them)."""
    model = result.model
    if "compound" not in model.term_names:
        return {}
    positions, screened = screened_positions(batch)
    if not bool(screened.any()):
        return {}
    if _is_mcmc(result):
        return {"compound_effect": result.samples["compound_effect"][chain, sample][positions]}
    trace = poutine.trace(poutine.condition(result.guide, data=values)).get_trace(batch)
    return {"compound_effect": trace.nodes["compound_effect"]["value"]}


def _column(trace: Any, name: str) -> np.ndarray:
    return trace.nodes[name]["value"].reshape(-1).cpu().numpy()


def _compound_effects(model: Any, trace: Any, batch: dict[str, Any]) -> Any:
    """The compound term's (target, matrix) effects in batch order, from a model trace."""
    term = model.terms["compound"]
    size = batch["index"].shape[0]
    _, screened = screened_positions(batch)
    z = torch.empty(size, len(term.arms) if "matrix" in term.arms else 1)
    if bool(screened.any()):
        z[screened] = term.in_batch_order(trace.nodes["compound_effect"]["value"], batch)
    if "new_compound_effect" in trace.nodes:
        z[~screened] = trace.nodes["new_compound_effect"]["value"].reshape(-1, z.shape[1])[: int((~screened).sum())]
    context = {"compound_z": z}
    if "compound_scale" in trace.nodes:
        context["compound_scale"] = trace.nodes["compound_scale"]["value"]
    return term(batch, context)


def _posterior_globals(
    result: FitResult, draws: Draws, n_chains: int, n_draws: int
) -> tuple[dict[str, np.ndarray], dict[str, list[str]], dict[str, list[str]]]:
    """The latent globals as ``[chain, draw, ...]`` arrays, and the building-block effects derived from
    them, with dims and coords (replicate names, building-block ids, disynthon ids)."""
    model = result.model
    posterior: dict[str, np.ndarray] = {}
    dims: dict[str, list[str]] = {}
    coords: dict[str, list[str]] = {}
    families = _family_coords(model.spec)
    for chain, draw, _, values in draws:
        if "building_blocks" in model.term_names:
            context: dict[str, torch.Tensor] = {}
            with poutine.block(), poutine.condition(data=values):  # block outside, so condition sees the sites
                model.terms["building_blocks"].sample_globals(context)
            values = {**values, "bb_effects": context["bb_effects"]}
        for name, value in values.items():
            array = posterior.setdefault(name, np.empty((n_chains, n_draws, *value.shape), np.float32))
            array[chain, draw] = value.cpu().numpy()
    posterior = model.named_globals(posterior)  # building-block sites split by arm and family
    for name in posterior:
        base = name.removesuffix("_effect")
        for arm in ("target", "matrix"):
            prefix = f"bb_{arm}_"
            if base.startswith(prefix) and not base.startswith(f"bb_{arm}_scale_"):
                family = base[len(prefix) :]
                if family in families:
                    coords[f"{family}_id"] = families[family]
                    dims[name] = [f"{family}_id"]
        for arm in ("control", "target"):
            if name == f"{arm}_depth_deviation":
                dims[name] = [f"{arm}_replicate"]
    return posterior, dims, coords


def _family_coords(spec: Any) -> dict[str, list[str]]:
    """Labels of every building-block family's slots: block ids per cycle, "a+b" per disynthon, and the
    unseen slot last."""
    vocabulary = spec.bb_vocabulary or {}
    labels = {cycle: [*map(str, ids), UNSEEN] for cycle, ids in vocabulary.items()}
    for name, keys in (spec.pair_keys or {}).items():
        first, second = name.split("+")
        width = len(vocabulary[second]) + 1
        labels[name] = [f"{labels[first][k // width]}+{labels[second][k % width]}" for k in keys] + [UNSEEN]
    return labels


def compare(fits: dict[str, FitResult], data: DELData, num_samples: int = 200, **kwargs: Any) -> pd.DataFrame:
    """PSIS-LOO comparison of fitted models on one screen: the ``arviz.compare`` table (rank, elpd_loo,
    p_loo, elpd_diff, weight, se, dse, warning), best first. Each compound is one left-out unit (its
    replicates' log-likelihoods are summed). ``kwargs`` go to :func:`to_inference_data`."""
    import arviz as az

    if len(fits) < 2:
        raise ValueError("compare needs at least two fits")
    idatas = {name: to_inference_data(fit, data, num_samples=num_samples, **kwargs) for name, fit in fits.items()}
    return az.compare(idatas, ic="loo")


def guide_diagnostic(
    result: FitResult,
    data: DELData,
    num_particles: int = 200,
    max_compounds: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """How good the guide is as an importance sampler for the posterior: the Pareto k of the importance
    weights ``log p(x, z) - log q(z)`` (Yao et al. 2018, "Yes, but did it work?").

    ``num_particles`` draws of the guide over the screen's compounds; a screen larger than
    ``max_compounds`` is judged on a random subset of that many compounds (with the likelihood scaled up
    to the screen, as in training). Returns ``{"k": ..., "verdict": ..., "num_particles": ..., "n_compounds": ...}``:
    k < 0.5, the guide is close to the posterior; 0.5 to 0.7, usable for means but its intervals may be
    off; above 0.7, the guide is far from the posterior: check against :func:`delpyro.run_nuts` on a
    subset, or use a richer guide.
    """
    import arviz as az

    model = result.model
    rng = np.random.default_rng(seed)
    n = data.n_compounds
    index = np.sort(rng.choice(n, max_compounds, replace=False)) if n > max_compounds else np.arange(n)
    arrays = model.arrays(data)
    batch = next(
        iter(Minibatches({k: v[index] for k, v in arrays.items()}, len(index), shuffle=False, device=model.device))
    )
    batch["index"] = torch.as_tensor(index, device=model.device)
    batch["size"] = n
    guide = result.svi.guide if result.svi is not None else result.guide
    log_weights = np.empty(num_particles)
    was_training = model.training
    model.eval()
    try:
        with result.averaged(), torch.no_grad(), torch.random.fork_rng():
            torch.manual_seed(seed)
            for k in range(num_particles):
                guide_trace = poutine.trace(guide).get_trace(batch)
                model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(batch)
                log_weights[k] = float(model_trace.log_prob_sum() - guide_trace.log_prob_sum())
    finally:
        model.train(was_training)
    if not np.all(np.isfinite(log_weights)):
        raise FloatingPointError("guide_diagnostic: non-finite importance weights")
    _, k_hat = az.psislw(log_weights)
    k_hat = float(k_hat)
    if k_hat < 0.5:
        verdict = f"k = {k_hat:.2f} < 0.5: the guide is a good approximation of the posterior"
    elif k_hat < 0.7:
        verdict = f"k = {k_hat:.2f} in [0.5, 0.7): usable for posterior means; intervals may be too narrow"
    else:
        verdict = (
            f"k = {k_hat:.2f} >= 0.7: the guide is far from the posterior; trust rankings, not intervals, and "
            "check against run_nuts on a subset or a richer guide"
        )
    return {"k": k_hat, "verdict": verdict, "num_particles": num_particles, "n_compounds": len(index)}

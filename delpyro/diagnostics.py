"""Checking a fit: the ArviZ export, PSIS-LOO model comparison, and the guide's importance-sampling diagnostic.

- :func:`to_inference_data`: a fit on a screen as an ``arviz.InferenceData`` (posterior with named dims,
  posterior predictive counts, per-compound log-likelihood, observed and constant data), in batches.
- :func:`compare`: the ``arviz.compare`` table of several fits by PSIS-LOO, a compound left out at a time.
- :func:`guide_diagnostic`: the Pareto k of the importance weights ``log p(x, z) - log q(z)`` of the guide.

Like :mod:`delpyro.posterior`, these read a result through its interface: ``posterior_chains`` (draws of
the globals by chain), ``local_draw`` (a draw's per-compound sites), ``averaged()``, ``guide``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import torch
from pyro import poutine

from delpyro.batches import Minibatches
from delpyro.data import DELData, DELDataError
from delpyro.keys import INDEX, SCREEN_SIZE
from delpyro.model import (
    BB_EFFECTS,
    BB_PAIR_EFFECTS,
    BB_PAIR_Z,
    BB_SCALE,
    BB_Z,
    COMPOUND_EFFECT_ON,
    COUNTS,
    DEPTH_DEVIATION,
    LOG_MATRIX_ENRICHMENT,
    LOG_TARGET_ENRICHMENT,
)

__all__ = ["compare", "guide_diagnostic", "to_inference_data"]

# ArviZ 0.23 warns once a day, when it is imported, of its coming 1.0: a notice about ArviZ, not about the
# user's work, that would fill a notebook cell with a multi-line box. Silenced here, where delpyro uses
# ArviZ (imported with delpyro: import delpyro before arviz and the notice never shows).
warnings.filterwarnings("ignore", message=r"\s*ArviZ is undergoing a major refactor", category=FutureWarning)


def to_inference_data(
    result: Any,
    data: DELData,
    num_samples: int = 200,
    compounds: Any = None,
    *,
    batch_size: int = 4096,
    seed: int = 0,
    cache_dir: str | None = None,
) -> Any:
    """The fit on ``data`` as an ``arviz.InferenceData``, computed in batches of compounds.

    Groups: ``posterior`` (every latent global with named dims: gates, concentrations, depth deviations by
    replicate, building-block and disynthon draws and their effects by block id; and per compound:
    ``log_target_enrichment``, ``log_matrix_enrichment``, ``compound_target_effect``,
    ``compound_matrix_effect``; a model of several targets gives the target ones a ``target`` dim, and
    with bead sets the matrix ones a ``bead_set`` dim),
    ``posterior_predictive`` (``control_counts``, ``target_counts``),
    ``log_likelihood`` (``counts``: per compound, summed over its replicates and arms, so that LOO leaves
    out a compound), ``observed_data`` and ``constant_data`` (log depth offsets per replicate, load).
    Draws come from the guide as one chain (``num_samples`` of them); for :func:`~delpyro.run_nuts`
    results from its chains (thinned to ``num_samples`` per chain), so r_hat and ESS mean something.
    ``compounds`` (ids, positions or a boolean mask) selects a subset. Save with ``idata.to_netcdf(path)``.
    """
    import arviz as az

    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    data = _select(data, compounds)
    model = result.model
    encoding = model.encoding
    batches = Minibatches(encoding.encode(data, cache_dir=cache_dir), batch_size, shuffle=False, device=model.device)
    draws = result.posterior_chains(num_samples, seed)  # [(chain, draw, sample, {site: tensor})]
    n_chains = 1 + max(c for c, _, _, _ in draws)
    n_draws = len(draws) // n_chains
    n = data.n_compounds
    arms = model.count_arms
    replicates = {"control": data.control_names, "target": data.target_names}
    has_matrix = "matrix" in model.arms
    # several targets: the target-arm sites hold every target's value, [compounds, targets]
    width = () if model.targets is None else (len(model.targets),)
    # bead sets: the matrix sites hold every set's value, [compounds, bead sets]
    sets = () if model.bead_sets is None else (len(model.bead_sets),)
    recorded = {LOG_TARGET_ENRICHMENT: width}
    if has_matrix:
        recorded[LOG_MATRIX_ENRICHMENT] = sets
    if "compound" in model.terms:
        recorded[COMPOUND_EFFECT_ON.format(arm="target")] = width
        if has_matrix:
            recorded[COMPOUND_EFFECT_ON.format(arm="matrix")] = sets
    per_compound = {name: np.empty((n_chains, n_draws, n, *shape), np.float32) for name, shape in recorded.items()}
    predictive = {
        COUNTS.format(arm=arm): np.empty((n_chains, n_draws, n, len(replicates[arm])), np.float32) for arm in arms
    }
    log_lik = np.zeros((n_chains, n_draws, n))
    with model.evaluating(), result.averaged(), torch.no_grad(), torch.random.fork_rng():
        for number, batch in enumerate(batches):
            index = batch[INDEX].cpu().numpy()
            for k, (chain, draw, sample, values) in enumerate(draws):
                torch.manual_seed(seed * 104729 + number * 7919 + k)
                latent = {**values, **result.local_draw(batch, values, chain, sample)}
                trace = poutine.trace(poutine.condition(model, data=latent)).get_trace(batch)
                for name in predictive:
                    site = trace.nodes[name]
                    log_lik[chain, draw, index] += site["fn"].log_prob(site["value"]).sum(-1).double().cpu().numpy()
                    predictive[name][chain, draw, index] = site["fn"].sample().cpu().numpy()
                for name, shape in recorded.items():
                    value = trace.nodes[name]["value"].reshape(len(index), *shape)
                    per_compound[name][chain, draw, index] = value.cpu().numpy()
    posterior, dims, coords = _posterior_globals(result, draws, n_chains, n_draws)
    coords["compound_id"] = [str(c) for c in data.compound_id]
    for arm in arms:
        coords[f"{arm}_replicate"] = list(replicates[arm])
    if model.targets is not None:
        coords["target"] = list(model.targets)
    if model.bead_sets is not None:
        coords["bead_set"] = list(model.bead_sets)
    matrix_sites = (LOG_MATRIX_ENRICHMENT, COMPOUND_EFFECT_ON.format(arm="matrix"))
    for name, values in per_compound.items():
        posterior[name] = values
        extra = ("bead_set" if name in matrix_sites else "target") if recorded[name] else None
        dims[name] = ["compound_id", extra] if extra else ["compound_id"]
    observed = {COUNTS.format(arm=arm): getattr(data, f"{arm}_counts").astype(np.int64) for arm in arms}
    for arm in arms:
        dims[COUNTS.format(arm=arm)] = ["compound_id", f"{arm}_replicate"]
    constant: dict[str, np.ndarray] = {
        f"log_depth_{arm}": np.asarray(getattr(encoding, f"log_depth_{arm}"), dtype=np.float64) for arm in arms
    }
    for arm in arms:
        dims[f"log_depth_{arm}"] = [f"{arm}_replicate"]
    if data.load is not None:
        constant["load"] = np.asarray(data.load, dtype=np.float64)
        dims["load"] = ["compound_id"]
        if encoding.uses_load:
            constant["log_load_offset"] = encoding.log_load_offset(data.load)
            dims["log_load_offset"] = ["compound_id"]
    return az.from_dict(
        posterior=posterior,
        posterior_predictive=predictive,
        log_likelihood={"counts": log_lik},
        observed_data=observed,
        constant_data=constant,
        coords=coords,
        dims={**dims, "counts": ["compound_id"]},
        attrs={"inference": result.inference},
    )


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


def _posterior_globals(
    result: Any, draws: list, n_chains: int, n_draws: int
) -> tuple[dict[str, np.ndarray], dict[str, list[str]], dict[str, list[str]]]:
    """The latent globals as ``[chain, draw, ...]`` arrays, and the building-block effects derived from
    them, with dims and coords (replicate names, building-block ids, disynthon ids)."""
    model = result.model
    posterior: dict[str, np.ndarray] = {}
    dims: dict[str, list[str]] = {}
    coords: dict[str, list[str]] = {}
    families = model.encoding.family_labels()
    for chain, draw, _, values in draws:
        if model.building_blocks is not None:
            values = {**values, BB_EFFECTS: model.building_blocks.effects(values[BB_SCALE], values[BB_Z])}
            if BB_PAIR_Z in values:
                pair_effects = model.building_blocks.pair_effects(values[BB_SCALE], values[BB_PAIR_Z])
                values[BB_PAIR_EFFECTS] = pair_effects
        for name, value in values.items():
            array = posterior.setdefault(name, np.empty((n_chains, n_draws, *value.shape), np.float32))
            array[chain, draw] = value.cpu().numpy()
    posterior = model.named_globals(posterior)  # building-block sites split by arm and family
    for name in posterior:
        base = name.removesuffix("_effect")
        for arm in model.arms:
            prefix = f"bb_{arm}_"
            if base.startswith(prefix) and not base.startswith(f"bb_{arm}_scale_"):
                family = base[len(prefix) :]
                if family in families:
                    coords[f"{family}_id"] = families[family]
                    dims[name] = [f"{family}_id"]
        for arm in model.count_arms:
            if name == DEPTH_DEVIATION.format(arm=arm):
                dims[name] = [f"{arm}_replicate"]
    return posterior, dims, coords


def compare(fits: dict[str, Any], data: DELData, num_samples: int = 200, **kwargs: Any) -> pd.DataFrame:
    """PSIS-LOO comparison of fitted models on one screen: the ``arviz.compare`` table (rank, elpd_loo,
    p_loo, elpd_diff, weight, se, dse, warning), best first. Each compound is one left-out unit (its
    replicates' log-likelihoods are summed). ``kwargs`` go to :func:`to_inference_data`."""
    import arviz as az

    if len(fits) < 2:
        raise ValueError("compare needs at least two fits")
    idatas = {name: to_inference_data(fit, data, num_samples=num_samples, **kwargs) for name, fit in fits.items()}
    return az.compare(idatas, ic="loo")


def guide_diagnostic(
    result: Any,
    data: DELData,
    num_particles: int = 200,
    max_compounds: int = 2000,
    seed: int = 0,
    cache_dir: str | None = None,
) -> dict[str, Any]:
    """How good the guide is as an importance sampler for the posterior: the Pareto k of the importance
    weights ``log p(x, z) - log q(z)`` (Yao et al. 2018, "Yes, but did it work?").

    ``num_particles`` draws of the guide over the screen's compounds; a screen larger than
    ``max_compounds`` is judged on a random subset of that many compounds (with the likelihood scaled up
    to the screen, as in training). Returns ``{"k": ..., "verdict": ..., "num_particles": ..., "n_compounds": ...}``:
    k < 0.5, the guide is close to the posterior; 0.5 to 0.7, usable for means but its intervals may be
    off; above 0.7, the guide is far from the posterior: check against :func:`delpyro.run_nuts` on a
    subset, or use a richer guide. ``cache_dir``: where fingerprints are cached.
    """
    import arviz as az

    model = result.model
    rng = np.random.default_rng(seed)
    n = data.n_compounds
    index = np.sort(rng.choice(n, max_compounds, replace=False)) if n > max_compounds else np.arange(n)
    arrays = model.encoding.encode(data.subset(index), cache_dir=cache_dir)  # only the compounds judged
    batch = next(iter(Minibatches(arrays, len(index), shuffle=False, device=model.device)))
    batch[INDEX] = torch.as_tensor(index, device=model.device)
    batch[SCREEN_SIZE] = n
    log_weights = np.empty(num_particles)
    with model.evaluating(), result.averaged(), torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(seed)
        for k in range(num_particles):
            guide_trace = poutine.trace(result.guide).get_trace(batch)
            model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(batch)
            log_weights[k] = float(model_trace.log_prob_sum() - guide_trace.log_prob_sum())
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

"""NUTS for models without networks: the check on variational fits.

:func:`run_nuts` samples the posterior of a model made only of latent terms (building blocks,
per-compound effects, intercepts) and latent globals by the No-U-Turn sampler, one chain after another,
and returns an :class:`~delpyro.results.MCMCResult`. It answers to ``predict``, ``global_sites``,
``sample_globals``, ``globals_summary`` and ``building_block_effects`` like a variational fit, so the two
can be compared site by site; ``diagnostics`` holds r_hat and the effective sample size of every latent site.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pyro
import torch
from pyro.infer import MCMC, NUTS
from pyro.ops.stats import effective_sample_size, split_gelman_rubin

from delpyro.batches import Minibatches
from delpyro.config import ModelConfig
from delpyro.data import DELData
from delpyro.distributions import NEGATIVE_BINOMIAL, ZERO_INFLATED
from delpyro.encoding import Encoding
from delpyro.model import DELModel
from delpyro.results import MCMCResult
from delpyro.widgets import TrainingMonitor, Words

__all__ = ["run_nuts"]


def _check_config(config: ModelConfig) -> None:
    terms = config.terms or ()
    networks = {"fingerprint", "poses"} & set(terms)
    if not terms or networks:
        raise ValueError(
            "run_nuts samples models without networks: choose terms from 'building_blocks' and 'compound' "
            f"(got {terms or 'the default network terms'})"
        )
    if config.likelihood in ZERO_INFLATED and config.gates == "learned":
        raise ValueError("run_nuts needs every global latent or fixed: use gates='latent' or 'fixed'")
    if config.likelihood in NEGATIVE_BINOMIAL and config.concentration != "latent":
        raise ValueError("run_nuts needs every global latent: use concentration='latent'")


def run_nuts(
    data: DELData,
    config: ModelConfig | None = None,
    num_samples: int = 500,
    num_warmup: int = 500,
    num_chains: int = 2,
    seed: int = 0,
    *,
    target_accept_prob: float = 0.8,
    max_tree_depth: int = 8,
    full_mass: bool = False,
    jit_compile: bool = True,
    progress: str | bool = "auto",
) -> MCMCResult:
    """Sample a network-free model's posterior by NUTS on a small library, chain after chain.

    Args:
        data: the screen (all of it is used: no subsampling).
        config: a :class:`ModelConfig` whose terms come from "building_blocks" and "compound", with every
            global latent (``gates="latent"`` or "fixed", ``concentration="latent"``); by default the
            building-block model with per-compound effects and a latent-global ZINB.
        num_samples, num_warmup, num_chains: per chain; chains start from different seeds.
        target_accept_prob, max_tree_depth: NUTS's step-size target and the cap on its trajectory (2**depth
            steps per draw).
        full_mass: adapt a dense mass matrix (helps strongly correlated posteriors; costs O(d^2) per step).
        jit_compile: trace the potential once with the PyTorch JIT (several times faster on small models).
        progress: the display, as ``fit``'s (:class:`~delpyro.widgets.TrainingMonitor`): "auto" (a live
            widget in JupyterLab, text lines elsewhere), "widget", "text" or "none" (True and False mean
            "auto" and "none"). It shows chain and draw, draws/s and time left, each chain's mean potential
            energy per compound, step size and acceptance rate. Stop ends sampling after the chain under
            way (at least one chain is kept).

    Returns an :class:`MCMCResult`; ``diagnostics`` has one row per latent site: the largest split r_hat
    and the smallest effective sample size over its elements.
    """
    config = config or ModelConfig(
        terms=("building_blocks", "compound"),
        likelihood="zinb",
        gates="latent",
        concentration="latent",
        matrix_shift="latent",
    )
    _check_config(config)
    encoding = Encoding.fit(data, config)
    model = DELModel(config, encoding)
    if model.uses_matrix_shift and config.matrix_shift == "learned":
        raise ValueError("run_nuts needs every global latent: use matrix_shift='latent' or 'none'")
    batch = next(iter(Minibatches(encoding.encode(data), data.n_compounds, shuffle=False)))
    chains: list[dict[str, torch.Tensor]] = []
    monitor = TrainingMonitor(
        num_chains,
        num_warmup + num_samples,
        mode={True: "auto", False: "none"}.get(progress, progress),  # type: ignore[arg-type]
        words=Words(
            run="sampling",
            period="chain",
            unit="draw",
            quantity="potential energy per compound",
            loss="energy",
            validation=None,
            running="energy",
        ),
    )
    with model.param_scope(), monitor:
        for chain in range(num_chains):
            pyro.set_rng_seed(seed * 1000 + chain)
            kernel = NUTS(
                model,
                target_accept_prob=target_accept_prob,
                max_tree_depth=max_tree_depth,
                full_mass=full_mass,
                jit_compile=jit_compile,
                ignore_jit_warnings=True,
            )
            state: dict[str, float] = {}
            mcmc = MCMC(
                kernel,
                num_samples=num_samples,
                warmup_steps=num_warmup,
                disable_progbar=True,
                hook_fn=_shown(monitor, chain + 1, num_warmup, data.n_compounds, state),
            )
            mcmc.run(batch)
            chains.append({k: v.detach() for k, v in mcmc.get_samples().items()})
            monitor.epoch(epoch=chain + 1, step_size=state["step size"], accept_prob=state["acc. prob"])
            if monitor.stop_requested:
                num_chains = len(chains)
                break
    samples = {name: torch.stack([c[name] for c in chains]) for name in chains[0]}
    rows = []
    for name, values in model.named_globals(samples).items():  # building-block sites by arm and family
        flat = values.reshape(num_chains, num_samples, -1).double()
        r_hat = split_gelman_rubin(flat, chain_dim=0, sample_dim=1) if num_chains > 1 else torch.full((1,), math.nan)
        ess = effective_sample_size(flat, chain_dim=0, sample_dim=1)
        rows.append(
            {"site": name, "elements": flat.shape[-1], "max_r_hat": float(r_hat.max()), "min_ess": float(ess.min())}
        )
    return MCMCResult(config=config, model=model, samples=samples, diagnostics=pd.DataFrame(rows), seed=seed)


def _shown(monitor: TrainingMonitor, chain: int, num_warmup: int, n_compounds: int, state: dict[str, float]) -> Any:
    """Pyro's per-draw hook feeding ``monitor``: the draw's number in its chain (warmup first) and its
    potential energy per compound; ``state`` keeps the kernel's step size and mean acceptance rate as of
    the last draw (the kernel resets them when the chain ends)."""

    def hook(kernel: Any, params: Any, stage: str, i: int) -> None:
        state.update(kernel.logging())
        energy = getattr(kernel, "_potential_energy_last", None)
        draw = i + 1 + (0 if stage.startswith("Warmup") else num_warmup)
        monitor.step(None if energy is None else float(energy) / n_compounds, epoch=chain, step=draw)

    return hook

"""delpyro: Bayesian models of DNA-encoded library (DEL) screens in Pyro.

The public API, re-exported from the modules that define it.
"""

from delpyro.data import DELData, DELDataError, Minibatches, read_counts, split
from delpyro.features import fingerprints, molecular_weight, unpack_bits
from delpyro.infer import (
    FitResult,
    NonFiniteLossError,
    eval_step,
    fit,
    load,
    make_guide,
    make_optim,
    make_svi,
    train_step,
)
from delpyro.mcmc import MCMCResult, run_nuts
from delpyro.model import DELModel, ModelConfig
from delpyro.posterior import building_block_baseline, naive_enrichment, predict, truth_on_model_scale
from delpyro.simulate import simulate_del

__all__ = [
    "DELData",
    "DELDataError",
    "DELModel",
    "FitResult",
    "MCMCResult",
    "Minibatches",
    "ModelConfig",
    "NonFiniteLossError",
    "building_block_baseline",
    "eval_step",
    "fingerprints",
    "fit",
    "load",
    "make_guide",
    "make_optim",
    "make_svi",
    "molecular_weight",
    "naive_enrichment",
    "predict",
    "read_counts",
    "run_nuts",
    "simulate_del",
    "split",
    "train_step",
    "truth_on_model_scale",
    "unpack_bits",
]

__version__ = "0.1.0"

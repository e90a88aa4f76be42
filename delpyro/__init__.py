"""delpyro: Bayesian models of DNA-encoded library (DEL) screens in Pyro.

The public API, re-exported from the modules that define it.
"""

from delpyro import plots
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
from delpyro.metrics import affinity_correlation, calibration, hit_recovery, ppc_statistics
from delpyro.model import DELModel, ModelConfig
from delpyro.posterior import (
    building_block_baseline,
    compare,
    guide_diagnostic,
    naive_enrichment,
    predict,
    to_inference_data,
    truth_on_model_scale,
)
from delpyro.simulate import simulate_del
from delpyro.widgets import TrainingMonitor

__all__ = [
    "DELData",
    "DELDataError",
    "DELModel",
    "FitResult",
    "MCMCResult",
    "Minibatches",
    "ModelConfig",
    "NonFiniteLossError",
    "TrainingMonitor",
    "affinity_correlation",
    "building_block_baseline",
    "calibration",
    "compare",
    "eval_step",
    "fingerprints",
    "fit",
    "guide_diagnostic",
    "hit_recovery",
    "load",
    "make_guide",
    "make_optim",
    "make_svi",
    "molecular_weight",
    "naive_enrichment",
    "plots",
    "ppc_statistics",
    "predict",
    "read_counts",
    "run_nuts",
    "simulate_del",
    "split",
    "to_inference_data",
    "train_step",
    "truth_on_model_scale",
    "unpack_bits",
]

__version__ = "0.1.0"

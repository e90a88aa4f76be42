"""delpyro: Bayesian models of DNA-encoded library (DEL) screens in Pyro.

The public API, re-exported from the modules that define it. Importing it starts torch's CPU threads
flushing subnormal floats to zero (:func:`delpyro.workers.start_threads_flushing`): before anything else,
so that no import has started them first.
"""

from delpyro import workers

workers.start_threads_flushing()

# ruff: noqa: E402 (the threads are started before the other imports)
from delpyro import datasets, plots
from delpyro.baselines import building_block_baseline, deseq2_enrichment, naive_enrichment
from delpyro.batches import Minibatches
from delpyro.choice import TermChoice, choose_terms
from delpyro.config import ModelConfig
from delpyro.data import DELData, DELDataError
from delpyro.diagnostics import compare, guide_diagnostic, to_inference_data
from delpyro.encoding import Encoding
from delpyro.features import fingerprints, molecular_weight, unpack_bits
from delpyro.guides import make_guide
from delpyro.hits import HitCalls, call_hits
from delpyro.mcmc import run_nuts
from delpyro.metrics import affinity_correlation, calibration, hit_recovery, ppc_statistics
from delpyro.model import DELModel
from delpyro.optim import make_optim
from delpyro.posterior import enrichment_draws, predict, truth_on_model_scale
from delpyro.predictions import write_predictions
from delpyro.reading import read_counts
from delpyro.results import FitResult, MCMCResult, load
from delpyro.selections import read_delt, read_selections, write_delt
from delpyro.selectivity import Selectivity, building_block_selectivity, selectivity
from delpyro.simulate import simulate_del
from delpyro.simulate_targets import simulate_targets, true_selectivity
from delpyro.splits import split
from delpyro.steps import NonFiniteLossError, eval_step, make_svi, train_step
from delpyro.targets import join_targets, split_targets
from delpyro.train import fit
from delpyro.widgets import TrainingMonitor

__all__ = [
    "DELData",
    "DELDataError",
    "DELModel",
    "Encoding",
    "FitResult",
    "HitCalls",
    "MCMCResult",
    "Minibatches",
    "ModelConfig",
    "NonFiniteLossError",
    "Selectivity",
    "TermChoice",
    "TrainingMonitor",
    "affinity_correlation",
    "building_block_baseline",
    "building_block_selectivity",
    "calibration",
    "call_hits",
    "choose_terms",
    "compare",
    "datasets",
    "deseq2_enrichment",
    "enrichment_draws",
    "eval_step",
    "fingerprints",
    "fit",
    "guide_diagnostic",
    "hit_recovery",
    "join_targets",
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
    "read_delt",
    "read_selections",
    "run_nuts",
    "selectivity",
    "simulate_del",
    "simulate_targets",
    "split",
    "split_targets",
    "to_inference_data",
    "train_step",
    "true_selectivity",
    "truth_on_model_scale",
    "unpack_bits",
    "write_delt",
    "write_predictions",
]

__version__ = "0.1.0"

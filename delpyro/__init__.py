"""delpyro: Bayesian models of DNA-encoded library (DEL) screens in Pyro.

The public API, re-exported from the modules that define it.
"""

from delpyro.data import DELData, DELDataError, Minibatches, read_counts, split
from delpyro.features import fingerprints, molecular_weight, unpack_bits
from delpyro.simulate import simulate_del

__all__ = [
    "DELData",
    "DELDataError",
    "Minibatches",
    "fingerprints",
    "molecular_weight",
    "read_counts",
    "simulate_del",
    "split",
    "unpack_bits",
]

__version__ = "0.1.0"

"""Small configurations and helpers shared by the test modules, so that fits run in seconds."""

from __future__ import annotations

import pyro
import torch

from delpyro import FitResult, ModelConfig

# the network model of DEL-Dock's shape (point gates, ZIP), small
SMALL = {
    "terms": ("fingerprint", "poses"),
    "likelihood": "zip",
    "gates": "learned",
    "hidden_size": 16,
    "n_layers": 1,
    "fingerprint_bits": 256,
    "epochs": 6,
    "batch_size": 64,
    "lr": 3e-3,
}


def small(**overrides) -> ModelConfig:
    """A tiny network of DEL-Dock's shape, with any field overridden."""
    return ModelConfig(**{**SMALL, **overrides})


def params_of(result: FitResult) -> dict[str, torch.Tensor]:
    """Every parameter of a fit's store, copied."""
    with result.model.param_scope():
        return {k: v.detach().clone() for k, v in pyro.get_param_store().named_parameters()}

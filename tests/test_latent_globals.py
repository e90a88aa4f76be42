"""Latent globals of the observation model: priors, guide sites, and recovery of known values."""

from __future__ import annotations

import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoNormal
from pyro.optim import Adam

import delpyro
from delpyro import DELModel, Encoding, ModelConfig, fit, split
from delpyro.keys import CONTROL_COUNTS, INDEX, SCREEN_SIZE, TARGET_COUNTS


def test_gates_and_concentrations_are_recovered_from_counts_with_known_rates() -> None:
    """Counts drawn from ZINB with known rates: the posterior of each arm's gate and concentration
    covers the value that made them. The model is the real one with oracle enrichments (intercepts and
    per-compound effects conditioned on the truth), so only the globals are unknown."""
    rng = np.random.default_rng(0)
    n = 4000
    log_matrix = rng.normal(0.0, 0.5, n)
    log_target = rng.normal(0.5, 1.0, n)
    depth_target, depth_control = np.log([3.0, 2.0]), np.log([2.5])
    truth = {"control_gate": 0.15, "target_gate": 0.35, "control_concentration": 4.0, "target_concentration": 2.0}

    def draw(log_rate: np.ndarray, gate: float, concentration: float) -> torch.Tensor:
        mean = np.exp(log_rate)
        counts = rng.poisson(rng.gamma(concentration, mean / concentration))
        counts[rng.random(counts.shape) < gate] = 0
        return torch.tensor(counts, dtype=torch.float32)

    control = draw(log_matrix[:, None] + depth_control, 0.15, 4.0)
    target = draw(np.logaddexp(log_matrix, log_target)[:, None] + depth_target, 0.35, 2.0)
    config = ModelConfig(terms=("compound",), likelihood="zinb", gates="latent", concentration="latent",
                         nb_concentration=5.0, matrix_shift="none", combine="additive")  # fmt: skip
    encoding = Encoding(
        terms=("compound",),
        target_names=["r1", "r2"],
        control_names=["r1"],
        log_depth_target=list(depth_target),
        log_depth_control=list(depth_control),
        training_ids=[str(i) for i in range(n)],
    )
    model = DELModel(config, encoding)
    batch = {INDEX: torch.arange(n), SCREEN_SIZE: n, TARGET_COUNTS: target, CONTROL_COUNTS: control}
    effect = torch.tensor(np.stack([log_target + log_matrix, log_matrix], -1), dtype=torch.float32)
    oracle = {"target_intercept": torch.tensor(0.0), "matrix_intercept": torch.tensor(0.0), "compound_effect": effect}
    conditioned = poutine.condition(model, data=oracle)
    pyro.set_rng_seed(0)
    with model.param_scope():
        guide = AutoNormal(conditioned)
        svi = SVI(conditioned, guide, Adam({"lr": 0.05}), Trace_ELBO())
        for _ in range(600):
            svi.step(batch)
        draws = {name: [] for name in truth}
        with torch.no_grad():
            for _ in range(400):
                trace = poutine.trace(guide).get_trace(batch)
                for name in truth:
                    draws[name].append(float(trace.nodes[name]["value"]))
    for name, value in truth.items():
        mean, sd = np.mean(draws[name]), np.std(draws[name])
        print(f"{name}: truth {value}, posterior {mean:.3f} +- {sd:.3f}")
        assert sd > 0
        assert abs(mean - value) < 3 * sd + 0.05 * value, name


def test_latent_globals_in_a_fitted_model() -> None:
    data = delpyro.simulate_del(seed=3, n_per_cycle=(8, 6, 5))
    train, val, _ = split(data, seed=0)
    config = ModelConfig(
        terms=("fingerprint",),
        hidden_size=16,
        n_layers=1,
        fingerprint_bits=256,
        epochs=3,
        likelihood="zinb",
        gates="latent",
        concentration="latent",
        depth_deviation=0.1,
        matrix_shift="latent",
        combine="additive",  # the matrix shift is the additive combine's
    )
    result = fit(train, val, config, progress="none")
    assert sorted(result.global_sites()) == sorted(
        [
            "control_gate",
            "target_gate",
            "control_concentration",
            "target_concentration",
            "control_depth_deviation",
            "target_depth_deviation",
            "target_matrix_shift",
        ]
    )
    summary = result.globals_summary(num_samples=300)
    gates = summary[summary["site"].str.endswith("_gate")]
    assert ((gates["q05"] > 0) & (gates["q95"] < 1) & (gates["sd"] > 0)).all()
    assert (summary[summary["site"].str.endswith("_concentration")]["q05"] > 0).all()
    deviations = summary[summary["site"] == "target_depth_deviation"]
    assert deviations["element"].tolist() == [0, 1, 2]
    again = result.globals_summary(num_samples=300)
    assert summary.equals(again)  # seeded draws
    with result.model.param_scope():
        names = [name for name, _ in pyro.get_param_store().named_parameters()]
    assert any(name.startswith("AutoNormal.locs.target_gate") for name in names)
    assert not any(name.endswith(("_gate_logits", "_log_concentration")) for name in names)  # latent, not points


def test_checkpoint_keeps_the_posterior_of_the_globals(tmp_path) -> None:
    data = delpyro.simulate_del(seed=4, n_per_cycle=(6, 5, 5))
    config = ModelConfig(
        hidden_size=16,
        n_layers=1,
        fingerprint_bits=256,
        epochs=2,
        likelihood="zinb",
        gates="latent",
        concentration="latent",
    )
    result = fit(data, None, config, progress="none")
    loaded = delpyro.load(result.save(tmp_path / "fit.pt"))
    assert loaded.globals_summary(num_samples=200).equals(result.globals_summary(num_samples=200))
    assert loaded.predict(data).equals(result.predict(data))

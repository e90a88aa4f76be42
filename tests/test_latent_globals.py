"""Latent globals of the observation model: priors, guide sites, and recovery of known values."""

from __future__ import annotations

import numpy as np
import pyro
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoNormal
from pyro.optim import Adam

import delpyro
from delpyro import ModelConfig, fit, split
from delpyro.observation import Observation


def test_gates_and_concentrations_are_recovered_from_counts_with_known_rates() -> None:
    """Counts drawn from ZINB with known rates: the posterior of each arm's gate and concentration
    covers the value that made them (oracle enrichments, so only the globals are unknown)."""
    rng = np.random.default_rng(0)
    n = 4000
    log_matrix = torch.tensor(rng.normal(0.0, 0.5, n), dtype=torch.float32)
    log_target = torch.tensor(rng.normal(0.5, 1.0, n), dtype=torch.float32)
    depth_target, depth_control = np.log([3.0, 2.0]), np.log([2.5])
    truth = {"control_gate": 0.15, "target_gate": 0.35, "control_concentration": 4.0, "target_concentration": 2.0}

    def draw(log_rate: torch.Tensor, gate: float, concentration: float) -> torch.Tensor:
        mean = log_rate.exp().numpy()
        counts = rng.poisson(rng.gamma(concentration, mean / concentration))
        counts[rng.random(counts.shape) < gate] = 0
        return torch.tensor(counts, dtype=torch.float32)

    control = draw(log_matrix[:, None] + torch.tensor(depth_control, dtype=torch.float32), 0.15, 4.0)
    target = draw(
        torch.logaddexp(log_matrix, log_target)[:, None] + torch.tensor(depth_target, dtype=torch.float32), 0.35, 2.0
    )
    observation = Observation(
        "zinb", "additive", "global", 0.5, 0.5, depth_target, depth_control, 5.0, concentration="latent"
    )
    batch = {"target_counts": target, "control_counts": control}

    def model() -> None:
        plates = observation.replicate_plates()
        values = observation.sample_globals(plates)
        with pyro.plate("compounds", n, dim=-2):
            observation(log_target, log_matrix, None, batch, values, plates)

    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    guide = AutoNormal(model)
    svi = SVI(model, guide, Adam({"lr": 0.05}), Trace_ELBO())
    for _ in range(600):
        svi.step()
    draws = {name: [] for name in truth}
    with torch.no_grad():
        for _ in range(400):
            trace = pyro.poutine.trace(guide).get_trace()
            for name in truth:
                draws[name].append(float(trace.nodes[name]["value"]))
    pyro.clear_param_store()
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
        n_blocks=1,
        fingerprint_bits=256,
        epochs=3,
        likelihood="zinb",
        gates="global",
        concentration="latent",
        depth_deviation=0.1,
        matrix_shift="latent",
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
    assert not any(name.startswith("observation.") for name in names)  # latent, not point estimates


def test_global_gate_priors_are_validated() -> None:
    with pytest.raises(ValueError, match="gates"):
        Observation("zip", "additive", "nope", 0.5, 0.5, np.zeros(1), np.zeros(1), 5.0)
    with pytest.raises(ValueError, match="concentration"):
        Observation("nb", "additive", "fixed", 0.5, 0.5, np.zeros(1), np.zeros(1), 5.0, concentration="nope")


def test_checkpoint_keeps_the_posterior_of_the_globals(tmp_path) -> None:
    data = delpyro.simulate_del(seed=4, n_per_cycle=(6, 5, 5))
    config = ModelConfig(
        hidden_size=16,
        n_blocks=1,
        fingerprint_bits=256,
        epochs=2,
        likelihood="zinb",
        gates="global",
        concentration="latent",
    )
    result = fit(data, None, config, progress="none")
    loaded = delpyro.load(result.save(tmp_path / "fit.pt"))
    assert loaded.globals_summary(num_samples=200).equals(result.globals_summary(num_samples=200))
    assert loaded.predict(data).equals(result.predict(data))


def test_per_compound_gates_come_from_the_network() -> None:
    data = delpyro.simulate_del(seed=2, n_per_cycle=(6, 5, 5))
    config = ModelConfig(
        hidden_size=16, n_blocks=1, fingerprint_bits=256, epochs=3, likelihood="zip", gates="per_compound"
    )
    result = fit(data, None, config, progress="none")
    assert np.isfinite(result.history["train_loss"]).all()
    model = result.model
    batch = next(iter(delpyro.Minibatches(model.arrays(data), 40, shuffle=False)))
    with model.param_scope(), torch.no_grad():
        trace = pyro.poutine.trace(model).get_trace(batch)
    for arm in ("control", "target"):
        logits = trace.nodes[f"{arm}_counts"]["fn"].gate_logits
        assert logits.shape == (40, data.n_target_replicates if arm == "target" else data.n_control_replicates)
        assert logits[:, 0].std() > 0  # each compound has its own gate
    with pytest.raises(ValueError, match="per_compound"):
        delpyro.DELModel(ModelConfig(terms=("compound",), gates="per_compound"), data)

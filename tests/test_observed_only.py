"""Tables that list only the members with reads: the zero-truncated likelihood (``observed_only``)."""

from __future__ import annotations

import math

import numpy as np
import pyro
import pytest
import torch
from scipy import stats
from scipy.stats import spearmanr

import delpyro
from delpyro import DELModel, Encoding, ModelConfig, fit, split
from delpyro.keys import INDEX, SCREEN_SIZE, TARGET_COUNTS


def test_the_truncation_factor_is_one_over_the_probability_of_a_read() -> None:
    """Without per-compound effects the factor is exact: -log(1 - prod_r P(y_r = 0)), checked against scipy
    for a ZIP arm of three replicates."""
    encoding = Encoding(
        terms=("building_blocks",),
        target_names=["r1", "r2", "r3"],
        control_names=[],
        log_depth_target=list(np.log([0.5, 1.0, 2.0])),
        log_depth_control=[],
        bb_vocabulary={"c1": ["a", "b"]},
        pair_keys={},
    )
    config = ModelConfig(terms=("building_blocks",), likelihood="zip", gates="fixed", target_gate=0.3,
                         observed_only="target")  # fmt: skip
    model = DELModel(config, encoding)
    batch = {
        INDEX: torch.arange(2),
        SCREEN_SIZE: 2,
        "building_block_codes": torch.tensor([[0], [1]]),
        TARGET_COUNTS: torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 4.0]]),
    }
    values = {"target_intercept": torch.tensor(-1.0), "bb_scale": torch.tensor([[0.5]]),
              "bb_z": torch.tensor([[1.0, -1.0, 0.0]])}  # fmt: skip
    with model.param_scope():
        trace = pyro.poutine.trace(pyro.poutine.condition(model, data=values)).get_trace(batch)
    trace.compute_log_prob()
    log_t = -1.0 + 0.5 * np.array([1.0, -1.0])  # centred block effects: +-0.5 * (z - mean) = +-0.5
    expected = []
    for i in range(2):
        rates = np.exp(log_t[i]) * np.array([0.5, 1.0, 2.0])
        p_zero = 0.3 + 0.7 * stats.poisson.pmf(0, rates)
        expected.append(-math.log(1 - np.prod(p_zero)))
    np.testing.assert_allclose(trace.nodes["observed_only"]["log_prob"].detach().numpy().ravel(), expected, rtol=1e-5)


@pytest.mark.parametrize("likelihood", ["zip", "nb", "zinb", "poisson"])
def test_every_likelihood_and_arm_can_be_truncated(likelihood) -> None:
    data = delpyro.simulate_del(seed=2, n_per_cycle=(4, 4, 3), reads_per_compound=0.5)
    listed = data.subset((data.target_counts.sum(1) + data.control_counts.sum(1)) > 0)
    for which in ("target", "any"):
        config = ModelConfig(terms=("building_blocks", "compound"), likelihood=likelihood, epochs=3,
                             observed_only=which)  # fmt: skip
        result = fit(listed, None, config, progress="none")
        assert np.isfinite(result.history["train_loss"]).all()
        assert np.isfinite(result.predict(data, num_samples=20)["log_enrichment_mean"]).all()


def test_the_truncated_model_undoes_the_bias_of_fitting_listed_rows_as_the_library() -> None:
    """A screen with few reads, its all-zero rows dropped from training (what an observed-only table is):
    fitted as if they were the library, the zero-inflation gate is underestimated (the zeros that made it
    are gone) and the enrichments flatten; the truncated model gets the gate of the full-table fit back,
    flattens less (the slope of held-out predictions on the truth) and ranks held-out compounds as well as
    the full-table fit (within 0.05), each a mean over three seeds. The numbers are printed."""
    screen = delpyro.simulate_del(
        seed=0, n_per_cycle=(12, 12, 12), reads_per_compound=0.3, load_noise=0.15, combine="additive"
    )
    train, _, test = split(screen, "random", (0.8, 0.0, 0.2), seed=0)
    listed = train.subset(train.target_counts.sum(1) > 0)
    base = {"terms": ("building_blocks", "compound"), "epochs": 60, "combine": "additive"}
    truth = test.truth["log_target_enrichment"].to_numpy()
    results = {}
    for name, data, extra in (("full", train, {}), ("listed", listed, {}),
                              ("truncated", listed, {"observed_only": "target"})):  # fmt: skip
        rows = []
        for seed in range(3):
            result = fit(data, None, ModelConfig(**base, **extra), seed=seed, progress="none")
            prediction = result.predict(test, num_samples=100)["log_enrichment_mean"].to_numpy()
            gate = result.globals_summary(300).set_index("site").loc["target_gate", "mean"]
            rows.append((spearmanr(prediction, truth).statistic, gate, np.polyfit(truth, prediction, 1)[0]))
        results[name] = np.mean(rows, axis=0)
        print(f"{name}: held-out Spearman {results[name][0]:.3f}, target gate {results[name][1]:.3f}, "
              f"slope {results[name][2]:.2f} (mean of 3 seeds)")  # fmt: skip
    print(f"listed rows: {listed.n_compounds} of {train.n_compounds}")
    assert abs(results["truncated"][1] - results["full"][1]) < 0.06  # the gate comes back ...
    assert results["full"][1] - results["listed"][1] > 0.1  # ... which the plain fit of the listed rows lost
    assert results["truncated"][2] > results["listed"][2] + 0.02  # less flattened
    assert results["truncated"][0] > results["full"][0] - 0.05

"""ArviZ export, PSIS-LOO comparison and the guide diagnostic."""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest
import torch
from scipy.stats import poisson

import delpyro
from delpyro import ModelConfig, compare, fit, guide_diagnostic, run_nuts

BLOCKS = ("building_blocks", "compound")


@pytest.fixture(scope="module")
def screen() -> delpyro.DELData:
    return delpyro.simulate_del(seed=5, n_per_cycle=(5, 4, 4))


@pytest.fixture(scope="module")
def fitted(screen):
    config = ModelConfig(hidden_size=16, n_layers=1, fingerprint_bits=256, epochs=3, batch_size=32)
    return fit(screen, None, config, seed=0, progress="none")


def test_inference_data_has_every_group_dim_and_coord(fitted, screen, tmp_path) -> None:
    idata = fitted.to_inference_data(screen, num_samples=30, batch_size=29)
    assert set(idata.groups()) == {
        "posterior",
        "posterior_predictive",
        "log_likelihood",
        "observed_data",
        "constant_data",
    }
    posterior = idata.posterior
    assert (posterior.sizes["chain"], posterior.sizes["draw"]) == (1, 30)
    assert list(posterior["compound_id"].values) == list(screen.compound_id)
    for name in ("log_target_enrichment", "log_matrix_enrichment", "compound_target_effect", "compound_matrix_effect"):
        assert posterior[name].dims == ("chain", "draw", "compound_id")
    for name in ("control_gate", "target_gate", "control_concentration", "compound_scale"):
        assert posterior[name].dims == ("chain", "draw")
    cycle1 = sorted(set(screen.building_blocks["cycle1"]))
    assert list(posterior["cycle1_id"].values) == [*cycle1, "(unseen)"]
    assert posterior["bb_target_cycle1_effect"].dims == ("chain", "draw", "cycle1_id")
    # the exported effects are those of the exported posterior draws (scale x centred z), not fresh prior draws
    z = posterior["bb_target_cycle1"].values.reshape(30, -1)
    scale = posterior["bb_target_scale_cycle1"].values.reshape(30, 1)
    centred = np.concatenate([z[:, :-1] - z[:, :-1].mean(1, keepdims=True), z[:, -1:]], axis=1)
    np.testing.assert_allclose(posterior["bb_target_cycle1_effect"].values.reshape(30, -1), scale * centred, atol=1e-5)
    pairs = posterior["cycle1+cycle2_id"].values
    assert all("+" in p for p in pairs[:-1]) and pairs[-1] == "(unseen)"
    observed = idata.observed_data
    assert observed["target_counts"].dims == ("compound_id", "target_replicate")
    np.testing.assert_array_equal(observed["target_counts"].values, screen.target_counts)
    np.testing.assert_array_equal(observed["control_counts"].values, screen.control_counts)
    assert list(observed["target_replicate"].values) == screen.target_names
    ppc = idata.posterior_predictive["target_counts"]
    assert ppc.shape == (1, 30, screen.n_compounds, screen.n_target_replicates)
    assert np.all(ppc.values >= 0) and np.all(ppc.values == np.round(ppc.values))
    assert idata.log_likelihood["counts"].dims == ("chain", "draw", "compound_id")
    np.testing.assert_allclose(idata.constant_data["log_depth_target"].values, fitted.model.encoding.log_depth_target)
    np.testing.assert_allclose(idata.constant_data["load"].values, screen.load)
    # the posterior mean of the log target enrichment agrees with predict's (independent draws)
    predicted = fitted.predict(screen, num_samples=200)["log_enrichment_mean"].to_numpy()
    exported = posterior["log_target_enrichment"].mean(("chain", "draw")).values
    assert np.corrcoef(predicted, exported)[0, 1] > 0.95
    loo = az.loo(idata)
    assert np.isfinite(loo.elpd_loo) and loo.n_data_points == screen.n_compounds
    # batched and whole: the same numbers (the draws are seeded per batch, so compare the globals)
    again = fitted.to_inference_data(screen, num_samples=30, batch_size=1000)
    np.testing.assert_array_equal(again.posterior["target_gate"].values, posterior["target_gate"].values)
    path = tmp_path / "fit.nc"
    idata.to_netcdf(str(path))
    loaded = az.from_netcdf(str(path))
    np.testing.assert_array_equal(loaded.log_likelihood["counts"].values, idata.log_likelihood["counts"].values)
    assert list(loaded.posterior["cycle1+cycle2_id"].values) == list(pairs)


def test_a_subset_of_compounds(fitted, screen) -> None:
    chosen = list(screen.compound_id[[3, 0, 7]])
    idata = fitted.to_inference_data(screen, num_samples=5, compounds=chosen)
    assert list(idata.posterior["compound_id"].values) == chosen
    np.testing.assert_array_equal(idata.observed_data["target_counts"].values, screen.target_counts[[3, 0, 7]])
    with pytest.raises(delpyro.DELDataError, match="compound_id"):
        fitted.to_inference_data(screen, num_samples=5, compounds=["nope"])


def test_pointwise_log_likelihood_equals_scipy() -> None:
    """Poisson reads, multiplicative selection, no load: every replicate's count is Poisson with log rate
    log m + log t + log depth (target) or log m + log depth (control)."""
    data = delpyro.simulate_del(seed=2, n_per_cycle=(3, 3, 3), nb_concentration=None, with_load=False)
    config = ModelConfig(terms=BLOCKS, likelihood="poisson", combine="multiplicative", epochs=2, batch_size=9)
    result = fit(data, None, config, progress="none")
    idata = result.to_inference_data(data, num_samples=4)
    post = idata.posterior
    encoding = result.model.encoding
    for draw in range(4):
        log_t = post["log_target_enrichment"].values[0, draw][:, None]
        log_m = post["log_matrix_enrichment"].values[0, draw][:, None]
        expected = poisson.logpmf(data.target_counts, np.exp(log_m + log_t + np.asarray(encoding.log_depth_target)))
        expected = expected.sum(1) + poisson.logpmf(
            data.control_counts, np.exp(log_m + np.asarray(encoding.log_depth_control))
        ).sum(1)
        np.testing.assert_allclose(idata.log_likelihood["counts"].values[0, draw], expected, rtol=1e-4, atol=1e-3)


def test_compare_ranks_the_true_likelihood_above_poisson() -> None:
    data = delpyro.simulate_del(seed=1, n_per_cycle=(6, 6, 5), reads_per_compound=2.0)
    fits = {
        name: fit(data, None, ModelConfig(terms=BLOCKS, likelihood=name, epochs=40, batch_size=60), progress="none")
        for name in ("zinb", "poisson")
    }
    table = compare(fits, data, num_samples=200)
    print(table[["rank", "elpd_loo", "p_loo", "elpd_diff", "dse"]])
    assert table.index[0] == "zinb"
    assert table.loc["poisson", "elpd_diff"] > 3 * table.loc["poisson", "dse"]


def test_nuts_chains_become_chains(screen) -> None:
    small = screen.subset(np.arange(30))
    torch.set_num_threads(2)
    result = run_nuts(small, num_samples=40, num_warmup=40, num_chains=2, seed=0)
    idata = result.to_inference_data(small, num_samples=20)
    assert (idata.posterior.sizes["chain"], idata.posterior.sizes["draw"]) == (2, 20)
    # the exported globals are the chains' own draws (thinned evenly)
    keep = np.unique(np.linspace(0, 39, 20).round().astype(int))
    np.testing.assert_allclose(
        idata.posterior["compound_scale"].values, result.samples["compound_scale"].numpy()[:, keep], rtol=1e-6
    )
    r_hat = az.rhat(idata, var_names=["compound_scale", "target_gate"])
    assert np.isfinite(float(r_hat["compound_scale"]))
    assert idata.attrs["inference"] == "nuts"


def test_guide_diagnostic_tells_a_fitted_guide_from_an_untrained_one(screen) -> None:
    small = screen.subset(np.arange(40))
    config = ModelConfig(terms=BLOCKS, likelihood="poisson", bb_pairs=False, batch_size=40)
    untrained = fit(small, None, config, epochs=1, progress="none")
    trained = fit(small, None, config, epochs=400, progress="none")
    before = guide_diagnostic(untrained, small, num_particles=200)
    after = guide_diagnostic(trained, small, num_particles=200)
    print(before["verdict"], after["verdict"], sep="\n")
    assert before["k"] > 0.7 and "far from the posterior" in before["verdict"]
    assert after["k"] < before["k"]
    assert after["n_compounds"] == 40

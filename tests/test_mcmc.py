"""NUTS machinery: samples stored per chain, the samples guide, summaries and diagnostics agree with them."""

from __future__ import annotations

import numpy as np
import pytest

import delpyro
from delpyro import ModelConfig, run_nuts


@pytest.fixture(scope="module")
def nuts():
    data = delpyro.simulate_del(seed=7, n_per_cycle=(2, 2, 2), reads_per_compound=3.0, n_control_replicates=0)
    config = ModelConfig(terms=("compound",), likelihood="poisson", compound_prior_scale=1.0)
    return data, run_nuts(data, config, num_samples=40, num_warmup=40, num_chains=2, seed=0, max_tree_depth=4)


def test_samples_and_diagnostics(nuts) -> None:
    data, result = nuts
    assert set(result.samples) == {"target_intercept", "compound_scale", "compound_effect"}
    assert result.samples["compound_effect"].shape == (2, 40, data.n_compounds, 1)
    assert result.samples["compound_scale"].shape == (2, 40)
    assert (result.samples["compound_scale"] > 0).all()
    diagnostics = result.diagnostics.set_index("site")
    assert diagnostics.loc["compound_effect", "elements"] == data.n_compounds
    assert np.isfinite(diagnostics["max_r_hat"]).all() and (diagnostics["min_ess"] > 0).all()
    assert sorted(result.global_sites()) == ["compound_scale", "target_intercept"]


def test_summaries_come_from_the_stored_samples(nuts) -> None:
    data, result = nuts
    summary = result.globals_summary(num_samples=4000).set_index("site")
    pooled = result.samples["compound_scale"].reshape(-1).double()
    assert summary.loc["compound_scale", "mean"] == pytest.approx(
        float(pooled.mean()), abs=4 * float(pooled.std()) / 60
    )
    prediction = result.predict(data, num_samples=2000)
    intercept = result.samples["target_intercept"].reshape(-1)
    effects = result.samples["compound_scale"].reshape(-1, 1) * result.samples["compound_effect"].reshape(80, -1)
    exact = (intercept[:, None] + effects).double().mean(0).numpy()
    spread = (intercept[:, None] + effects).double().std(0).numpy()
    assert np.all(np.abs(prediction["log_enrichment_mean"].to_numpy() - exact) < 4 * spread / np.sqrt(2000) + 1e-9)


def test_networks_and_point_estimates_are_refused() -> None:
    data = delpyro.simulate_del(seed=0, n_per_cycle=(2, 2, 2))
    with pytest.raises(ValueError, match="without networks"):
        run_nuts(data, ModelConfig(), num_samples=2, num_warmup=2)
    with pytest.raises(ValueError, match=r"gates='global'"):
        run_nuts(data, ModelConfig(terms=("compound",), likelihood="zip", gates="learned"))
    with pytest.raises(TypeError, match=r"torch\.save"):
        run_nuts(
            data, ModelConfig(terms=("compound",), likelihood="poisson"), num_samples=2, num_warmup=2, num_chains=1
        ).save("x.pt")

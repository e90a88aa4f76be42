"""NUTS machinery: samples stored per chain, the samples guide, summaries and diagnostics agree with them."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

import delpyro
from delpyro import ModelConfig, fit, run_nuts


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
    data = delpyro.simulate_del(seed=0, n_per_cycle=(2, 2, 2), load_noise=0.15)
    with pytest.raises(ValueError, match="without networks"):
        run_nuts(data, ModelConfig(), num_samples=2, num_warmup=2)
    with pytest.raises(ValueError, match=r"gates='latent'"):
        run_nuts(data, ModelConfig(terms=("compound",), likelihood="zip", gates="learned"))
    with pytest.raises(ValueError, match=r"matrix_shift='latent'"):
        config = ModelConfig(terms=("compound",), likelihood="poisson", combine="additive")
        run_nuts(data, config, num_samples=2, num_warmup=2)
    config = ModelConfig(terms=("compound",), likelihood="poisson", matrix_shift="none")
    with pytest.raises(TypeError, match=r"torch\.save"):
        run_nuts(data, config, num_samples=2, num_warmup=2, num_chains=1).save("x.pt")


def test_svi_and_nuts_agree_on_the_global_scales() -> None:
    """The building-block model with per-compound effects on a small library: NUTS converges (split r_hat
    < 1.05) and the mean-field and low-rank guides put every global scale within NUTS's posterior sd."""
    data = delpyro.simulate_del(
        seed=3,
        n_per_cycle=(4, 3, 3),
        reads_per_compound=5.0,
        n_control_replicates=0,
        pharmacophore_block_fraction=0.0,
        bb_effect_fraction=0.6,
        disynthon_fraction=0.0,
        target_noise=0.5,
        nb_concentration=None,
        target_gate=0.0,
        combine="additive",
        load_noise=0.15,
    )
    config = ModelConfig(
        terms=("building_blocks", "compound"),
        likelihood="poisson",
        bb_pairs=False,
        batch_size=data.n_compounds,
        lr=0.02,
        epochs=1000,
        ema_decay=None,
    )
    # three blocks in a cycle make a funnel of that cycle's scale: smaller steps (target acceptance 0.95)
    # keep both chains in it (at 0.8 one chain stuck: split r_hat 1.24 for the cycle-3 scale)
    nuts = run_nuts(data, config, num_samples=150, num_warmup=150, num_chains=2, seed=0, target_accept_prob=0.95)
    print(nuts.diagnostics.to_string())
    assert (nuts.diagnostics["max_r_hat"] < 1.05).all()
    reference = nuts.globals_summary(300).set_index("site")
    scales = [site for site in reference.index if "scale" in site]
    assert len(scales) == 4
    for guide in ("auto_normal", "auto_lowrank"):
        svi = fit(data, None, dataclasses.replace(config, guide=guide), seed=0, progress="none")
        summary = svi.globals_summary(2000).set_index("site")
        for site in scales:
            gap = abs(summary.loc[site, "mean"] - reference.loc[site, "mean"])
            print(
                f"{guide:12s} {site:24s} SVI {summary.loc[site, 'mean']:.3f} +- {summary.loc[site, 'sd']:.3f}, "
                f"NUTS {reference.loc[site, 'mean']:.3f} +- {reference.loc[site, 'sd']:.3f}"
            )
            assert gap <= reference.loc[site, "sd"], (guide, site)


def test_sampling_shows_its_progress_and_stop_keeps_the_chains_done(capsys, monkeypatch) -> None:
    """run_nuts reports through fit's display: a line per chain with its draws, step size and acceptance
    rate; a Stop ends sampling after the chain under way and keeps the chains done."""
    import delpyro.mcmc

    data = delpyro.simulate_del(seed=7, n_per_cycle=(2, 2, 2), reads_per_compound=3.0, n_control_replicates=0)
    config = ModelConfig(terms=("compound",), likelihood="poisson", compound_prior_scale=1.0)
    run_nuts(data, config, num_samples=10, num_warmup=10, num_chains=2, max_tree_depth=3, progress="text")
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("chain ")]
    assert [line.split()[1] for line in lines] == ["1/2", "2/2"]
    assert all("step_size" in line and "accept_prob" in line and "draw 20" in line for line in lines)
    # the acceptance rate as of the chain's last draw (the kernel resets it to 0 when the chain ends)
    rates = [float(re.search(r"accept_prob (\S+)", line).group(1)) for line in lines]
    assert all(0 < rate <= 1 for rate in rates)

    monitors = []

    def capture(*args, **kwargs):
        monitors.append(delpyro.widgets.TrainingMonitor(*args, **kwargs))
        monitors[-1].request_stop()  # Stop clicked before the first chain ends
        return monitors[-1]

    monkeypatch.setattr(delpyro.mcmc, "TrainingMonitor", capture)
    result = run_nuts(data, config, num_samples=10, num_warmup=10, num_chains=3, max_tree_depth=3, progress="none")
    assert result.samples["compound_effect"].shape[0] == 1 and monitors[0].steps == 20

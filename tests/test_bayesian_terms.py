"""Latent terms: hierarchical building-block effects, per-compound effects, and their posterior summaries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr

import delpyro
from delpyro import ModelConfig, fit, split
from tests.helpers import params_of

LATENT = {"likelihood": "zinb", "gates": "latent", "concentration": "latent", "batch_size": 128, "lr": 1e-2}


@pytest.fixture(scope="module")
def bb_screen() -> delpyro.DELData:
    """A screen whose target signal is building-block effects only."""
    return delpyro.simulate_del(
        seed=6,
        n_per_cycle=(10, 10, 8),
        pharmacophore_block_fraction=0.0,
        bb_effect_fraction=0.6,
        bb_effect_scale=1.5,
        disynthon_fraction=0.0,
        target_noise=0.2,
        reads_per_compound=1.0,
    )


@pytest.fixture(scope="module")
def bb_fit(bb_screen):
    config = ModelConfig(terms=("building_blocks", "compound"), epochs=30, **LATENT)
    return fit(bb_screen, None, config, seed=0, progress="none")


def test_recovered_building_block_effects_follow_the_truth(bb_fit, bb_screen) -> None:
    effects = bb_fit.building_block_effects("target")
    truth = bb_screen.attrs["bb_target_effects"]
    effects["truth"] = [truth[c][b] for c, b in zip(effects["cycle"], effects["building_block"], strict=True)]
    assert len(effects) == 28 and (effects["sd"] > 0).all()
    rho = spearmanr(effects["mean"], effects["truth"]).statistic
    print(f"building-block effects, Spearman with the truth: {rho:.3f}")
    assert rho >= 0.8
    inside = ((effects["q05"] <= effects["mean"]) & (effects["mean"] <= effects["q95"])).all()
    assert inside


def test_latent_terms_and_intercepts(bb_fit) -> None:
    model = bb_fit.model
    assert model.latent_terms == ("intercept", "building_blocks", "compound")
    sites = bb_fit.global_sites()
    assert {"target_intercept", "matrix_intercept", "compound_scale", "bb_scale", "bb_z", "bb_pair_z"} <= set(sites)
    assert "compound_effect" not in sites
    # the summaries see the three building-block sites split by arm and family, element for element
    term = model.building_blocks
    raw = bb_fit.sample_sites(7, seed=3)
    named = bb_fit.sample_globals(7, seed=3)
    families = [name for name, _ in term.families]
    assert families == ["cycle1", "cycle2", "cycle3", "cycle1+cycle2", "cycle1+cycle3", "cycle2+cycle3"]
    assert raw["bb_scale"].shape == (7, 2, 6) and raw["bb_z"].shape == (7, 2, term.n_cycle_slots)
    assert raw["bb_pair_z"].shape == (7, term.n_pair_slots, 2)  # every pair slot, drawn for the summaries
    for a, arm in enumerate(("target", "matrix")):
        start = {"bb_z": 0, "bb_pair_z": 0}
        for k, (name, size) in enumerate(term.families):
            np.testing.assert_array_equal(named[f"bb_{arm}_scale_{name}"], raw["bb_scale"][:, a, k])
            site = "bb_z" if k < 3 else "bb_pair_z"
            at = start[site]
            value = raw["bb_z"][:, a, at : at + size] if k < 3 else raw["bb_pair_z"][:, at : at + size, a]
            np.testing.assert_array_equal(named[f"bb_{arm}_{name}"], value)
            start[site] += size
    assert "bb_scale" not in named and "bb_matrix_cycle2+cycle3" in named


def test_building_block_sum_equals_each_familys_effects_looked_up_one_by_one(bb_fit, bb_screen) -> None:
    """The term gathers every family's effect at once from the concatenated slots; the same sum family by
    family, from the per-family effects and each compound's code in that family, must agree."""
    model = bb_fit.model
    term = model.building_blocks
    arrays = model.encoding.encode(bb_screen.subset(np.arange(300)))
    codes = torch.as_tensor(arrays["building_block_codes"])
    torch.manual_seed(0)
    scale = torch.rand(2, len(term.families)) + 0.5
    z = torch.randn(2, term.n_cycle_slots)
    pair_z = torch.randn(term.n_pair_slots, 2)
    effects = term.effects(scale, z)
    output = term(scale, effects, codes, pair_z, term.pair_slots(codes))
    named = {**term.named(effects, "effect"), **term.named(term.pair_effects(scale, pair_z), "pair_effect")}
    for arm, got in output.items():
        expected = torch.zeros(len(codes))
        for k, (name, _) in enumerate(term.families):
            expected += named[f"bb_{arm}_{name}_effect"][codes[:, k]]
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
        # and each family's effects are centred over its seen slots, as family_effects makes them
        for name, _ in term.families[:3]:
            assert abs(float(named[f"bb_{arm}_{name}_effect"][:-1].sum())) < 1e-4


@pytest.fixture(scope="module")
def deep_screen() -> delpyro.DELData:
    """Deeply sequenced, target only, Poisson: every compound's own reads say where its effect lies."""
    return delpyro.simulate_del(
        seed=6,
        n_per_cycle=(6, 6, 6),
        combine="additive",  # the truth below is the additive arm
        load_noise=0.15,
        n_control_replicates=0,
        reads_per_compound=20.0,
        nb_concentration=None,
        target_gate=0.0,
        pharmacophore_block_fraction=0.0,
        bb_effect_fraction=0.6,
        disynthon_fraction=0.0,
        target_noise=0.5,
        load_reads_per_compound=3000.0,
    )


@pytest.mark.parametrize("batch_size", [64, 216])  # minibatches, and every compound at once (shuffled)
def test_screened_compounds_get_their_own_posterior_and_new_ones_the_prior(deep_screen, batch_size) -> None:
    config = ModelConfig(
        terms=("building_blocks", "compound"), likelihood="poisson", bb_pairs=False, lr=0.02, ema_decay=None
    )
    result = fit(deep_screen, None, config, epochs=2400 // (216 // batch_size), batch_size=batch_size, progress="none")
    assert params_of(result)["AutoNormal.locs.compound_effect"].shape == (deep_screen.n_compounds, 1)  # one each
    screened = result.predict(deep_screen, num_samples=200)
    renamed = deep_screen.subset(np.arange(deep_screen.n_compounds))
    renamed.compound_id = np.array([f"new-{c}" for c in renamed.compound_id], dtype=object)
    unscreened = result.predict(renamed, num_samples=200)
    assert (screened["log_enrichment_sd"] > 0).all()
    # a compound never screened keeps the prior of its own effect, centred where its blocks put it; a
    # screened compound's own reads move and narrow it, towards its own true deviation
    assert screened["log_enrichment_sd"].mean() < 0.7 * unscreened["log_enrichment_sd"].mean()
    # without controls the target arm sees bead binding and load too: the truth is the whole arm's log rate
    truth = deep_screen.truth
    arm = np.logaddexp(truth["log_matrix_enrichment"], truth["log_target_enrichment"]) + np.log(truth["load"])
    arm = arm - np.log(deep_screen.load + 0.5)  # what the load offset leaves
    own = spearmanr(screened["log_enrichment_mean"], arm).statistic
    blocks_only = spearmanr(unscreened["log_enrichment_mean"], arm).statistic
    sigma = result.globals_summary(500).set_index("site").loc["compound_scale", "mean"]
    print(f"batch {batch_size}: Spearman with the true log rate {own:.3f} (blocks alone {blocks_only:.3f})")
    print(f"batch {batch_size}: per-compound scale {sigma:.3f}")
    assert own > 0.9 and own > blocks_only + 0.1
    assert sigma > 0.15
    ordered = (screened["log_enrichment_q05"] <= screened["log_enrichment_q25"]) & (
        screened["log_enrichment_q25"] <= screened["log_enrichment_q50"]
    )
    assert ordered.all()


def test_predict_is_seeded_and_p_enriched_uses_the_same_draws(bb_fit, bb_screen) -> None:
    data = bb_screen.subset(np.arange(150))
    first = bb_fit.predict(data, num_samples=60, batch_size=40)
    again = bb_fit.predict(data, num_samples=60, batch_size=40)
    assert first.equals(again)
    assert ((first["p_enriched"] >= 0) & (first["p_enriched"] <= 1)).all()
    assert 0 < first["p_enriched"].mean() < 1
    explicit = bb_fit.predict(data, num_samples=60, batch_size=40, threshold=first.attrs["threshold"])
    assert np.array_equal(explicit["p_enriched"], first["p_enriched"])
    assert first.attrs["threshold"] == pytest.approx(np.median(first["log_enrichment_mean"]) + np.log(2))


def test_checkpoint_round_trip_with_latent_terms(bb_fit, bb_screen, tmp_path) -> None:
    loaded = delpyro.load(bb_fit.save(tmp_path / "bb.pt"))
    data = bb_screen.subset(np.arange(50))
    assert loaded.predict(data, num_samples=30).equals(bb_fit.predict(data, num_samples=30))
    assert loaded.building_block_effects().equals(bb_fit.building_block_effects())


def test_building_block_term_without_block_ids_fails_clearly() -> None:
    table = pd.DataFrame({"smiles": ["CCO", "CCN", "CCC"], "t": [1, 0, 3], "c": [0, 1, 0]})
    data = delpyro.read_counts(table, target="t", control="c")
    with pytest.raises(delpyro.DELDataError, match="'building_blocks' term needs building-block id columns"):
        fit(data, None, ModelConfig(terms=("building_blocks",), epochs=1), progress="none")


def test_low_rank_guide_with_per_compound_effects(tmp_path) -> None:
    data = delpyro.simulate_del(seed=6, n_per_cycle=(6, 5, 5))
    config = ModelConfig(terms=("building_blocks", "compound"), guide="auto_lowrank", epochs=4, **LATENT)
    result = fit(data, None, config, progress="none")
    losses = result.history["train_loss"].to_numpy()
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    parts = [type(part).__name__ for part in result.guide]
    assert parts == ["AutoLowRankMultivariateNormal", "RowAutoNormal"]
    prediction = result.predict(data, num_samples=30)
    assert (prediction["log_enrichment_sd"] > 0).all()
    loaded = delpyro.load(result.save(tmp_path / "lowrank.pt"))
    assert loaded.predict(data, num_samples=30).equals(prediction)


def test_posterior_intervals_are_calibrated() -> None:
    """On a screen whose structure the model shares (block effects, per-compound deviations on both arms,
    multiplicative selection), the 90% and 50% intervals of the training compounds' log target enrichment
    cover the truth on the model's scale about as often as they claim."""
    screen = delpyro.simulate_del(
        seed=0,
        n_per_cycle=(8, 8, 8),
        combine="multiplicative",
        pharmacophore_block_fraction=0.0,
        bb_effect_fraction=0.6,
        bb_effect_scale=1.5,
        disynthon_fraction=0.0,
        reads_per_compound=3.0,
        nb_concentration=None,
        target_gate=0.0,
        control_gate=0.0,
        load_reads_per_compound=3000.0,
        load_noise=0.15,
    )
    config = ModelConfig(
        terms=("building_blocks", "compound"),
        likelihood="poisson",
        combine="multiplicative",
        bb_pairs=False,
        epochs=300,
        batch_size=128,
        guide_lr=0.03,
        lr_decay=0.1,
        lr_decay_steps=1200,
        ema_decay=None,
    )
    result = fit(screen, None, config, seed=0, progress="none")
    prediction = result.predict(screen, num_samples=400)
    truth = delpyro.truth_on_model_scale(result, screen)
    cover90 = np.mean((prediction["log_enrichment_q05"] <= truth) & (truth <= prediction["log_enrichment_q95"]))
    cover50 = np.mean((prediction["log_enrichment_q25"] <= truth) & (truth <= prediction["log_enrichment_q75"]))
    print(f"calibration on {screen.n_compounds} training compounds: 90% interval {cover90:.3f}, 50% {cover50:.3f}")
    assert 0.80 <= cover90 <= 0.97
    assert 0.40 <= cover50 <= 0.60


def test_held_out_loss_integrates_new_compound_effects_over_their_prior() -> None:
    """On compounds never screened, the loss is -E[log p(reads | z)] over the prior of their effects plus
    the globals' KL: the guide's per-compound sites (and AutoNormal's auxiliary one, scaled by the
    training screen's size) must stay out, or a single draw swings the loss by thousands of nats."""
    data = delpyro.simulate_del(seed=8, n_per_cycle=(8, 8, 6), combine="additive", load_noise=0.15)
    train, val, _ = split(data, "random", (0.6, 0.4, 0.0), seed=0)
    config = ModelConfig(hidden_size=16, n_layers=1, fingerprint_bits=256, epochs=3, batch_size=64, combine="additive")
    result = fit(train, val, config, seed=0, progress="none")
    batch = next(iter(delpyro.Minibatches(result.model.encoding.encode(val), val.n_compounds, shuffle=False)))
    losses = np.array([delpyro.eval_step(result.svi, batch) for _ in range(32)])
    print("held-out losses:", losses.round(3))
    assert np.all(losses > 0)
    # one draw's Monte Carlo noise over these 150 compounds is about 0.1 to 0.2 nats a compound; the
    # guide's per-compound sites leaking in would swing it by thousands
    assert losses.std() < 0.5
    assert np.all(result.history["val_loss"] > 0)
    # the same number by hand: the model's log-likelihood at draws of the guide's globals, with the new
    # compounds' effects drawn from the prior, minus the globals' log q - log p
    with result.model.param_scope():
        import torch
        from pyro import poutine

        result.model.eval()
        totals = []
        with torch.no_grad():
            for _ in range(200):
                guide_trace = poutine.trace(result.svi.guide).get_trace(batch)
                model_trace = poutine.trace(poutine.replay(result.model, trace=guide_trace)).get_trace(batch)
                model_trace.compute_log_prob()
                guide_trace.compute_log_prob()
                assert not any(name.startswith("compound_effect") for name in guide_trace.nodes)
                totals.append(float(model_trace.log_prob_sum() - guide_trace.log_prob_sum()))
        result.model.train()
    assert abs(-np.mean(totals) / val.n_compounds - losses.mean()) < 0.05


def test_vectorized_guide_draws_match_the_model_run_one_draw_at_a_time(bb_fit, bb_screen) -> None:
    """predict draws many posterior samples in one pass of the guide and computes the latent terms on
    [draws, ...] tensors. Each of those draws, fed to the model one at a time (its own trace, unvectorized
    shapes), must give the same log enrichments; and the draws must be independent draws of the guide:
    their spread is the guide's own scale."""
    from pyro import poutine

    model = bb_fit.model
    batch = next(iter(delpyro.Minibatches(model.encoding.encode(bb_screen), 64, shuffle=True, seed=4)))
    model.eval()
    with model.param_scope(), torch.no_grad():
        torch.manual_seed(0)
        values = bb_fit.draw_sites(batch, 5)
        target, matrix = model.draw_enrichments(batch, model.network_enrichments(batch), values, 5)
        assert target.shape == matrix.shape == (5, 64)
        assert values["compound_effect"].shape == (5, 64, 2) and values["bb_z"].shape[:2] == (5, 2)
        for s in range(5):
            trace = poutine.trace(poutine.condition(model, data={k: v[s] for k, v in values.items()})).get_trace(batch)
            torch.testing.assert_close(trace.nodes["log_target_enrichment"]["value"][:, 0], target[s])
            torch.testing.assert_close(trace.nodes["log_matrix_enrichment"]["value"][:, 0], matrix[s])
        many = bb_fit.draw_sites(batch, 4000)
        loc, scale = bb_fit.guide.locs.bb_z, bb_fit.guide.scales.bb_z
        spread = many["bb_z"].std(0)
        assert float(((spread / scale) - 1).abs().max()) < 0.08
        assert float(((many["bb_z"].mean(0) - loc) / scale).abs().max()) < 0.12
    model.train()


def test_the_compound_effect_prior_is_two_independent_parts_in_uncorrelated_coordinates() -> None:
    from scipy import stats

    from delpyro.effects import compound_parts, compound_prior

    target_scale, matrix_scale = torch.tensor(0.7), torch.tensor(0.3)
    prior = compound_prior(target_scale, matrix_scale)
    kappa = 0.09 / (0.49 + 0.09)
    value = torch.tensor([[0.4, -0.2], [-1.3, 0.5], [2.0, 0.1]])
    u_m = value[:, 1].numpy() + kappa * value[:, 0].numpy()
    u_t = value[:, 0].numpy() - u_m
    by_hand = stats.norm.logpdf(u_t, scale=0.7) + stats.norm.logpdf(u_m, scale=0.3)
    np.testing.assert_allclose(prior.log_prob(value).numpy(), by_hand, rtol=1e-5)
    parts = compound_parts(value, target_scale, matrix_scale)
    np.testing.assert_allclose(parts["target"].numpy(), u_t, rtol=1e-5)
    np.testing.assert_allclose(parts["matrix"].numpy(), u_m, rtol=1e-5)

    torch.manual_seed(0)
    draws = prior.sample((200_000,))
    w, d = draws[:, 0].numpy(), draws[:, 1].numpy()
    assert abs(np.corrcoef(w, d)[0, 1]) < 0.01  # the guide's two numbers are uncorrelated a priori
    drawn = compound_parts(draws, target_scale, matrix_scale)
    assert drawn["target"].std().item() == pytest.approx(0.7, rel=0.03)
    assert drawn["matrix"].std().item() == pytest.approx(0.3, rel=0.03)
    assert abs(np.corrcoef(drawn["target"].numpy(), drawn["matrix"].numpy())[0, 1]) < 0.01


def test_the_compound_scale_stays_at_the_truth_when_the_controls_are_shallow() -> None:
    """Blocks and compounds only: the learned sigma_t should stay near the simulated per-compound noise (0.4).
    With shallow controls a mean-field guide over (w, u_m) gave the target effect the variance
    s_w^2 + s_m^2, and sigma_t grew with it: 0.58 after 20 epochs and 0.68 after 40 on this screen. Over
    (w, d): 0.45 and 0.53 (it still drifts up with long training, more slowly)."""
    screen = delpyro.simulate_del(
        seed=3,
        n_per_cycle=(12, 12, 12),
        pharmacophore_block_fraction=0.0,
        disynthon_fraction=0.0,
        matrix_logp_fraction=0.0,
        target_noise=0.4,
        reads_per_compound=3.0,
    )
    config = ModelConfig(terms=("building_blocks", "compound"), bb_pairs=False, epochs=40)
    result = fit(screen, None, config, seed=0, progress="none")
    sigma = result.globals_summary(200).set_index("site").loc["compound_scale", "mean"]
    print(f"per-compound target scale {sigma:.3f} (simulated 0.4)")
    assert 0.35 < sigma < 0.6

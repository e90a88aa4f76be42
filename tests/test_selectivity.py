"""Several targets, one library: the simulated panel (delpyro.simulate_targets) and the posterior
selectivity of compounds and building blocks (delpyro.selectivity)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

import delpyro
from delpyro import ModelConfig, building_block_selectivity, selectivity, simulate_targets, true_selectivity
from delpyro.posterior import enrichment_draws
from delpyro.selectivity import selectivity_from_draws

TARGETS = ("CA2", "USP7", "PTP1B")


@pytest.fixture(scope="module")
def panel():
    return simulate_targets(0, targets=TARGETS, n_per_cycle=(12, 12, 12), reads_per_compound=2.0)


@pytest.fixture(scope="module")
def fitted(panel):
    config = ModelConfig(epochs=12, batch_size=512)
    return {target: delpyro.fit(screen, None, config, seed=0, progress="none") for target, screen in panel.items()}


# ---- the simulated panel


def test_the_panel_shares_compounds_controls_and_load_and_each_target_has_its_own_reads(panel) -> None:
    screens = list(panel.values())
    assert list(panel) == list(TARGETS)
    first = screens[0]
    for screen in screens[1:]:
        assert np.array_equal(screen.compound_id, first.compound_id)
        assert np.array_equal(screen.control_counts, first.control_counts)
        assert np.array_equal(screen.load, first.load)
        assert screen.control_names == first.control_names == ["no_protein_r1", "no_protein_r2", "no_protein_r3"]
        assert not np.array_equal(screen.target_counts, first.target_counts)
    for target, screen in panel.items():
        truth = screen.truth
        assert screen.target_names == [f"{target}_r{r}" for r in (1, 2, 3)]
        np.testing.assert_array_equal(truth["log_target_enrichment"], truth[f"log_t_{target}"])
        parts = ["target_promiscuous", "target_pharmacophore", "target_building_blocks", "target_disynthons"]
        np.testing.assert_allclose(truth[[*parts, "target_noise"]].sum(1), truth["log_target_enrichment"])
        # every screen carries the whole panel's truth, the same in each
        for other in TARGETS:
            np.testing.assert_array_equal(truth[f"log_t_{other}"], first.truth[f"log_t_{other}"])
    # the promiscuous part is shared, the pharmacophore binds the first target only
    np.testing.assert_array_equal(panel["CA2"].truth["target_promiscuous"], panel["USP7"].truth["target_promiscuous"])
    assert panel["CA2"].truth["target_pharmacophore"].max() == 4.5
    assert panel["USP7"].truth["target_pharmacophore"].abs().max() == 0.0


def test_the_reads_have_the_expectation_the_docstring_gives() -> None:
    panel = simulate_targets(
        3, targets=("A", "B"), n_per_cycle=(20, 20, 20), reads_per_compound=30.0, nb_concentration=None
    )
    for target, screen in panel.items():
        truth, attrs = screen.truth, screen.attrs
        rate = truth["load"] * np.exp(truth["log_matrix_enrichment"] + truth["log_target_enrichment"])
        arms = {
            "target": (screen.target_counts, np.outer(rate, attrs["target_scale"])),
            "control": (
                screen.control_counts,
                np.outer(truth["load"] * np.exp(truth["log_matrix_enrichment"]), attrs["control_scale"]),
            ),
        }
        for arm, (counts, mean) in arms.items():
            deep = mean > 20  # a Poisson count this deep is zero only when gated
            assert deep.sum() > 500
            assert (counts[deep] == 0).mean() == pytest.approx(attrs[f"{arm}_gate"], abs=0.04)
            kept = deep & (counts > 0)
            assert counts[kept].sum() / mean[kept].sum() == pytest.approx(1.0, abs=0.02)
        # reads follow each target's own enrichment: the other target's explains them less well
        other = next(t for t in panel if t != target)
        reads = np.log1p(screen.target_counts.mean(1))
        own = np.corrcoef(reads, truth["log_target_enrichment"])[0, 1]
        assert own > np.corrcoef(reads, truth[f"log_t_{other}"])[0, 1] + 0.1


def test_the_same_seed_gives_the_same_panel_and_bad_arguments_are_named() -> None:
    a = simulate_targets(5, targets=("X", "Y"), n_per_cycle=(5, 6))
    b = simulate_targets(5, targets=("X", "Y"), n_per_cycle=(5, 6))
    assert all(a[t].equals(b[t]) for t in a)
    with pytest.raises(ValueError, match="targets"):
        simulate_targets(0, targets=("X", "X"))
    with pytest.raises(ValueError, match="pharmacophore_target"):
        simulate_targets(0, targets=("X", "Y"), pharmacophore_target="Z")
    with pytest.raises(ValueError, match="n_per_cycle"):
        simulate_targets(0, n_per_cycle=(5,))


def test_true_selectivity_measures_each_target_from_its_median_compound(panel) -> None:
    truth = panel["USP7"].truth
    centred = {t: truth[f"log_t_{t}"] - truth[f"log_t_{t}"].median() for t in TARGETS}
    table = true_selectivity(panel["USP7"], "USP7", threshold=0.5, delta=1.0)
    np.testing.assert_allclose(table["log_t"], centred["USP7"])
    np.testing.assert_allclose(table["margin"], centred["USP7"] - np.maximum(centred["CA2"], centred["PTP1B"]))
    expected = (centred["USP7"] > 0.5) & (centred["CA2"] <= 0.5) & (centred["PTP1B"] <= 0.5)
    np.testing.assert_array_equal(table["selective"], expected)
    np.testing.assert_array_equal(table["greater_CA2"], centred["USP7"] - centred["CA2"] > 1.0)
    assert 0 < table["selective"].sum() < table["enriched"].sum()
    with pytest.raises(ValueError, match="not one of"):
        true_selectivity(panel["USP7"], "BRD4")
    with pytest.raises(ValueError, match="simulate_targets"):
        true_selectivity(delpyro.simulate_del(0, n_per_cycle=(4, 4, 4)), "target")


# ---- the probabilities, from draws whose answer is known


def _normal_draws(means: dict[str, np.ndarray], sd: float, samples: int, batch: int, seed: int = 0):
    """A draw source of independent normals around ``means`` (the same draws on every call)."""
    n = len(next(iter(means.values())))
    rng = np.random.default_rng(seed)
    values = {t: m[None, :] + sd * rng.standard_normal((samples, n)) for t, m in means.items()}

    def draws():
        for start in range(0, n, batch):
            rows = np.arange(start, min(n, start + batch))
            yield rows, {t: v[:, rows] for t, v in values.items()}

    return draws


def test_probabilities_are_those_of_the_draws_joint_over_targets() -> None:
    n = 400
    rng = np.random.default_rng(1)
    means = {"A": rng.normal(0, 1.5, n) + 3.0, "B": rng.normal(0, 1.5, n) - 1.0}  # the medians differ
    sd, samples = 0.8, 20000
    result = selectivity_from_draws(_normal_draws(means, sd, samples, 128), ["A", "B"], np.arange(n), delta=0.5)
    centre = {t: float(np.median(result.of(t)["log_enrichment_mean"] + result.centres[t])) for t in means}
    assert result.centres["A"] == pytest.approx(np.median(means["A"]), abs=0.05)
    assert result.centres == pytest.approx(centre)
    e = {t: means[t] - result.centres[t] for t in means}
    p_a = norm.sf((0.693147 - e["A"]) / sd)
    p_b = norm.sf((math.log(2) - e["B"]) / sd)
    rows_a = result.of("A")
    np.testing.assert_allclose(rows_a["log_enrichment_mean"], e["A"], atol=0.03)
    np.testing.assert_allclose(rows_a["p_enriched"], p_a, atol=0.015)
    np.testing.assert_allclose(rows_a["p_selective"], p_a * (1 - p_b), atol=0.015)  # independent draws
    pair = result.pairs[(result.pairs["target"] == "A") & (result.pairs["other"] == "B")]
    np.testing.assert_allclose(pair["difference_mean"], e["A"] - e["B"], atol=0.03)
    np.testing.assert_allclose(pair["p_greater"], norm.sf((0.5 - (e["A"] - e["B"])) / (sd * math.sqrt(2))), atol=0.015)
    np.testing.assert_allclose(
        pair["difference_q95"] - pair["difference_q05"], 2 * 1.644854 * sd * math.sqrt(2), rtol=0.05
    )


def test_perfectly_correlated_draws_make_the_difference_certain() -> None:
    """A joint posterior's correlation carries into the probabilities: the same noise in both targets
    leaves their difference exact."""
    n, samples = 50, 400
    rng = np.random.default_rng(2)
    shift = np.linspace(-1, 1, n)
    noise = rng.standard_normal((samples, n))

    def draws():
        yield np.arange(n), {"A": noise + shift, "B": noise}

    result = selectivity_from_draws(draws, ["A", "B"], np.arange(n), delta=0.0)
    pair = result.pairs[result.pairs["target"] == "A"]
    difference = shift - (result.centres["A"] - result.centres["B"])
    np.testing.assert_allclose(pair["difference_q95"] - pair["difference_q05"], 0.0, atol=1e-9)
    np.testing.assert_array_equal(pair["p_greater"], (difference > 0).astype(float))


def test_a_selective_call_holds_its_expected_fdr_and_says_what_it_called() -> None:
    n = 300
    rng = np.random.default_rng(3)
    means = {"A": rng.normal(0, 2, n), "B": rng.normal(0, 2, n), "C": rng.normal(0, 2, n)}
    result = selectivity_from_draws(_normal_draws(means, 0.5, 400, 100), ["A", "B", "C"], np.arange(n))
    calls = result.call("B", fdr=0.1)
    assert 0 < calls.n_called < n
    assert calls.expected_fdr <= 0.1
    lfdr = np.sort(1 - result.of("B")["p_selective"].to_numpy())
    assert calls.expected_fdr == pytest.approx(lfdr[: calls.n_called].mean())
    assert "selective for B (not enriched for A, C)" in calls.summary()
    assert calls.hits["p_selective"].min() >= calls.table.loc[~calls.table["called"], "p_selective"].max()
    with pytest.raises(ValueError, match="two or more"):
        selectivity_from_draws(_normal_draws({"A": means["A"]}, 0.5, 10, 100), ["A"], np.arange(n))
    with pytest.raises(ValueError, match="not one of"):
        result.of("D")


# ---- from fitted models


def test_draws_interleaved_across_models_are_those_of_each_model_alone(panel, fitted) -> None:
    screen = panel["CA2"]
    alone = {
        t: np.concatenate([d for _, d in enrichment_draws(r, screen, 16, 500, seed=4)], 1) for t, r in fitted.items()
    }
    streams = [enrichment_draws(r, screen, 16, 500, seed=4) for r in fitted.values()]
    together = {t: [] for t in fitted}
    for parts in zip(*streams, strict=True):
        for t, (_, d) in zip(fitted, parts, strict=True):
            together[t].append(d)
    for t in fitted:
        np.testing.assert_array_equal(np.concatenate(together[t], 1), alone[t])
    prediction = fitted["USP7"].predict(screen, num_samples=16, batch_size=500, seed=4)
    np.testing.assert_allclose(alone["USP7"].mean(0), prediction["log_enrichment_mean"], atol=1e-9)


def test_separate_fits_find_the_selective_compounds_and_blocks(panel, fitted) -> None:
    screen = panel["CA2"]
    result = selectivity(fitted, screen, num_samples=100)
    for target in TARGETS:
        truth = true_selectivity(screen, target)
        assert roc_auc_score(truth["selective"], result.of(target)["p_selective"]) > 0.9
        calls = result.call(target, fdr=0.1)
        called = calls.table["called"].sort_index().to_numpy()
        assert called.sum() >= (50 if target == "CA2" else 3)  # CA2's sulfonamides make many selective binders
        assert (called & ~truth["selective"].to_numpy()).sum() / called.sum() < 0.25
    blocks = building_block_selectivity(fitted, [("CA2", "USP7")])
    assert set(blocks["target"]) == {"CA2"} and set(blocks["other"]) == {"USP7"}
    assert len(blocks) == sum(len(ids) for ids in fitted["CA2"].model.encoding.bb_vocabulary.values())
    # the sulfonamide blocks bind CA2 only: they lead the blocks that prefer CA2 over USP7
    sulfonamide = {b for ids in screen.attrs["pharmacophore_building_blocks"].values() for b in ids}
    assert sulfonamide
    marked = blocks["building_block"].isin(sulfonamide)
    assert blocks.loc[marked, "difference_mean"].min() > blocks.loc[~marked, "difference_mean"].quantile(0.9)
    assert blocks.loc[marked, "p_greater"].mean() > 0.8
    np.testing.assert_allclose(blocks["difference_mean"], blocks["effect_target"] - blocks["effect_other"], atol=1e-5)


def test_the_selectivity_figures_show_the_calls_and_the_blocks(panel, fitted, tmp_path) -> None:
    screen = panel["CA2"]
    result = selectivity(fitted, screen, num_samples=50)
    fig = delpyro.plots.selectivity_map(result, "CA2", "USP7", fdr=0.1, path=tmp_path / "map.png")
    assert (tmp_path / "map.png").stat().st_size > 10_000
    labels = [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
    assert labels[1] == f"selective for CA2 ({result.call('CA2', 0.1).n_called:,})"
    assert labels[2] == f"selective for USP7 ({result.call('USP7', 0.1).n_called:,})"
    blocks = building_block_selectivity(fitted, [("CA2", "USP7")], num_samples=200)
    fig = delpyro.plots.selectivity_forest(blocks, "CA2", "USP7", top=5)
    assert [ax.get_title() for ax in fig.axes] == ["cycle1", "cycle2", "cycle3"]
    for ax, cycle in zip(fig.axes, ["cycle1", "cycle2", "cycle3"], strict=True):
        rows = blocks[blocks["cycle"] == cycle]
        top = rows.loc[rows["difference_mean"].idxmax(), "building_block"]
        assert ax.get_yticklabels()[-1].get_text() == top  # the largest at the top
        assert len(ax.get_yticklabels()) == 5
    with pytest.raises(ValueError, match="no rows"):
        delpyro.plots.selectivity_forest(blocks, "USP7", "CA2")
    with pytest.raises(ValueError, match="different"):
        delpyro.plots.selectivity_map(result, "CA2", "CA2")


# ---- one model of several targets


def test_join_targets_puts_the_targets_side_by_side_and_split_gives_them_back(panel, tmp_path) -> None:
    joint = delpyro.join_targets(panel)
    assert joint.targets == list(TARGETS)
    assert joint.replicate_targets == [t for t in TARGETS for _ in range(3)]
    assert joint.target_names[:2] == ["CA2:CA2_r1", "CA2:CA2_r2"]
    np.testing.assert_array_equal(joint.target_counts[:, 3:6], panel["USP7"].target_counts)
    np.testing.assert_array_equal(joint.control_counts, panel["CA2"].control_counts)
    # the truth keeps what every target shares: each target's log t, not one target's own columns
    assert {f"log_t_{t}" for t in TARGETS} <= set(joint.truth.columns)
    assert "log_target_enrichment" not in joint.truth.columns
    back = delpyro.split_targets(joint)
    for target in TARGETS:
        assert back[target].target_names == panel[target].target_names
        np.testing.assert_array_equal(back[target].target_counts, panel[target].target_counts)
    # saved and read back, and cut by split, a screen keeps its targets
    path = joint.save(tmp_path / "panel.parquet")
    again = delpyro.read_counts(path, preset="delpyro")
    assert again.replicate_targets == joint.replicate_targets
    assert delpyro.split(joint, "random", seed=0)[0].replicate_targets == joint.replicate_targets
    assert panel["CA2"].targets == ["target"] and panel["CA2"].replicate_targets is None


def test_join_targets_refuses_what_one_model_cannot_share(panel) -> None:
    renamed = dataclasses.replace(panel["USP7"], control_counts=panel["USP7"].control_counts + 1)
    with pytest.raises(delpyro.DELDataError, match=r"\['CA2', 'X'\] have control replicates named 'no_protein_r1'"):
        delpyro.join_targets({"CA2": panel["CA2"], "X": renamed})
    overlapping = dataclasses.replace(
        panel["USP7"], control_counts=panel["USP7"].control_counts[:, :2], control_names=panel["USP7"].control_names[:2]
    )
    with pytest.raises(delpyro.DELDataError, match="share the control replicate 'no_protein_r1' but not all"):
        delpyro.join_targets({"CA2": panel["CA2"], "X": overlapping})
    bare = dataclasses.replace(panel["USP7"], control_counts=None, control_names=[])
    with pytest.raises(delpyro.DELDataError, match=r"targets \['X'\] have no control replicates"):
        delpyro.join_targets({"CA2": panel["CA2"], "X": bare})
    other = simulate_targets(1, targets=("X", "Y"), n_per_cycle=(12, 12, 12))
    with pytest.raises(delpyro.DELDataError, match="'X' has other SMILES"):
        delpyro.join_targets({"CA2": panel["CA2"], "X": other["X"]})
    with pytest.raises(delpyro.DELDataError, match="two or more"):
        delpyro.join_targets({"CA2": panel["CA2"]})
    with pytest.raises(delpyro.DELDataError, match="no ':'"):
        delpyro.join_targets({"CA2": panel["CA2"], "a:b": panel["USP7"]})
    with pytest.raises(delpyro.DELDataError, match="replicate_targets"):
        attrs = {**panel["CA2"].attrs, "replicate_targets": ["CA2"]}
        delpyro.DELData(
            target_counts=panel["CA2"].target_counts,
            control_counts=None,
            smiles=panel["CA2"].smiles,
            compound_id=panel["CA2"].compound_id,
            attrs=attrs,
        )


def test_the_prior_of_several_targets_effects_is_independent_parts_in_rotated_coordinates() -> None:
    from scipy import stats

    from delpyro.effects import compound_parts, compound_prior, target_rotation

    q = target_rotation(3).double()
    torch_eye = q @ q.T
    np.testing.assert_allclose(torch_eye.numpy(), np.eye(3), atol=1e-6)
    np.testing.assert_allclose(q[0].numpy(), np.full(3, 3**-0.5), atol=1e-7)
    import torch

    target_scale, matrix_scale = torch.tensor(0.6), torch.tensor(0.4)
    prior = compound_prior(target_scale, matrix_scale, 3)
    value = torch.tensor([[0.4, -0.2, 0.9, 0.1], [-1.3, 0.5, 0.0, -0.7]])
    parts = compound_parts(value, target_scale, matrix_scale, ("target:a", "target:b", "target:c"))
    u = np.stack([parts[f"target:{k}"].numpy() for k in "abc"], -1)
    by_hand = stats.norm.logpdf(u, scale=0.6).sum(-1) + stats.norm.logpdf(parts["matrix"].numpy(), scale=0.4)
    np.testing.assert_allclose(prior.log_prob(value).numpy(), by_hand, rtol=1e-5)
    # the map back: w = Q^T a, so every target arm's whole deviation is its u plus the matrix's
    w = value[:, :3].double() @ q
    np.testing.assert_allclose(u + parts["matrix"].numpy()[:, None], w.numpy(), atol=1e-6)
    torch.manual_seed(0)
    draws = prior.sample((200_000,))
    np.testing.assert_allclose(np.cov(draws.numpy().T), np.diag(np.diag(np.cov(draws.numpy().T))), atol=0.004)
    parts = compound_parts(draws, target_scale, matrix_scale, ("target:a", "target:b", "target:c"))
    assert float(parts["target:b"].std()) == pytest.approx(0.6, rel=0.01)
    assert float(parts["matrix"].std()) == pytest.approx(0.4, rel=0.01)
    assert abs(float(np.corrcoef(parts["target:a"], parts["target:c"])[0, 1])) < 0.01


@pytest.fixture(scope="module")
def joint_fit(panel):
    joint = delpyro.join_targets(panel)
    return joint, delpyro.fit(joint, None, ModelConfig(epochs=12, batch_size=512), seed=0, progress="none")


def test_one_model_of_several_targets_predicts_each_and_round_trips(joint_fit, fitted, tmp_path) -> None:
    joint, result = joint_fit
    model = result.model
    assert model.targets == list(TARGETS)
    assert model.arms == ("target", "target:CA2", "target:USP7", "target:PTP1B", "matrix")
    for target in TARGETS:
        prediction = result.predict(joint, num_samples=50, target=target)
        alone = fitted[target].predict(delpyro.split_targets(joint)[target], num_samples=50)
        truth = joint.truth[f"log_t_{target}"]
        together = np.corrcoef(prediction["log_enrichment_mean"], truth)[0, 1]
        assert together > 0.75  # 0.95 / 0.79 / 0.87: one target's reads say less than another's
        assert together > np.corrcoef(alone["log_enrichment_mean"], truth)[0, 1] - 0.02
    with pytest.raises(ValueError, match="name one of them"):
        result.predict(joint)
    loaded = delpyro.load(result.save(tmp_path / "joint.pt"))
    a = result.predict(joint, num_samples=20, target="USP7")
    b = loaded.predict(joint, num_samples=20, target="USP7")
    np.testing.assert_allclose(a["log_enrichment_mean"], b["log_enrichment_mean"], atol=1e-6)
    per_target = result.building_block_effects(target="CA2")
    shared = result.building_block_effects()
    own = delpyro.posterior.building_block_draws(result, "target:CA2", 1000, 0)
    assert len(per_target) == len(shared) == sum(len(ids) for ids, _ in own.values())
    with pytest.raises(ValueError, match="does not take observed_only='target'"):
        delpyro.fit(joint, None, ModelConfig(epochs=1, observed_only="target"), progress="none")


def test_selectivity_from_one_joint_model(joint_fit) -> None:
    joint, result = joint_fit
    sel = selectivity(result, joint, num_samples=100)
    assert sel.targets == list(TARGETS)
    for target in TARGETS:
        truth = true_selectivity(joint, target)
        assert roc_auc_score(truth["selective"], sel.of(target)["p_selective"]) > 0.9
    blocks = building_block_selectivity(result, [("CA2", "USP7")], num_samples=200)
    sulfonamide = {b for ids in joint.attrs["pharmacophore_building_blocks"].values() for b in ids}
    marked = blocks["building_block"].isin(sulfonamide)
    assert blocks.loc[marked, "difference_mean"].min() > blocks.loc[~marked, "difference_mean"].quantile(0.9)
    with pytest.raises(ValueError, match="several targets"):
        selectivity(
            delpyro.fit(delpyro.split_targets(joint)["CA2"], None, ModelConfig(epochs=1), progress="none"), joint
        )


def test_a_model_of_several_targets_resumes_and_runs_by_nuts(panel) -> None:
    joint = delpyro.join_targets(panel)
    train, val, _ = delpyro.split(joint, "random", seed=1)
    first = delpyro.fit(train, val, ModelConfig(epochs=2, batch_size=512), seed=0, progress="none")
    resumed = delpyro.fit(train, val, seed=0, progress="none", resume=first, epochs=3)
    assert len(resumed.history) == 3 and resumed.model.targets == list(TARGETS)
    small = joint.subset(np.arange(40))
    config = ModelConfig(terms=("building_blocks", "compound"))
    nuts = delpyro.run_nuts(small, config, num_samples=8, num_warmup=8, num_chains=1, jit_compile=False)
    prediction = nuts.predict(small, num_samples=8, target="PTP1B")
    assert prediction["log_enrichment_sd"].gt(0).all()
    idata = nuts.to_inference_data(small, num_samples=8)
    assert idata.posterior["log_target_enrichment"].dims == ("chain", "draw", "compound_id", "target")
    assert list(idata.posterior["target"].values) == list(TARGETS)


# ---- targets selected on more than one kind of beads

BEADS = {"CA2": "SA", "USP7": "SA", "PTP1B": "Ni"}


@pytest.fixture(scope="module")
def bead_panel():
    return simulate_targets(0, targets=TARGETS, n_per_cycle=(12, 12, 12), reads_per_compound=2.0, bead_sets=BEADS)


def test_targets_on_two_kinds_of_beads_join_by_their_controls_and_split_back(panel, bead_panel, tmp_path) -> None:
    # the first set's part of the panel is the one-set panel; the other set has its own matrix and controls
    np.testing.assert_array_equal(bead_panel["CA2"].target_counts, panel["CA2"].target_counts)
    np.testing.assert_array_equal(bead_panel["USP7"].control_counts, panel["USP7"].control_counts)
    assert not np.array_equal(bead_panel["PTP1B"].control_counts, panel["PTP1B"].control_counts)
    truth = bead_panel["PTP1B"].truth
    assert truth["log_matrix_enrichment"].equals(truth["log_m_Ni"])
    assert bead_panel["CA2"].truth["log_matrix_enrichment"].equals(truth["log_m_SA"])
    assert np.corrcoef(truth["log_m_SA"], truth["log_m_Ni"])[0, 1] < 0.7  # each set's sticky blocks, own noise
    joint = delpyro.join_targets(bead_panel)
    assert joint.bead_sets == ["SA", "Ni"]
    assert joint.control_names == [f"no_protein_{b}_r{r}" for b in ("SA", "Ni") for r in (1, 2, 3)]
    assert joint.control_bead_sets == ["SA"] * 3 + ["Ni"] * 3
    assert joint.target_bead_sets == BEADS
    assert "bead sets, each with its own controls: SA: CA2, USP7; Ni: PTP1B" in joint.summary()
    back = delpyro.split_targets(joint)
    for target in TARGETS:
        assert back[target].control_names == bead_panel[target].control_names
        np.testing.assert_array_equal(back[target].control_counts, bead_panel[target].control_counts)
        assert back[target].bead_sets is None
    again = delpyro.read_counts(joint.save(tmp_path / "beads.parquet"), preset="delpyro")
    assert again.bead_sets == ["SA", "Ni"] and again.target_bead_sets == BEADS
    assert delpyro.split(joint, "random", seed=0)[1].control_bead_sets == joint.control_bead_sets
    with pytest.raises(delpyro.DELDataError, match=r"bead sets \['Cu'\] have targets and no control replicate"):
        dataclasses.replace(joint, attrs={**joint.attrs, "target_bead_sets": {**BEADS, "PTP1B": "Cu"}})
    with pytest.raises(delpyro.DELDataError, match="one per control replicate"):
        dataclasses.replace(joint, attrs={**joint.attrs, "control_bead_sets": ["SA", "Ni"]})
    with pytest.raises(ValueError, match="bead_sets: expected every target"):
        simulate_targets(0, targets=TARGETS, n_per_cycle=(4, 4, 4), bead_sets={"CA2": "SA"})


def test_the_prior_of_compound_effects_on_two_bead_sets_is_each_sets_own() -> None:
    import torch
    from scipy import stats

    from delpyro.effects import compound_parts, compound_prior

    target_scale, matrix_scale = torch.tensor(0.6), torch.tensor(0.4)
    sets = (0, 0, 1)  # targets a and b on the first beads, c on the second
    prior = compound_prior(target_scale, matrix_scale, 3, sets)
    assert prior.event_shape == (5,)  # (a_1, a_2, d) of the first set, (a_1, d) of the second
    value = torch.tensor([[0.4, -0.2, 0.9, 0.1, -0.3], [-1.3, 0.5, 0.0, -0.7, 0.8]])
    arms = ("target:a", "target:b", "target:c")
    parts = compound_parts(value, target_scale, matrix_scale, arms, ("matrix:x", "matrix:y"), sets)
    u = np.stack([parts[arm].numpy() for arm in arms], -1)
    m = np.stack([parts["matrix:x"].numpy(), parts["matrix:y"].numpy()], -1)
    by_hand = stats.norm.logpdf(u, scale=0.6).sum(-1) + stats.norm.logpdf(m, scale=0.4).sum(-1)
    np.testing.assert_allclose(prior.log_prob(value).numpy(), by_hand, rtol=1e-5)
    # the second set's target: its whole deviation is its u plus its own set's matrix effect, w = a
    np.testing.assert_allclose(u[:, 2] + m[:, 1], value[:, 3].numpy(), atol=1e-6)
    torch.manual_seed(0)
    draws = compound_parts(prior.sample((100_000,)), target_scale, matrix_scale, arms, ("matrix:x", "matrix:y"), sets)
    assert float(draws["matrix:y"].std()) == pytest.approx(0.4, rel=0.02)
    assert float(draws["target:c"].std()) == pytest.approx(0.6, rel=0.02)
    assert abs(float(np.corrcoef(draws["matrix:x"], draws["matrix:y"])[0, 1])) < 0.02


def test_one_model_of_targets_on_two_kinds_of_beads_gives_each_set_its_own_matrix(bead_panel, tmp_path) -> None:
    joint = delpyro.join_targets(bead_panel)
    result = delpyro.fit(joint, None, ModelConfig(epochs=12, batch_size=512), seed=0, progress="none")
    model = result.model
    assert model.arms == ("target", "target:CA2", "target:USP7", "target:PTP1B", "matrix", "matrix:SA", "matrix:Ni")
    truth = joint.truth
    found = {}
    for target, own, other in (("CA2", "SA", "Ni"), ("PTP1B", "Ni", "SA")):
        prediction = result.predict(joint, num_samples=50, target=target)
        matrix = prediction["log_matrix_mean"]
        found[target] = (
            np.corrcoef(matrix, truth[f"log_m_{own}"])[0, 1],
            np.corrcoef(matrix, truth[f"log_m_{other}"])[0, 1],
            np.corrcoef(prediction["log_enrichment_mean"], truth[f"log_t_{target}"])[0, 1],
        )
    for own, other, enrichment in found.values():
        assert own > 0.6 and own > other + 0.15, found  # each target's reads divided by its own beads'
        assert enrichment > 0.75, found
    idata = result.to_inference_data(joint.subset(np.arange(30)), num_samples=4)
    assert idata.posterior["log_matrix_enrichment"].dims == ("chain", "draw", "compound_id", "bead_set")
    assert list(idata.posterior["bead_set"].values) == ["SA", "Ni"]
    loaded = delpyro.load(result.save(tmp_path / "beads.pt"))
    a = result.predict(joint, num_samples=20, target="PTP1B")
    b = loaded.predict(joint, num_samples=20, target="PTP1B")
    np.testing.assert_allclose(a["log_matrix_mean"], b["log_matrix_mean"], atol=1e-6)
    sel = selectivity(result, joint, num_samples=100)
    ptp1b = true_selectivity(joint, "PTP1B")
    assert roc_auc_score(ptp1b["selective"], sel.of("PTP1B")["p_selective"]) > 0.9

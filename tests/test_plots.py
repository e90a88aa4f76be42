"""Tests of delpyro.plots: every figure on a tiny fit, its axes, labels, titles and data, and saving."""

import itertools
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib as mpl
import numpy as np
import pandas as pd
import pytest
import seaborn as sns
from scipy import stats

import delpyro
from delpyro import plots
from delpyro.features import molecular_weight

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def fitted():
    data = delpyro.simulate_del(seed=0, n_per_cycle=(4, 4, 4), n_poses=3, n_pose_features=8)
    config = delpyro.ModelConfig(
        hidden_size=16,
        n_layers=1,
        fingerprint_bits=256,
        epochs=2,
        terms=("fingerprint", "poses", "building_blocks", "compound"),
    )
    result = delpyro.fit(data, None, config, progress="none")
    pred = result.predict(data, num_samples=20)
    effects = result.building_block_effects(num_samples=50)
    return data, result, pred, effects


def _png(path):
    with open(path, "rb") as handle:
        return handle.read(8) == PNG


def _labels(ticks):
    return [t.get_text() for t in ticks]


def test_theme_is_applied_inside_and_leaves_global_settings(fitted, tmp_path):
    before = dict(mpl.rcParams)
    fig = plots.training_curves(fitted[1].history)
    assert dict(mpl.rcParams) == before
    rc = plots.theme_rc()
    ax = fig.axes[0]
    assert ax.xaxis.label.get_fontsize() == pytest.approx(rc["axes.labelsize"])
    assert ax.title.get_fontsize() == pytest.approx(rc["axes.titlesize"])
    assert rc["axes.labelsize"] >= 10  # readable in a paper
    assert mpl.colors.to_hex(ax.lines[0].get_color()) == mpl.colors.to_hex(sns.color_palette("colorblind")[0])
    with plots.theme():
        assert mpl.rcParams["axes.labelsize"] == rc["axes.labelsize"]
    assert dict(mpl.rcParams) == before


def test_training_curves(fitted, tmp_path):
    history = fitted[1].history
    fig = plots.training_curves(fitted[1], path=tmp_path / "curves.png")
    assert _png(tmp_path / "curves.png")
    (ax,) = fig.axes
    assert ax.get_xlabel() == "epoch"
    assert ax.get_ylabel() == "loss (negative ELBO per compound, nats)"
    assert ax.get_title() == "Training curves"
    assert len(ax.lines) == 1  # no validation screen
    np.testing.assert_allclose(ax.lines[0].get_ydata(), history["train_loss"])
    with_val = history.assign(val_loss=history["train_loss"] + 1.0)
    ax = plots.training_curves(with_val).axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["training", "validation"]
    np.testing.assert_allclose(ax.lines[1].get_ydata(), history["train_loss"] + 1.0)


def test_predicted_vs_true(fitted, tmp_path):
    data, result, pred, _ = fitted
    truth = delpyro.truth_on_model_scale(result, data)
    rho = stats.spearmanr(truth, pred["log_enrichment_mean"]).statistic
    fig = plots.predicted_vs_true(pred, truth, path=tmp_path / "pvt.png")
    assert _png(tmp_path / "pvt.png")
    (ax,) = fig.axes
    assert ax.get_title() == f"Posterior mean vs true: Spearman ρ = {rho:.3f} (n = 64)"
    assert ax.get_xlabel() == "true log target enrichment (natural log)"
    assert ax.get_ylabel() == "posterior mean of the log target enrichment (natural log)"
    # a score that is not a posterior says what it is
    naive = delpyro.naive_enrichment(data)
    fig = plots.predicted_vs_true(naive, data.truth["log_target_enrichment"], identity=False, label="naive estimate")
    assert fig.axes[0].get_title().startswith("Naive estimate vs true")
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["naive estimate"]
    # the truth table itself (matched by row), drawn as a hexbin with a colour bar; without the identity
    # line it has no legend (and no warning that there is nothing to put in one)
    fig = plots.predicted_vs_true(pred, data.truth, hexbin_above=10)
    assert len(fig.axes) == 2
    assert fig.axes[1].get_ylabel() == "compounds"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert plots.predicted_vs_true(pred, data.truth, hexbin_above=10, identity=False).axes[0].get_legend() is None
    raw = stats.spearmanr(data.truth["log_target_enrichment"], pred["log_enrichment_mean"]).statistic
    assert f"Spearman ρ = {raw:.3f}" in fig.axes[0].get_title()


def test_predicted_vs_affinity(fitted, tmp_path):
    data, _, pred, _ = fitted
    rng = np.random.default_rng(0)
    chosen = rng.permutation(64)[:30]
    ki_nm = 10 ** (3 - data.truth["log_target_enrichment"].to_numpy()[chosen] / np.log(10))
    affinities = pd.DataFrame({"compound_id": data.compound_id[chosen], "Ki": ki_nm})
    fig = plots.predicted_vs_affinity(
        pred, affinities, "Ki", smiles=data.smiles, train_smiles=data.smiles, path=tmp_path / "aff.png"
    )
    assert _png(tmp_path / "aff.png")
    (ax,) = fig.axes
    score = pred["log_enrichment_mean"].to_numpy()[chosen]
    pk = 9 - np.log10(ki_nm)
    weights = molecular_weight(data.smiles)
    lo, hi = np.quantile(weights, [0.1, 0.9])
    inside = (weights[chosen] >= lo) & (weights[chosen] <= hi)
    rho_all = stats.spearmanr(score, pk).statistic
    rho_in = stats.spearmanr(score[inside], pk[inside]).statistic
    assert ax.get_title() == (
        f"Spearman ρ = {rho_all:.3f} (n = 30); in MW window ρ = {rho_in:.3f} (n = {int(inside.sum())})"
    )
    assert ax.get_xlabel() == "measured pKi (-log10 M)"
    assert sum(len(c.get_offsets()) for c in ax.collections) == 30
    np.testing.assert_allclose(np.sort(ax.collections[0].get_offsets()[:, 0]), np.sort(pk[inside]))


def test_ppc_counts(fitted, tmp_path):
    data = fitted[0]
    observed = data.target_counts
    rng = np.random.default_rng(1)
    replicated = rng.poisson(observed.mean(0), size=(200, *observed.shape))
    fig = plots.ppc_counts(observed, replicated, names=["t1", "t2", "t3"], path=tmp_path / "ppc.png")
    assert _png(tmp_path / "ppc.png")
    assert len(fig.axes) == 4
    assert [ax.get_title() for ax in fig.axes] == ["Counts: t1", "Counts: t2", "Counts: t3", "Zero fraction"]
    assert fig.axes[0].get_xlabel() == "log(1 + count)"
    assert fig.axes[0].get_ylabel() == "fraction of compounds"
    assert fig.axes[0].get_yscale() == "log"
    zero_panel = fig.axes[3]
    assert zero_panel.get_ylabel() == "fraction of zero counts"
    assert _labels(zero_panel.get_xticklabels()) == ["t1", "t2", "t3"]
    points = zero_panel.collections[-1].get_offsets()
    np.testing.assert_allclose(points[:, 1], (observed == 0).mean(0))
    # the observed histogram of replicate t1: the share of compounds per bin, bins of whole counts
    observed_steps = fig.axes[0].patches[-1]
    assert observed_steps.get_label() == "observed"
    shares, x_edges = observed_steps.get_data().values, observed_steps.get_data().edges
    counts_at_edges = np.expm1(x_edges)
    np.testing.assert_allclose(counts_at_edges, np.round(counts_at_edges), atol=1e-9)
    assert counts_at_edges[0] == 0 and counts_at_edges[1] == pytest.approx(1.0)
    assert counts_at_edges[-1] > max(observed[:, 0].max(), replicated[:, :, 0].max())
    expected = [
        np.mean((observed[:, 0] >= lo - 1e-9) & (observed[:, 0] < hi - 1e-9))
        for lo, hi in itertools.pairwise(counts_at_edges)
    ]
    np.testing.assert_allclose(shares, expected)
    assert shares[0] == pytest.approx(np.mean(observed[:, 0] == 0))
    assert shares.sum() == pytest.approx(1.0)
    # five replicates: six panels in a 4-wide grid, the two spare slots removed
    wide = np.concatenate([observed, observed[:, :2]], axis=1)
    fig = plots.ppc_counts(
        pd.DataFrame(wide, columns=list("abcde")), np.concatenate([replicated, replicated[..., :2]], 2)
    )
    assert len(fig.axes) == 6
    assert fig.axes[4].get_title() == "Counts: e"


def test_top_compounds(fitted, tmp_path):
    pred = fitted[2]
    fig = plots.top_compounds(pred, n=10, path=tmp_path / "top.png")
    assert _png(tmp_path / "top.png")
    (ax,) = fig.axes
    best = pred.sort_values("log_enrichment_mean", ascending=False)["compound_id"].head(10).tolist()
    assert _labels(ax.get_yticklabels()) == best[::-1]  # best at the top
    assert ax.get_title() == "Top 10 compounds by posterior mean"
    assert ax.get_xlabel() == "log target enrichment (natural log)"
    assert ax.get_ylabel() == "compound"
    means = ax.collections[-1].get_offsets()[:, 0]
    np.testing.assert_allclose(means, np.sort(pred["log_enrichment_mean"].to_numpy())[-10:])


def test_building_block_forest(fitted, tmp_path):
    effects = fitted[3]
    fig = plots.building_block_forest(effects, path=tmp_path / "forest.png")
    assert _png(tmp_path / "forest.png")
    assert len(fig.axes) == 3
    assert [ax.get_title() for ax in fig.axes] == ["cycle1", "cycle2", "cycle3"]
    for ax, cycle in zip(fig.axes, ["cycle1", "cycle2", "cycle3"], strict=True):
        rows = effects[effects["cycle"] == cycle].sort_values("mean")
        assert _labels(ax.get_yticklabels()) == rows["building_block"].tolist()
        assert ax.get_xlabel() == "effect (natural log)"
    assert fig.axes[0].get_ylabel() == "building block"
    fig = plots.building_block_forest(effects, top=2)
    cycle1 = effects[effects["cycle"] == "cycle1"]
    largest = set(cycle1.loc[cycle1["mean"].abs().nlargest(2).index, "building_block"])
    assert set(_labels(fig.axes[0].get_yticklabels())) == largest


def test_disynthon_effects_are_the_pairs_scaled_normals(fitted):
    _, result, _, _ = fitted
    pairs = result.disynthon_effects(num_samples=50)
    assert sorted(pairs["cycle"].unique()) == ["cycle1+cycle2", "cycle1+cycle3", "cycle2+cycle3"]
    assert len(pairs) == 3 * 16
    family = pairs[pairs["cycle"] == "cycle1+cycle2"]
    assert family["building_block"].iloc[0] == f"{family['block_a'].iloc[0]}+{family['block_b'].iloc[0]}"
    # a pair's effect is its family's scale times its own normal (not centred), draw by draw
    draws = result.sample_globals(50)
    effect = draws["bb_target_scale_cycle1+cycle2"][:, None] * draws["bb_target_cycle1+cycle2"]
    np.testing.assert_allclose(family["mean"], effect[:, :16].mean(0), rtol=1e-5, atol=1e-7)
    assert not np.allclose(family.groupby("block_a")["mean"].sum(), 0.0, atol=1e-3)
    one = result.disynthon_effects(("cycle3", "cycle2"), num_samples=50)
    assert set(one["cycle"]) == {"cycle2+cycle3"}


def test_disynthon_heatmap(fitted, tmp_path):
    _, result, _, effects = fitted
    fig = plots.disynthon_heatmap(effects, ("cycle1", "cycle2"), path=tmp_path / "heat.png")
    assert _png(tmp_path / "heat.png")
    assert len(fig.axes) == 2  # the heatmap and its colour bar
    ax = fig.axes[0]
    a = effects[effects["cycle"] == "cycle1"]
    b = effects[effects["cycle"] == "cycle2"]
    expected = a["mean"].to_numpy()[:, None] + b["mean"].to_numpy()[None, :]
    np.testing.assert_allclose(np.asarray(ax.collections[0].get_array()).reshape(4, 4), expected)
    assert _labels(ax.get_yticklabels()) == a["building_block"].tolist()
    assert _labels(ax.get_xticklabels()) == b["building_block"].tolist()
    assert ax.get_xlabel() == "cycle2 building block"
    assert ax.get_ylabel() == "cycle1 building block"
    assert ax.get_title() == "Disynthon effects cycle1 × cycle2\n(sum of block effects)"
    assert fig.axes[1].get_ylabel() == "effect (natural log)"

    pairs = result.disynthon_effects(("cycle1", "cycle2"), num_samples=50)
    # the table with its pair rows appended, and with the cycles swapped (the family read backwards)
    fig = plots.disynthon_heatmap(pd.concat([effects, pairs], ignore_index=True), ("cycle2", "cycle1"))
    ax = fig.axes[0]
    assert ax.get_title() == "Disynthon effects cycle2 × cycle1\n(block effects + pair interaction)"
    interaction = pairs.pivot(index="block_b", columns="block_a", values="mean")
    interaction = interaction.reindex(index=b["building_block"], columns=a["building_block"]).to_numpy()
    np.testing.assert_allclose(np.asarray(ax.collections[0].get_array()).reshape(4, 4), expected.T + interaction)


def test_pose_attention(fitted, tmp_path):
    pred = fitted[2]
    fig = plots.pose_attention(pred, top=5, path=tmp_path / "attention.png")
    assert _png(tmp_path / "attention.png")
    assert len(fig.axes) == 2
    ax = fig.axes[0]
    top = pred.sort_values("log_enrichment_mean", ascending=False, kind="mergesort").head(5)
    assert _labels(ax.get_yticklabels()) == top["compound_id"].tolist()
    assert _labels(ax.get_xticklabels()) == ["0", "1", "2"]
    expected = top[["attention_pose_0", "attention_pose_1", "attention_pose_2"]].to_numpy()
    np.testing.assert_allclose(np.asarray(ax.collections[0].get_array()).reshape(5, 3), expected, rtol=1e-6)
    assert ax.get_title() == "Pose attention (top 5 by posterior mean)"
    assert ax.get_xlabel() == "pose"
    assert ax.get_ylabel() == "compound"
    assert fig.axes[1].get_ylabel() == "attention weight"
    weights = np.array([[0.2, 0.8], [0.5, 0.5], [1.0, 0.0]])
    fig = plots.pose_attention(weights, ["x", "y", "z"], top=2)
    assert _labels(fig.axes[0].get_yticklabels()) == ["x", "y"]
    assert fig.axes[0].get_title() == "Pose attention (first 2 compounds)"
    with pytest.raises(ValueError, match="non-negative"):
        plots.pose_attention(-weights)


def _inference_data(rng, shift):
    import arviz as az

    log_likelihood = rng.normal(-1.0 - shift, 0.05, size=(2, 100, 30))
    return az.from_dict(
        posterior={"mu": rng.normal(size=(2, 100))},
        log_likelihood={"y": log_likelihood},
        observed_data={"y": np.zeros(30)},
    )


def test_loo_comparison(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import arviz as az

        rng = np.random.default_rng(0)
        table = az.compare({"simple": _inference_data(rng, 0.5), "full": _inference_data(rng, 0.0)})
    fig = plots.loo_comparison(table, path=tmp_path / "loo.png")
    assert _png(tmp_path / "loo.png")
    (ax,) = fig.axes
    assert ax.get_title() == "Model comparison (PSIS-LOO)"
    assert ax.get_xlabel() == "elpd_loo (log scale, higher is better)"
    order = table.sort_values("rank")
    assert order.index[0] == "full"
    by_height = sorted(ax.get_yticklabels(), key=lambda t: -t.get_position()[1])
    assert [t.get_text().split("\n")[0] for t in by_height] == ["full", "simple"]  # best at the top
    assert by_height[0].get_text() == f"full\n(weight {order['weight'].iloc[0]:.2f})"
    circles, triangles = (container.lines[0] for container in ax.containers)
    np.testing.assert_allclose(circles.get_xdata(), order["elpd_loo"])
    np.testing.assert_allclose(triangles.get_xdata(), order["elpd_loo"].iloc[0] - order["elpd_diff"].iloc[1:])
    with pytest.raises(ValueError, match=r"arviz\.compare table"):
        plots.loo_comparison(pd.DataFrame({"x": [1.0]}))


def test_long_block_labels_are_cut_and_figures_show_in_a_kernel(tmp_path) -> None:
    effects = pd.DataFrame(
        {
            "cycle": ["smiles_a"] * 3,
            "building_block": ["O=C(O)c1ccc(S(N)(=O)=O)cc1CCCCCCCCCCCCCC", "CCN", "c1ccccc1N"],
            "mean": [1.0, 0.0, -0.5], "sd": [0.1] * 3, "q05": [0.8, -0.2, -0.7], "q50": [1.0, 0.0, -0.5],
            "q95": [1.2, 0.2, -0.3],
        }
    )  # fmt: skip
    fig = plots.building_block_forest(effects)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert "O=C(O)c1ccc(S(N)(=O)=O)…" in labels and "CCN" in labels
    assert all(len(label) <= 24 for label in labels)

    # a notebook that never imported pyplot still draws the returned figure as an image
    import nbformat
    from nbclient import NotebookClient

    code = (
        "import pandas as pd\nfrom delpyro import plots\n"
        "plots.training_curves(pd.DataFrame({'epoch': [1, 2], 'train_loss': [2.0, 1.0], 'val_loss': [2.1, 1.2],"
        " 'seconds': [1.0, 1.0]}))"
    )
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    NotebookClient(notebook, kernel_name="python3", timeout=120).execute()
    assert any("image/png" in output.get("data", {}) for output in notebook.cells[0].outputs)

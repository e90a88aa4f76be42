"""Tests of delpyro.metrics against independent computations on known inputs."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from delpyro.features import molecular_weight
from delpyro.metrics import (
    affinity_correlation,
    average_precision,
    calibration,
    hit_recovery,
    match_affinities,
    ppc_statistics,
)

SMILES = [
    "CC(=O)Oc1ccccc1C(=O)O",  # aspirin, 180.16
    "CC(C)Cc1ccc(cc1)C(C)C(=O)O",  # ibuprofen, 206.28
    "CC(=O)Nc1ccc(O)cc1",  # paracetamol, 151.16
    "Cn1cnc2c1c(=O)n(C)c(=O)n2C",  # caffeine, 194.19
    "CN1C(=O)CN=C(c2ccccc2)c2cc(Cl)ccc21",  # diazepam, 284.75
    "Cc1ccc(NC(=O)c2ccc(CN3CCN(C)CC3)cc2)cc1Nc1nccc(-c2cccnc2)n1",  # imatinib, 493.62
    "CN(C)C(=N)N=C(N)N",  # metformin, 129.17
    "CC(C)NCC(O)COc1cccc2ccccc12",  # propranolol, 259.35
]


def _pred(scores, ids=None):
    ids = ids if ids is not None else [f"c{i}" for i in range(len(scores))]
    return pd.DataFrame({"compound_id": ids, "log_enrichment_mean": np.asarray(scores, dtype=float)})


# ---------------------------------------------------------------------------------------------------
# affinities


def test_pk_of_one_nanomolar_is_nine_and_units_convert():
    pred = _pred([1.0, 2.0, 3.0])
    for unit, value in (("nM", 1.0), ("uM", 1e-3), ("M", 1e-9), ("pM", 1e3), ("mM", 1e-6), ("pK", 9.0)):
        affinities = pd.DataFrame({"compound_id": ["c0", "c1", "c2"], "Ki": [value, value * 10, value * 100]})
        if unit == "pK":
            affinities["Ki"] = [9.0, 8.0, 7.0]
        matched = match_affinities(pred, affinities, unit=unit)
        np.testing.assert_allclose(matched["pK"], [9.0, 8.0, 7.0], atol=1e-12)
    assert matched.attrs["pk_name"] == "pKi"


def test_spearman_and_pearson_equal_scipy_on_the_matched_rows():
    rng = np.random.default_rng(1)
    ids = [f"c{i}" for i in range(40)]
    scores = rng.normal(size=40)
    pred = _pred(scores, ids)
    # 25 measured compounds (shuffled, one unknown id, one compound measured twice), Kd in uM
    chosen = rng.permutation(40)[:25]
    kd_um = np.exp(-scores[chosen] + rng.normal(0, 0.7, size=25))
    affinities = pd.DataFrame({"compound_id": [ids[i] for i in chosen], "Kd": kd_um})
    extra = pd.DataFrame({"compound_id": ["unknown", ids[chosen[0]]], "Kd": [3.0, kd_um[0] * 100]})
    affinities = pd.concat([affinities, extra], ignore_index=True)
    table = affinity_correlation(pred, affinities, kind="Kd", unit="uM")

    # independent: pK by hand, the repeated compound as the mean of its two pKs
    pk = {ids[i]: 6 - math.log10(k) for i, k in zip(chosen, kd_um, strict=True)}
    pk[ids[chosen[0]]] = ((6 - math.log10(kd_um[0])) + (6 - math.log10(kd_um[0] * 100))) / 2
    x = np.array([scores[ids.index(c)] for c in pk])
    y = np.array(list(pk.values()))
    assert table.loc["all", "n"] == 25
    assert table.loc["all", "spearman"] == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert table.loc["all", "spearman_p"] == pytest.approx(stats.spearmanr(x, y).pvalue, rel=1e-9)
    assert table.loc["all", "pearson"] == pytest.approx(stats.pearsonr(x, y).statistic, abs=1e-12)
    assert table.loc["all", "pearson_p"] == pytest.approx(stats.pearsonr(x, y).pvalue, rel=1e-9)
    assert table.loc["all", "spearman"] > 0.5  # higher enrichment, smaller Kd: positive
    assert list(table.index) == ["all"]


def test_molecular_weight_window_from_training_smiles():
    ids = [f"m{i}" for i in range(len(SMILES))]
    scores = np.array([0.3, 1.2, -0.5, 0.8, 2.0, 2.5, -1.0, 1.0])
    pred = pd.DataFrame({"compound_id": ids, "smiles": SMILES, "log_enrichment_mean": scores})
    ic50 = np.array([900.0, 40.0, 5000.0, 120.0, 8.0, 3.0, 20000.0, 60.0])
    affinities = pd.DataFrame({"compound_id": ids, "IC50": ic50})
    train = SMILES[:6]
    table = affinity_correlation(pred, affinities, kind="IC50", train_smiles=train)

    weights = molecular_weight(SMILES)
    lo, hi = np.quantile(molecular_weight(train), [0.1, 0.9])
    inside = (weights >= lo) & (weights <= hi)
    pk = 9 - np.log10(ic50)
    assert table.loc["mw_window", "mw_low"] == pytest.approx(lo)
    assert table.loc["mw_window", "mw_high"] == pytest.approx(hi)
    assert table.loc["mw_window", "n"] == int(inside.sum()) == 5
    expected = stats.spearmanr(scores[inside], pk[inside]).statistic
    assert table.loc["mw_window", "spearman"] == pytest.approx(expected, abs=1e-12)
    assert table.loc["all", "pearson"] == pytest.approx(stats.pearsonr(scores, pk).statistic, abs=1e-12)

    explicit = affinity_correlation(pred, affinities, kind="IC50", mw_range=(150.0, 250.0))
    window = (weights >= 150) & (weights <= 250)
    assert explicit.loc["mw_window", "n"] == int(window.sum()) == 4
    expected = stats.pearsonr(scores[window], pk[window]).statistic
    assert explicit.loc["mw_window", "pearson"] == pytest.approx(expected, abs=1e-12)


def test_matching_on_smiles_canonicalizes():
    pred = pd.DataFrame({"compound_id": ["x", "y", "z"], "log_enrichment_mean": [1.0, 2.0, 3.0]})
    affinities = pd.DataFrame(
        # aspirin and paracetamol written differently from SMILES below; caffeine absent
        {"smiles": ["OC(=O)c1ccccc1OC(C)=O", "Oc1ccc(NC(C)=O)cc1", "c1ccccc1"], "Ki": [10.0, 1000.0, 5.0]}
    )
    matched = match_affinities(pred, affinities, smiles=[SMILES[0], SMILES[2], SMILES[3]])
    assert matched["compound_id"].tolist() == ["x", "y"]
    np.testing.assert_allclose(matched["pK"], [8.0, 6.0])


def test_affinity_errors_name_columns_and_rows():
    pred = _pred([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"no value column .*'Ki'.*columns are \['compound_id', 'affinity'\]"):
        affinity_correlation(pred, pd.DataFrame({"compound_id": ["c0"], "affinity": [1.0]}))
    bad = pd.DataFrame({"compound_id": ["c0", "c1", "c2"], "Ki": [5.0, -1.0, 0.0]})
    with pytest.raises(ValueError, match=r"column 'Ki', rows 1, 2 \(-1.0, 0.0\) are not positive"):
        affinity_correlation(pred, bad)
    text = pd.DataFrame({"compound_id": ["c0", "c1", "c2"], "Ki": ["5", ">10000", None]})
    with pytest.raises(ValueError, match=r"column 'Ki', rows 1, 2 \('>10000', (None|nan)\) are not numbers"):
        affinity_correlation(pred, text)
    with pytest.raises(ValueError, match="no compound_id matches a compound of pred"):
        affinity_correlation(pred, pd.DataFrame({"compound_id": ["q1", "q2"], "Ki": [1.0, 2.0]}))
    with pytest.raises(ValueError, match="no way to match compounds"):
        affinity_correlation(pred, pd.DataFrame({"name": ["c0"], "Ki": [1.0]}))
    with pytest.raises(ValueError, match="needs the matched compounds' SMILES"):
        affinity_correlation(pred, pd.DataFrame({"compound_id": ["c0"], "Ki": [1.0]}), mw_range=(100, 200))
    with pytest.raises(ValueError, match="unit must be one of"):
        affinity_correlation(pred, pd.DataFrame({"compound_id": ["c0"], "Ki": [1.0]}), unit="ng/ml")


# ---------------------------------------------------------------------------------------------------
# hits


def _brute_force_ap(score, truth):
    """Precision and recall at every distinct threshold, from masks, summed over recall steps."""
    thresholds = sorted(set(score), reverse=True)
    total = 0.0
    previous_recall = 0.0
    for t in thresholds:
        chosen = [s >= t for s in score]
        tp = sum(1 for c, y in zip(chosen, truth, strict=True) if c and y)
        precision = tp / sum(chosen)
        recall = tp / sum(truth)
        total += (recall - previous_recall) * precision
        previous_recall = recall
    return total


def test_average_precision_equals_brute_force_with_ties():
    assert average_precision([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.8333333333333333)
    rng = np.random.default_rng(3)
    for _ in range(20):
        score = rng.integers(0, 6, size=30).astype(float)  # many ties
        truth = rng.random(30) < 0.3
        truth[0] = True
        assert average_precision(score, truth) == pytest.approx(_brute_force_ap(list(score), list(truth)), abs=1e-12)
    assert math.isnan(average_precision([1.0, 2.0], [False, False]))


def test_hit_recovery_precision_recall_at_k():
    scores = np.array([0.9, 0.1, 0.8, 0.3, 0.7, 0.2, 0.6, 0.5])
    truth = np.array([True, False, False, True, True, False, False, True])
    pred = _pred(scores)
    table = hit_recovery(pred, truth, top_k=[1, 3, 5, 100])
    # ranking: 0 (T), 2 (F), 4 (T), 6 (F), 7 (T), 3 (T), 5 (F), 1 (F)
    assert table["k"].tolist() == [1, 3, 5, 8]
    assert table["true_positives"].tolist() == [1, 2, 3, 4]
    np.testing.assert_allclose(table["precision"], [1.0, 2 / 3, 3 / 5, 4 / 8])
    np.testing.assert_allclose(table["recall"], [0.25, 0.5, 0.75, 1.0])
    expected_ap = (1 / 1 + 2 / 3 + 3 / 5 + 4 / 6) / 4
    assert table["average_precision"].iloc[0] == pytest.approx(expected_ap)
    assert table["base_rate"].iloc[0] == 0.5

    # the same through p_enriched, and a truth table matched by id in another order
    pred["p_enriched"] = scores / 2
    frame = pd.DataFrame({"compound_id": pred["compound_id"][::-1], "is_binder": truth[::-1]})
    by_id = hit_recovery(pred, frame, top_k=3, score="p_enriched")
    assert by_id["true_positives"].tolist() == [2]
    assert by_id["average_precision"].iloc[0] == pytest.approx(expected_ap)


def test_hit_recovery_errors():
    pred = _pred([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="2 values for 3 compounds"):
        hit_recovery(pred, [True, False])
    with pytest.raises(ValueError, match=r"rows 1 \('yes'\) are not booleans|row 1 \('yes'\) are not booleans"):
        hit_recovery(pred, pd.Series([True, "yes", False]))
    with pytest.raises(ValueError, match="no column 'p_enriched'"):
        hit_recovery(pred, [True, False, True], score="p_enriched")
    with pytest.raises(ValueError, match="top_k must be"):
        hit_recovery(pred, [True, False, True], top_k=0)


# ---------------------------------------------------------------------------------------------------
# calibration


def test_calibration_on_a_known_normal_is_near_nominal():
    rng = np.random.default_rng(7)
    n = 20_000
    mean = rng.normal(0, 2, size=n)
    sd = rng.uniform(0.5, 2.0, size=n)
    truth = mean + sd * rng.normal(size=n)
    pred = pd.DataFrame({"compound_id": np.arange(n).astype(str), "log_enrichment_mean": mean, "log_enrichment_sd": sd})
    for q in (5, 25, 50, 75, 95):
        pred[f"log_enrichment_q{q:02d}"] = mean + sd * stats.norm.ppf(q / 100)
    table = calibration(pred, truth)
    assert table["level"].tolist() == [0.5, 0.8, 0.9, 0.95]
    assert table["method"].tolist() == ["quantiles", "normal", "quantiles", "normal"]
    assert (table["n"] == n).all()
    np.testing.assert_allclose(table["coverage"], table["nominal"], atol=0.01)


def test_calibration_uses_stored_quantiles_where_they_exist():
    # stored quantiles deliberately unlike the normal approximation
    pred = pd.DataFrame(
        {
            "log_enrichment_mean": [0.0, 0.0, 0.0, 0.0],
            "log_enrichment_sd": [1.0, 1.0, 1.0, 1.0],
            "log_enrichment_q05": [-0.1, -5.0, -5.0, -5.0],
            "log_enrichment_q95": [0.1, 5.0, 5.0, 5.0],
            "log_enrichment_q25": [-3.0, -3.0, -0.1, -0.1],
            "log_enrichment_q75": [3.0, 3.0, 0.1, 0.1],
        }
    )
    truth = np.array([1.0, 1.0, 1.0, 2.5])
    table = calibration(pred, truth, levels=(0.5, 0.9, 0.8)).set_index("level")
    # 0.5: [q25, q75] contains 1.0 in rows 0, 1; 0.9: [q05, q95] in rows 1, 2, 3
    assert table.loc[0.5, "coverage"] == 0.5
    assert table.loc[0.9, "coverage"] == 0.75
    # 0.8: normal, +- 1.2816: rows 0, 1, 2 (1.0) in, row 3 (2.5) out
    assert table.loc[0.8, "coverage"] == 0.75
    assert table.loc[0.8, "mean_width"] == pytest.approx(2 * stats.norm.ppf(0.9))
    assert table.loc[0.9, "mean_width"] == pytest.approx((0.2 + 10 + 10 + 10) / 4)


def test_calibration_errors():
    pred = pd.DataFrame({"log_enrichment_mean": [0.0, 1.0]})
    with pytest.raises(ValueError, match="no column 'log_enrichment_sd'"):
        calibration(pred, [0.0, 1.0])
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        calibration(pred.assign(log_enrichment_sd=1.0), [0.0, 1.0], levels=(1.0,))
    with pytest.raises(ValueError, match=r"row 1 \(nan\) are not finite"):
        calibration(pred.assign(log_enrichment_sd=1.0), [0.0, float("nan")])


# ---------------------------------------------------------------------------------------------------
# posterior predictive checks


def test_ppc_statistics_equal_numpy():
    observed = np.array([[0, 3], [2, 0], [0, 0], [5, 1]])
    replicated = np.array(
        [
            [[0, 1], [1, 0], [0, 2], [4, 0]],
            [[1, 1], [1, 1], [0, 0], [6, 2]],
            [[0, 0], [0, 0], [3, 0], [2, 0]],
        ]
    )
    table = ppc_statistics(observed, replicated, names=["t1", "t2"]).set_index(["replicate", "statistic"])
    assert len(table) == 8
    assert table.loc[("t1", "zero_fraction"), "observed"] == 0.5
    assert table.loc[("t2", "variance"), "observed"] == pytest.approx(np.var([3, 0, 0, 1]))
    # replicated maxima of t1: 4, 6, 3 against 5 observed
    row = table.loc[("t1", "maximum")]
    assert row["observed"] == 5
    assert row["replicated_mean"] == pytest.approx(13 / 3)
    assert row["ppp"] == pytest.approx(1 / 3)
    assert row["replicated_q05"] == pytest.approx(np.quantile([4, 6, 3], 0.05))
    # replicated zero fractions of t2: 0.5, 0.25, 1.0 against 0.5 observed (ties count)
    assert table.loc[("t2", "zero_fraction"), "ppp"] == pytest.approx(2 / 3)
    assert table.loc[("t2", "mean"), "replicated_mean"] == pytest.approx(np.mean([3 / 4, 4 / 4, 0]))
    # chains pooled: [chain, draw, compound, replicate] gives the same as the draws in a row
    chains = ppc_statistics(observed, np.stack([replicated, replicated]), names=["t1", "t2"])
    pooled = ppc_statistics(observed, np.concatenate([replicated, replicated]), names=["t1", "t2"])
    pd.testing.assert_frame_equal(chains, pooled)
    # one replicate as vectors
    single = ppc_statistics(observed[:, 0], replicated[:, :, 0]).set_index("statistic")
    assert single.loc["maximum", "ppp"] == pytest.approx(1 / 3)


def test_ppp_is_uniform_for_the_same_distribution_and_extreme_for_an_outlier():
    rng = np.random.default_rng(11)
    # 100 replicates observed from the model itself: their p-values are uniform, so they average 0.5
    observed = rng.poisson(2.0, size=(200, 100))
    replicated = rng.poisson(2.0, size=(300, 200, 100))
    table = ppc_statistics(pd.DataFrame(observed, columns=[f"r{i}" for i in range(100)]), replicated)
    assert table["replicate"].nunique() == 100
    means = table[table["statistic"] == "mean"]["ppp"]
    assert means.mean() == pytest.approx(0.5, abs=0.06)
    assert 0.2 < np.mean(means < 0.5) < 0.8
    observed[0, 0] = 1000
    outlier = ppc_statistics(observed[:, :2], replicated[:, :, :2]).set_index(["replicate", "statistic"])
    assert outlier.loc[("0", "maximum"), "ppp"] == 0.0
    assert outlier.loc[("0", "variance"), "ppp"] == 0.0
    assert outlier.loc[("1", "maximum"), "ppp"] > 0.0


def test_ppc_statistics_shape_errors():
    with pytest.raises(ValueError, match=r"observed \(4, 2\) and replicated \(3, 4, 3\)"):
        ppc_statistics(np.zeros((4, 2)), np.zeros((3, 4, 3)))
    with pytest.raises(ValueError, match="1 names for 2 replicates"):
        ppc_statistics(np.zeros((4, 2)), np.zeros((3, 4, 2)), names=["x"])
    with pytest.raises(ValueError, match="unknown"):
        ppc_statistics(np.zeros((4, 2)), np.zeros((3, 4, 2)), statistics=["median"])

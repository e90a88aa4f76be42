"""Hit calls at a posterior expected FDR (delpyro.hits) and the DESeq2 anchor (delpyro.baselines)."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import pytest

import delpyro
from delpyro import call_hits
from delpyro.baselines import deseq2_enrichment


def _prediction(p: np.ndarray, threshold: float = 1.5) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "compound_id": [f"c{i}" for i in range(p.size)],
            "log_enrichment_mean": np.log(p + 0.01),
            "p_enriched": p,
        }
    )
    frame.attrs["threshold"] = threshold
    return frame


def test_calls_the_largest_set_whose_mean_lfdr_is_within_the_level() -> None:
    rng = np.random.default_rng(0)
    p = rng.beta(0.3, 0.6, size=500)
    calls = call_hits(_prediction(p), fdr=0.1)
    lfdr = np.sort(1 - p)
    means = np.cumsum(lfdr) / np.arange(1, lfdr.size + 1)
    expected = max((k for k in range(1, lfdr.size + 1) if means[k - 1] <= 0.1), default=0)
    assert expected > 0
    assert calls.n_called == expected
    assert calls.expected_fdr == pytest.approx(means[expected - 1])
    assert calls.expected_fdr <= 0.1 < means[expected]  # one more would pass the level
    hits = calls.hits
    # the called are those of smallest lfdr, and the table keeps the prediction's rows as its index
    assert hits["lfdr"].max() <= calls.table.loc[~calls.table["called"], "lfdr"].min()
    assert np.allclose(hits["lfdr"], 1 - p[hits.index.to_numpy()])
    assert list(hits["compound_id"]) == [f"c{i}" for i in hits.index]
    assert calls.expected_false == pytest.approx(hits["lfdr"].sum())
    text = str(calls)
    assert f"called {expected:,} of 500" in text and "above 1.5" in text and "<= 0.1" in text
    assert html.escape(text) in calls._repr_html_()


def test_the_realized_fdr_matches_the_level_when_the_probabilities_are_calibrated() -> None:
    # truth drawn from the stated probabilities: the realized FDR of a call is then, on average, its
    # expected FDR; a rule that called by p > 1 - level would be far more conservative
    rng = np.random.default_rng(1)
    realized, counts = [], []
    for _ in range(40):
        p = rng.beta(0.4, 1.2, size=2000)
        truth = rng.random(p.size) < p
        calls = call_hits(_prediction(p), fdr=0.05)
        called = calls.table["called"].to_numpy()
        index = calls.table.index.to_numpy()[called]
        realized.append(float((~truth[index]).mean()))
        counts.append(calls.n_called)
    assert np.mean(realized) == pytest.approx(0.05, abs=0.006)
    strict = np.mean([(p > 0.95).sum() for p in [rng.beta(0.4, 1.2, size=2000) for _ in range(40)]])
    assert np.mean(counts) > 1.5 * strict


def test_nothing_called_and_bad_input() -> None:
    calls = call_hits(_prediction(np.full(10, 0.5)), fdr=0.05)
    assert calls.n_called == 0 and calls.expected_fdr == 0.0 and calls.hits.empty
    with pytest.raises(ValueError, match="fdr must be in"):
        call_hits(_prediction(np.full(3, 0.9)), fdr=0.0)
    with pytest.raises(ValueError, match="no column 'p_hit'"):
        call_hits(_prediction(np.full(3, 0.9)), column="p_hit")
    bad = np.array([0.2, 1.2, np.nan, 0.9])
    with pytest.raises(ValueError, match=r"2 values outside \[0, 1\] or missing \(rows 1, 2\)"):
        call_hits(_prediction(bad))


def test_deseq2_finds_the_enriched_compounds_of_a_deep_screen() -> None:
    # a deep multiplicative screen: target over control is the true enrichment t
    screen = delpyro.simulate_del(seed=3, n_per_cycle=(10, 10, 10), combine="multiplicative", reads_per_compound=20.0)
    out = deseq2_enrichment(screen, lfc_null=0.0, alt_hypothesis="greater")
    assert list(out["compound_id"]) == list(screen.compound_id)
    log_t = screen.truth["log_target_enrichment"].to_numpy()
    tested = out["log2_fold_change"].notna().to_numpy()
    rho = pd.Series(out["log2_fold_change"][tested].to_numpy()).corr(pd.Series(log_t[tested]), method="spearman")
    assert rho > 0.5
    called = (out["p_adjusted"] < 0.05).to_numpy()
    assert called.sum() >= 10
    # what DESeq2 calls enriched is enriched: t well above the library's median
    assert np.median(log_t[called]) > np.median(log_t) + 1.0


def test_deseq2_needs_controls() -> None:
    screen = delpyro.simulate_del(seed=0, n_per_cycle=(4, 4, 4), n_control_replicates=0)
    with pytest.raises(ValueError, match="no controls"):
        deseq2_enrichment(screen)


def test_choose_terms_keeps_the_candidate_of_highest_held_out_predictive_density() -> None:
    screen = delpyro.simulate_del(seed=4, n_per_cycle=(6, 6, 5))
    train, val, _ = delpyro.split(screen, "random", (0.7, 0.3, 0.0), seed=0)
    config = delpyro.ModelConfig(hidden_size=16, n_layers=1, fingerprint_bits=256)
    candidates = {"blocks": ("building_blocks", "compound"), "network": ("fingerprint",), "poses": ("poses",)}
    choice = delpyro.choose_terms(
        train, val, config, candidates=candidates, num_samples=50, epochs=4, seed=0, progress="none"
    )
    table = choice.table.set_index("candidate")
    assert set(choice.results) == {"blocks", "network"}  # the screen has no poses
    assert not table.loc["poses", "fitted"] and table.loc["poses", "note"] == "the screen has no poses"
    assert choice.chosen == table["lpd"].idxmax() and choice.result is choice.results[choice.chosen]
    assert choice.results["blocks"].model.terms == ("building_blocks", "compound")
    for name, result in choice.results.items():
        # the lpd by hand: log of the mean predictive probability over draws, per compound, averaged
        idata = result.to_inference_data(val, num_samples=50 if result.model.latent_terms else 1)
        log_lik = idata.log_likelihood["counts"].values.reshape(-1, val.n_compounds)
        by_hand = np.mean(np.log(np.mean(np.exp(log_lik - log_lik.max(0)), 0)) + log_lik.max(0))
        assert table.loc[name, "lpd"] == pytest.approx(by_hand, rel=1e-9)
        # never below the mean log-likelihood (Jensen), the quantity the validation loss is built on
        assert table.loc[name, "lpd"] >= log_lik.mean(0).mean() - 1e-9
        # no early stopping by default: the last epoch is kept, with its validation loss
        assert table.loc[name, "epoch"] == 4 and not result.stopped_early
        assert table.loc[name, "val_loss"] == result.history["val_loss"].iloc[-1]
        assert table.loc[name, "difference"] == pytest.approx(table.loc[name, "lpd"] - table["lpd"].max())
    assert list(choice.table["candidate"])[-1] == "poses"
    assert str(choice).startswith(f"chose {choice.chosen!r}")
    with pytest.raises(ValueError, match="validation screen"):
        delpyro.choose_terms(train, None, config)


def test_choose_terms_with_early_stopping_reports_the_epoch_it_kept() -> None:
    screen = delpyro.simulate_del(seed=4, n_per_cycle=(6, 6, 5))
    train, val, _ = delpyro.split(screen, "random", (0.7, 0.3, 0.0), seed=0)
    config = delpyro.ModelConfig(lr=0.2, guide_lr=0.5, local_lr=0.5)  # steps large enough to overshoot
    candidates = {"blocks": ("building_blocks", "compound")}
    choice = delpyro.choose_terms(
        train, val, config, candidates=candidates, early_stopping_patience=1, epochs=30, seed=0, progress="none"
    )
    result, row = choice.result, choice.table.iloc[0]
    assert result.stopped_early and result.epoch < 30
    assert row["epoch"] == result.best_epoch < result.epoch
    assert row["val_loss"] == result.history["val_loss"].min() == result.best_val_loss

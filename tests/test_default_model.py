"""The default model against the DEL-Dock preset and the baselines, on the project's simulator.

Three simulated screens (seeds 0, 1, 2) of 3,375 compounds, 10 epochs per fit. The numbers are printed
(run with ``-s``) and recorded in the README.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

import delpyro
from delpyro import ModelConfig, building_block_baseline, fit, naive_enrichment, split

SEEDS = (0, 1, 2)
EPOCHS = 10


def _held_out_spearman(result, test) -> float:
    truth = test.truth["log_target_enrichment"].to_numpy()
    return spearmanr(result.predict(test, num_samples=100)["log_enrichment_mean"], truth).statistic


@pytest.fixture(scope="module")
def scores() -> dict[str, np.ndarray]:
    torch.set_num_threads(2)
    out: dict[str, list[float]] = {k: [] for k in ("naive", "default", "del-dock", "bb_mean", "bb_default")}
    for seed in SEEDS:
        data = delpyro.simulate_del(seed=seed, n_per_cycle=(15, 15, 15))
        train, _, test = split(data, "random", (0.8, 0.0, 0.2), seed=seed)
        truth = test.truth["log_target_enrichment"].to_numpy()
        out["naive"].append(spearmanr(naive_enrichment(test), truth).statistic)
        default = fit(train, None, ModelConfig(epochs=EPOCHS), seed=seed, progress="none")
        assert set(default.model.terms) == {"fingerprint", "building_blocks", "compound"}
        out["default"].append(_held_out_spearman(default, test))
        # the simulated screen has no docked poses: the preset's fingerprint network alone
        del_dock = ModelConfig.preset("del-dock", terms=("fingerprint",), epochs=EPOCHS)
        out["del-dock"].append(_held_out_spearman(fit(train, None, del_dock, seed=seed, progress="none"), test))
        train, _, test = split(data, "building_block", (0.8, 0.0, 0.2), seed=seed)
        truth = test.truth["log_target_enrichment"].to_numpy()
        out["bb_mean"].append(spearmanr(building_block_baseline(train, test), truth).statistic)
        out["bb_default"].append(
            _held_out_spearman(fit(train, None, ModelConfig(epochs=EPOCHS), seed=seed, progress="none"), test)
        )
    print()
    for name, values in out.items():
        print(f"{name:>10}: " + "  ".join(f"{v:.3f}" for v in values) + f"   mean {np.mean(values):.3f}")
    return {k: np.asarray(v) for k, v in out.items()}


def test_default_beats_the_del_dock_preset_and_the_naive_estimate_on_a_random_split(scores) -> None:
    assert np.all(scores["default"] > scores["naive"] + 0.15)
    assert scores["default"].mean() > scores["del-dock"].mean() + 0.03
    assert np.sum(scores["default"] > scores["del-dock"]) >= 2


def test_default_beats_the_building_block_mean_on_a_building_block_split(scores) -> None:
    assert np.all(scores["bb_default"] > scores["bb_mean"])
    assert scores["bb_default"].mean() > scores["bb_mean"].mean() + 0.1

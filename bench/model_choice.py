"""Which model should be the default? Fit candidate configurations to simulated screens and compare them.

For each candidate: held-out Spearman with the true log target enrichment (random split and a split that
holds out whole building blocks of one cycle), coverage of the 50% and 90% posterior intervals on the
training compounds (against the truth on the model's scale), and the seconds the fit took. Baselines: the
naive estimate (log of depth-normalized (target + 1) / (control + 1)) and the building-block mean.

    python bench/model_choice.py            # 27,000 compounds, 15 epochs (about 10 minutes on 2 cores)
    python bench/model_choice.py --quick    # 3,375 compounds, 5 epochs

Prints one ``name: value`` line per figure and a table at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

import delpyro
from delpyro import (
    ModelConfig,
    building_block_baseline,
    calibration,
    fit,
    naive_enrichment,
    split,
    truth_on_model_scale,
)

CANDIDATES = {
    "default: fingerprint + blocks + compound, ZINB": ModelConfig(),
    "default with network lr 1e-3": ModelConfig(lr=1e-3),
    "blocks + compound, ZINB (no network)": ModelConfig(terms=("building_blocks", "compound")),
    "fingerprint + blocks + compound, ZIP": ModelConfig(likelihood="zip"),
    "fingerprint + blocks + compound, NB": ModelConfig(likelihood="nb"),
    "fingerprint + blocks + compound, ZINB, multiplicative": ModelConfig(combine="multiplicative"),
    "fingerprint only, ZIP (point gates)": ModelConfig(
        terms=("fingerprint",), likelihood="zip", gates="learned", lr=1e-3
    ),
    "del-dock preset": ModelConfig.preset("del-dock", terms=("fingerprint",)),
}


def coverage(prediction: pd.DataFrame, truth: np.ndarray) -> tuple[float, float]:
    """Coverage of the 50% and 90% central intervals (``delpyro.calibration``)."""
    table = calibration(prediction, truth, levels=(0.5, 0.9))
    return float(table["coverage"].iloc[0]), float(table["coverage"].iloc[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small screen and few epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", help="candidate names to run (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    n_per_cycle = (15, 15, 15) if args.quick else (30, 30, 30)
    epochs = 5 if args.quick else 15
    data = delpyro.simulate_del(seed=args.seed, n_per_cycle=n_per_cycle)
    print(f"screen: {data.n_compounds} compounds, seed {args.seed}, {epochs} epochs")
    splits = {
        "random": split(data, "random", (0.8, 0.0, 0.2), seed=args.seed),
        "building_block": split(data, "building_block", (0.8, 0.0, 0.2), seed=args.seed),
    }
    rows = []
    for how, (train, _, test) in splits.items():
        truth = test.truth["log_target_enrichment"].to_numpy()
        baselines = {"naive": naive_enrichment(test)}
        if how == "building_block":
            baselines["building-block mean"] = building_block_baseline(train, test)
        for name, score in baselines.items():
            rho = spearmanr(score, truth).statistic
            print(f"{how} {name} spearman: {rho:.3f}")
            rows.append({"split": how, "model": f"baseline: {name}", "spearman": rho})
        for name, config in CANDIDATES.items():
            if args.only and name not in args.only:
                continue
            config = dataclasses.replace(config, epochs=epochs)
            started = time.perf_counter()
            result = fit(train, None, config, seed=args.seed, progress="none")
            seconds = time.perf_counter() - started
            rho = spearmanr(result.predict(test, num_samples=100)["log_enrichment_mean"], truth).statistic
            row = {"split": how, "model": name, "spearman": rho, "fit_seconds": seconds}
            if how == "random" and result.model.latent_terms:
                on_train = result.predict(train, num_samples=200)
                row["coverage50"], row["coverage90"] = coverage(on_train, truth_on_model_scale(result, train))
            print(", ".join(f"{k}: {v:.3f}" if isinstance(v, float) else f"{k}: {v}" for k, v in row.items()))
            rows.append(row)
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_columns", 10):
        print(table.round(3).to_string(index=False))


if __name__ == "__main__":
    main()

"""Held-out ranking on the real 53BP1 screen: the default model against the building-block average.

    python bench/real_screen.py            # seeds 0-2, 20 epochs with early stopping (about 5 minutes)
    python bench/real_screen.py --quick    # one seed, 2 epochs
    python bench/real_screen.py --config batch_size=2048   # any ModelConfig field

The screen is UNCDEL003 against 53BP1 with its library completed (``delpyro.datasets.uncdel003_53bp1()``,
58,080 members). For each seed, a random 80/10/10 split; the default model (``ModelConfig()`` with the
given fields) and the model without a network (``terms=("building_blocks", "compound")``) are fitted
with early stopping (patience 3) on the validation part. Printed per seed and method, then as means: the
Spearman correlation of the held-out compounds' posterior mean log enrichment with their reads (each
replicate over its reads per compound, averaged), over every held-out member (``all``) and over those the
published table lists (``listed``). The building-block average (``delpyro.building_block_baseline``) is
the baseline.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, config_overrides, line, machine_lines

import delpyro


def normalized_reads(data: delpyro.DELData, reference: delpyro.DELData) -> np.ndarray:
    depth = reference.target_counts.sum(0) / reference.n_compounds
    return (data.target_counts / depth).mean(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one seed, 2 epochs")
    parser.add_argument("--config", action="append", default=[], help="a ModelConfig field, name=value (repeatable)")
    parser.add_argument("--cache", default=str(ROOT / "runs" / "cache"), help="fingerprint cache")
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)  # what reading and completion did
    seeds, epochs = ((0,), 2) if args.quick else ((0, 1, 2), 20)
    overrides = config_overrides(args.config)
    machine_lines("cpu")
    line("config", ", ".join(args.config) or "defaults")
    screen = delpyro.datasets.uncdel003_53bp1()
    line("compounds", screen.n_compounds)
    methods = {
        "default": delpyro.ModelConfig(**{"epochs": epochs, **overrides}),
        "no_network": delpyro.ModelConfig(**{"epochs": epochs, **overrides, "terms": ("building_blocks", "compound")}),
    }
    rows = []
    for seed in seeds:
        train, val, test = delpyro.split(screen, "random", seed=seed)
        observed = normalized_reads(test, screen)
        predictions = {"building_block_average": delpyro.building_block_baseline(train, test)}
        for name, config in methods.items():
            fitted = delpyro.fit(
                train, val, config, seed=seed, progress="none", cache_dir=args.cache, early_stopping_patience=3
            )
            predictions[name] = fitted.predict(test, cache_dir=args.cache)["log_enrichment_mean"].to_numpy()
        for name, predicted in predictions.items():
            listed = test.observed
            row = {
                "seed": seed,
                "method": name,
                "all": float(spearmanr(predicted, observed).statistic),
                "listed": float(spearmanr(predicted[listed], observed[listed]).statistic),
            }
            rows.append(row)
            line(f"seed{seed}_{name}_all", row["all"])
            line(f"seed{seed}_{name}_listed", row["listed"])
    means = pd.DataFrame(rows).groupby("method")[["all", "listed"]].mean()
    for name, row in means.iterrows():
        line(f"mean_{name}_all", float(row["all"]))
        line(f"mean_{name}_listed", float(row["listed"]))


if __name__ == "__main__":
    main()

"""How long the default model takes on a screen of 100,000 compounds, and how good the fit is.

Simulates the default screen with 47 blocks per cycle (103,823 compounds), holds out 10% at random, fits
``ModelConfig()`` for its default epochs on this machine's cores, and reports the fit's seconds, the
held-out Spearman with the true log target enrichment (and the naive estimate's), and the coverage of the
50% and 90% posterior intervals on the training compounds.

    python bench/default_fit.py             # about 5 minutes on 2 cores
    python bench/default_fit.py --quick     # 3,375 compounds
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy.stats import spearmanr

import delpyro
from delpyro import ModelConfig, fit, naive_enrichment, split, truth_on_model_scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small screen")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n = 15 if args.quick else 47
    data = delpyro.simulate_del(seed=args.seed, n_per_cycle=(n, n, n))
    train, _, test = split(data, "random", (0.9, 0.0, 0.1), seed=args.seed)
    config = ModelConfig()
    print(f"compounds: {data.n_compounds}")
    print(f"epochs: {config.epochs}")
    started = time.perf_counter()
    result = fit(train, None, config, seed=args.seed, progress="text")
    print(f"fit_seconds: {time.perf_counter() - started:.1f}")
    truth = test.truth["log_target_enrichment"].to_numpy()
    started = time.perf_counter()
    held_out = result.predict(test, num_samples=200)
    print(f"predict_seconds_held_out: {time.perf_counter() - started:.1f}")
    print(f"held_out_spearman: {spearmanr(held_out['log_enrichment_mean'], truth).statistic:.3f}")
    print(f"naive_spearman: {spearmanr(naive_enrichment(test), truth).statistic:.3f}")
    on_train = result.predict(train, num_samples=200)
    target = truth_on_model_scale(result, train)
    inside90 = (on_train["log_enrichment_q05"] <= target) & (target <= on_train["log_enrichment_q95"])
    inside50 = (on_train["log_enrichment_q25"] <= target) & (target <= on_train["log_enrichment_q75"])
    print(f"coverage50: {np.mean(inside50):.3f}")
    print(f"coverage90: {np.mean(inside90):.3f}")


if __name__ == "__main__":
    main()

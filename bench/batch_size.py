"""Does a larger batch cost the default model anything? Fit time, ranking and calibration by batch size.

For each seed, a simulated screen (``simulate_del(seed, n_per_cycle)``) is split 80/20 twice: at random,
and by whole building blocks of one cycle. The default model (``ModelConfig()``, its learning rates
unchanged) is fitted for the same number of epochs at each batch size. Per seed and batch size it reports
the fit's seconds, the held-out Spearman with the true log target enrichment on both splits, and on the
random split the coverage of the 50% and 90% posterior intervals on the training compounds (against the
truth on the model's scale). Larger batches mean fewer network steps per epoch; the per-compound effects
move once an epoch whatever the batch.

    python bench/batch_size.py             # 27,000 compounds, seeds 0-2, batches 256-4096 (about 8 minutes)
    python bench/batch_size.py --quick     # 3,375 compounds, one seed, two batch sizes
    python bench/batch_size.py --n-per-cycle 15 15 15 --batches 128 256 512 1024   # another screen size
    python bench/batch_size.py --batches 0 256     # 0: the default, a batch that grows with the screen

Prints ``name: value`` lines (``seed{s}_batch{b}_...``), then the means over seeds as a table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import line, machine_lines

import delpyro
from delpyro import ModelConfig, calibration, fit, split, truth_on_model_scale


def coverage(prediction: pd.DataFrame, truth: np.ndarray) -> tuple[float, float]:
    """Coverage of the 50% and 90% central intervals (``delpyro.calibration``)."""
    table = calibration(prediction, truth, levels=(0.5, 0.9))
    return float(table["coverage"].iloc[0]), float(table["coverage"].iloc[1])


def measure(seed: int, n_per_cycle: tuple[int, ...], batch: int, epochs: int, cache: str) -> dict[str, float]:
    data = delpyro.simulate_del(seed=seed, n_per_cycle=n_per_cycle)
    row: dict[str, float] = {}
    for how in ("random", "building_block"):
        train, _, test = split(data, how, (0.8, 0.0, 0.2), seed=seed)
        config = ModelConfig(batch_size=batch or None, epochs=epochs)
        started = time.perf_counter()
        result = fit(train, None, config, seed=seed, progress="none", cache_dir=cache)
        seconds = time.perf_counter() - started
        truth = test.truth["log_target_enrichment"].to_numpy()
        predicted = result.predict(test, num_samples=100, cache_dir=cache)["log_enrichment_mean"]
        row[f"spearman_{how}"] = float(spearmanr(predicted, truth).statistic)
        if how == "random":
            row["fit_s"] = seconds
            on_train = result.predict(train, num_samples=200, cache_dir=cache)
            row["cov50"], row["cov90"] = coverage(on_train, truth_on_model_scale(result, train))
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3,375 compounds, one seed, batches 256 and 1024")
    parser.add_argument("--seeds", type=int, nargs="*", default=None, help="simulation and fit seeds (default 0 1 2)")
    parser.add_argument("--batches", type=int, nargs="*", default=None, help="batch sizes (default 256 1024 2048 4096)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--n-per-cycle", type=int, nargs="+", default=None, help="blocks per cycle (default 30 30 30)")
    parser.add_argument("--cache", default=str(Path(__file__).resolve().parent.parent / "runs" / "bench" / "cache"))
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    n_per_cycle = tuple(args.n_per_cycle or ((15, 15, 15) if args.quick else (30, 30, 30)))
    seeds = args.seeds if args.seeds is not None else ([0] if args.quick else [0, 1, 2])
    batches = args.batches or ([256, 1024] if args.quick else [256, 1024, 2048, 4096])
    epochs = 3 if args.quick else args.epochs
    machine_lines("cpu")
    line("compounds", int(np.prod(n_per_cycle)))
    line("epochs", epochs)
    rows = []
    for seed in seeds:
        for batch in batches:
            row = measure(seed, n_per_cycle, batch, epochs, args.cache)
            for name, value in row.items():
                line(f"seed{seed}_batch{batch}_{name}", value)
            rows.append({"seed": seed, "batch": batch, **row})
    columns = ["fit_s", "spearman_random", "spearman_building_block", "cov50", "cov90"]
    print(pd.DataFrame(rows).groupby("batch")[columns].mean().round(3).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Interval calibration of the default model on the simulator: screened and held-out compounds, by decile.

    python bench/calibration.py            # 3 seeds x 2 screen sizes (about 5 minutes)
    python bench/calibration.py --quick    # one seed, 1,000 compounds, 2 epochs
    python bench/calibration.py --config batch_size=256     # any ModelConfig field

For each seed and size, ``simulate_del`` at its defaults, a random 80/10/10 split, the default model
(``ModelConfig()``, 20 epochs, no early stopping), ``predict`` with 200 draws on the training compounds
(``screened``: each has its own posterior effect) and on the held-out test compounds (``held_out``: their
own effect from its prior). The truth is put on the model's scale (``truth_on_model_scale``). Printed as
means over seeds: the share of compounds whose 90% and 50% central intervals hold the true log target
enrichment (target: 0.80 to 0.97 and 0.40 to 0.60), overall and per decile of the true enrichment
(``d10`` the most enriched tenth, where the binders are).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import config_overrides, fit_bench_parser, line, machine_lines

import delpyro


def coverage(prediction: pd.DataFrame, truth: np.ndarray) -> dict[str, float]:
    """90% and 50% coverage (``delpyro.calibration``) overall and per decile of ``truth`` (d1 lowest)."""

    def both(rows: np.ndarray | slice) -> dict[str, float]:
        table = delpyro.calibration(prediction.iloc[rows], truth[rows], levels=(0.9, 0.5)).set_index("level")
        return {"cov90": float(table.loc[0.9, "coverage"]), "cov50": float(table.loc[0.5, "coverage"])}

    out = both(slice(None))
    decile = np.minimum((pd.Series(truth).rank(method="first").to_numpy() - 1) * 10 // truth.size, 9).astype(int)
    for d in range(10):
        for key, value in both(np.flatnonzero(decile == d)).items():
            out[f"{key}_d{d + 1}"] = value
    return out


def main() -> None:
    parser = fit_bench_parser(__doc__, "one seed, 10 blocks a cycle, 2 epochs")
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)
    if args.quick:
        seeds, sizes, epochs = (0,), ((10, 10, 10),), 2
    else:
        seeds, sizes, epochs = (0, 1, 2), ((15, 15, 15), (30, 30, 30)), 20
    config = delpyro.ModelConfig(**{"epochs": epochs, **config_overrides(args.config)})
    machine_lines("cpu")
    line("config", ", ".join(args.config) or "defaults")
    for cycles in sizes:
        n = int(np.prod(cycles))
        rows: dict[str, list[dict[str, float]]] = {"screened": [], "held_out": []}
        for seed in seeds:
            screen = delpyro.simulate_del(seed=seed, n_per_cycle=cycles)
            train, _, test = delpyro.split(screen, "random", seed=seed)
            fitted = delpyro.fit(train, None, config, seed=seed, progress="none", cache_dir=args.cache)
            for name, part in (("screened", train), ("held_out", test)):
                prediction = fitted.predict(part, cache_dir=args.cache)
                rows[name].append(coverage(prediction, delpyro.truth_on_model_scale(fitted, part)))
        for name, values in rows.items():
            for key, value in pd.DataFrame(values).mean().items():
                line(f"n{n}_{name}_{key}", float(value))


if __name__ == "__main__":
    main()

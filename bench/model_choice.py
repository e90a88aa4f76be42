"""Which model should be the default? Candidates on simulated screens, over seeds, beside the baselines.

    python bench/model_choice.py            # 27,000 compounds, seeds 0-2, 20 epochs (about 15 min on 2 cores)
    python bench/model_choice.py --quick    # 3,375 compounds, one seed, 3 epochs
    python bench/model_choice.py --config network_prior_scale=0.3    # every candidate with a field changed

For each seed, ``simulate_del(seed, n_per_cycle)`` at the simulator's defaults (multiplicative truth,
abundance over about one and a half orders of magnitude), split 80/10/10 at random and by whole building
blocks of one cycle (``delpyro.split``). Each candidate is fitted to the training part (20 epochs, no early
stopping: the settings a user gets) and scored on the held-out part: the Spearman correlation of the
posterior mean log target enrichment with the truth, and on the random split the coverage of the held-out
compounds' 50% and 90% intervals of the truth on the model's scale (``truth_on_model_scale``). Baselines:
the naive estimate (``naive_enrichment``) and the building-block average (``building_block_baseline``).
Printed as ``name: value`` lines per seed, then as means over seeds.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import config_overrides, fit_bench_parser, line, machine_lines

import delpyro
from delpyro import ModelConfig

#: candidate name: the fields it sets on top of the defaults (and ``--config``)
CANDIDATES = {
    "default": {},
    "network_without_prior": {"network_prior_scale": None},
    "no_network": {"terms": ("building_blocks", "compound")},
    "network_only": {"terms": ("fingerprint",)},
    "del_dock": ("del-dock", {"terms": ("fingerprint",)}),  # the preset, without its poses
}


def candidate_config(spec: dict | tuple[str, dict], overrides: dict, epochs: int) -> ModelConfig:
    if isinstance(spec, tuple):
        preset, fields = spec
        return ModelConfig.preset(preset, **{"epochs": epochs, **overrides, **fields})
    return ModelConfig(**{"epochs": epochs, **overrides, **spec})


def coverage(prediction: pd.DataFrame, truth: np.ndarray) -> tuple[float, float]:
    table = delpyro.calibration(prediction, truth, levels=(0.5, 0.9))
    return float(table["coverage"].iloc[0]), float(table["coverage"].iloc[1])


def main() -> None:
    parser = fit_bench_parser(__doc__, "3,375 compounds, one seed, 3 epochs")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--only", nargs="*", help="candidate names to run (default: all)")
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)
    seeds, epochs, cycles = (range(1), 3, (15, 15, 15)) if args.quick else (range(args.seeds), 20, (30, 30, 30))
    overrides = config_overrides(args.config)
    machine_lines("cpu")
    line("config", ", ".join(args.config) or "defaults")
    line("compounds", int(np.prod(cycles)))
    rows = []
    for seed in seeds:
        screen = delpyro.simulate_del(seed=seed, n_per_cycle=cycles)
        for how in ("random", "building_block"):
            train, _, test = delpyro.split(screen, how, seed=seed)
            truth = test.truth["log_target_enrichment"].to_numpy()
            first = len(rows)  # this split's rows start here
            scores = {"naive": delpyro.naive_enrichment(test)}
            scores["bb_average"] = delpyro.building_block_baseline(train, test)
            for name, score in scores.items():
                rows.append({"seed": seed, "split": how, "method": name, "spearman": spearmanr(score, truth).statistic})
            for name, spec in CANDIDATES.items():
                if args.only and name not in args.only:
                    continue
                config = candidate_config(spec, overrides, epochs)
                fitted = delpyro.fit(train, None, config, seed=seed, progress="none", cache_dir=args.cache)
                prediction = fitted.predict(test, num_samples=200, cache_dir=args.cache)
                row = {"seed": seed, "split": how, "method": name}
                row["spearman"] = spearmanr(prediction["log_enrichment_mean"], truth).statistic
                if how == "random" and fitted.model.latent_terms:
                    truth_on_scale = delpyro.truth_on_model_scale(fitted, test)
                    row["coverage50"], row["coverage90"] = coverage(prediction, truth_on_scale)
                rows.append(row)
            for row in rows[first:]:
                for field in ("spearman", "coverage50", "coverage90"):
                    if field in row:
                        line(f"seed{seed}_{how}_{row['method']}_{field}", float(row[field]))
    means = pd.DataFrame(rows).drop(columns="seed").groupby(["split", "method"], sort=False).mean()
    for (how, name), row in means.iterrows():
        for field, value in row.items():
            if not pd.isna(value):
                line(f"mean_{how}_{name}_{field}", float(value))


if __name__ == "__main__":
    main()

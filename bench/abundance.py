"""Does the ranked enrichment carry the library's abundance? Additive against multiplicative combine.

    python bench/abundance.py            # 2 simulators x load/no load x 2 combines x 3 seeds (about 10 min)
    python bench/abundance.py --quick    # one seed, small screens, 2 epochs

Library abundance (synthesis yield, amplification) multiplies a compound's reads in every selection,
control and target alike. The simulator draws it log-normal over about one and a half orders of magnitude
(``load_noise=0.8``, the simulator's default, beside the blocks' yields: 95% of compounds within a factor of
about 30), shared by
every selection; with ``with_load`` the screen carries it as a pre-selection count. For each truth
(``simulate_del(combine=...)``: "additive", DEL-Dock's m + t, or "multiplicative", m t) and each model
combine, a random 80/10/10 split and a fit of the default model otherwise (20 epochs). Printed per setting
as means over seeds: the Spearman correlation of held-out compounds' posterior mean log target enrichment
with the true log t (``spearman_truth``) and with the true log abundance (``spearman_abundance``: how much
of the ranking is abundance; near 0 is right, as the simulator draws the two independently), and the
naive estimate's (log of normalized target over control reads) for reference.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import config_overrides, fit_bench_parser, line, machine_lines

import delpyro


def main() -> None:
    parser = fit_bench_parser(__doc__, "one seed, 12 blocks a cycle, 2 epochs")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--load-noise", type=float, default=0.8, help="the simulator's abundance spread (log sd)")
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)
    seeds, epochs, cycles = (range(1), 2, (12, 12, 12)) if args.quick else (range(args.seeds), 20, (20, 20, 20))
    overrides = config_overrides(args.config)
    machine_lines("cpu")
    line("compounds", int(np.prod(cycles)))
    line("load_noise", args.load_noise)
    for truth in ("additive", "multiplicative"):
        for with_load in (True, False):
            scores: dict[str, list[tuple[float, float]]] = {}
            for seed in seeds:
                screen = delpyro.simulate_del(
                    seed=seed, n_per_cycle=cycles, combine=truth, with_load=with_load, load_noise=args.load_noise
                )
                train, val, test = delpyro.split(screen, "random", seed=seed)
                log_t = test.truth["log_target_enrichment"].to_numpy()
                log_abundance = np.log(test.truth["load"].to_numpy())
                predictions = {"naive": delpyro.naive_enrichment(test)}
                for combine in ("additive", "multiplicative"):
                    config = delpyro.ModelConfig(**{"epochs": epochs, **overrides, "combine": combine})
                    fitted = delpyro.fit(train, val, config, seed=seed, progress="none", cache_dir=args.cache)
                    prediction = fitted.predict(test, cache_dir=args.cache)
                    predictions[combine] = prediction["log_enrichment_mean"].to_numpy()
                for name, value in predictions.items():
                    pair = (spearmanr(value, log_t).statistic, spearmanr(value, log_abundance).statistic)
                    scores.setdefault(name, []).append(pair)
            setting = f"truth_{truth}_{'load' if with_load else 'noload'}"
            for name, pairs in scores.items():
                mean = np.mean(pairs, axis=0)
                line(f"{setting}_{name}_spearman_truth", float(mean[0]))
                line(f"{setting}_{name}_spearman_abundance", float(mean[1]))


if __name__ == "__main__":
    main()

"""Several targets, one library: one joint model against each target fitted alone, on simulated panels.

    python bench/selectivity.py            # 3 seeds, 27,000 compounds, 3 targets, 20 epochs (about 10 min)
    python bench/selectivity.py --quick    # one seed, 1,000 compounds, 2 epochs
    python bench/selectivity.py --config bb_pairs=False     # any ModelConfig field
    python bench/selectivity.py --reads 0.1 --replicates 1  # shallower selections, one replicate a target
    python bench/selectivity.py --bead-sets                 # the last target on beads of its own

Each seed simulates a panel (``delpyro.simulate_targets``: a carbonic anhydrase that the sulfonamides bind,
two other targets; promiscuous blocks shared by all; three replicates a target and three no-protein
controls on the same beads; 0.4 reads a compound a replicate; with ``--bead-sets`` the last target is
selected on other beads, with a matrix enrichment and three controls of their own) and splits it at random
80/10/10. The joint
model (``fit`` on ``join_targets(panel)``) and the default model fitted to each target alone (``fit`` on
each target's screen, same splits and settings) are compared on:

- the held-out compounds' Spearman of posterior mean log enrichment with the true one, per target;
- selectivity (``delpyro.selectivity``, margin log 4, enrichment threshold log 2 above each target's
  median compound): the AUC of ``p_selective`` for the truly selective compounds (enriched for the target
  and for none of the others, on the truth measured the same way: ``true_selectivity``), on the screened
  compounds and on the held-out ones;
- selective hit calls at posterior expected FDR 0.05 (``Selectivity.call``) on the screened compounds: how
  many were called, and their realized FDR against the truth;
- the screened compounds' 90% intervals of e_k (``Selectivity.of``): coverage of the true e_k (the truth
  measured from its own median compound), overall and over the truth's top decile, and mean width.

Printed as ``<method>_<target>_<measure>: value``, means over the seeds, and the mean over targets.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import config_overrides, fit_bench_parser, line, machine_lines

import delpyro

LEVEL = 0.05


def scores(result, train, test, targets, num_samples: int, cache: str) -> dict[str, float]:
    """The measures of one method (a joint result, or ``{target: result}``) on one panel's split."""
    out: dict[str, float] = {}
    separate = isinstance(result, dict)
    tests = delpyro.split_targets(test)
    for target in targets:
        if separate:
            predicted = result[target].predict(tests[target], num_samples=num_samples, cache_dir=cache)
        else:
            predicted = result.predict(test, num_samples=num_samples, cache_dir=cache, target=target)
        truth = test.truth[f"log_t_{target}"]
        out[f"{target}_heldout_spearman"] = float(spearmanr(predicted["log_enrichment_mean"], truth).statistic)
    for part, data in (("screened", train), ("heldout", test)):
        chosen = delpyro.selectivity(result, data, num_samples=num_samples, cache_dir=cache)
        for target in targets:
            truth = delpyro.true_selectivity(data, target)["selective"].to_numpy()
            p = chosen.of(target)["p_selective"].to_numpy()
            out[f"{target}_{part}_selective_auc"] = float(roc_auc_score(truth, p))
            if part == "screened":
                true_e = delpyro.true_selectivity(data, target)["log_t"].to_numpy()
                rows = chosen.of(target)
                inside = (true_e >= rows["log_enrichment_q05"]) & (true_e <= rows["log_enrichment_q95"])
                top = true_e > np.quantile(true_e, 0.9)
                out[f"{target}_screened_coverage90"] = float(inside.mean())
                out[f"{target}_screened_coverage90_top_decile"] = float(inside[top].mean())
                out[f"{target}_screened_interval_width"] = float(
                    (rows["log_enrichment_q95"] - rows["log_enrichment_q05"]).mean()
                )
                called = chosen.call(target, LEVEL).hits.index.to_numpy()
                out[f"{target}_screened_called"] = float(called.size)
                out[f"{target}_screened_true_selective"] = float(truth.sum())
                out[f"{target}_screened_realized_fdr"] = float((~truth[called]).mean()) if called.size else 0.0
    return out


def one_panel(seed: int, cycles: tuple[int, ...], config: delpyro.ModelConfig, samples: int, args) -> dict:
    targets = ("CA2", "USP7", "PTP1B")
    bead_sets = {t: ("Ni" if t == targets[-1] else "SA") for t in targets} if args.bead_sets else None
    panel = delpyro.simulate_targets(
        seed,
        targets,
        n_per_cycle=cycles,
        reads_per_compound=args.reads,
        n_target_replicates=args.replicates,
        bead_sets=bead_sets,
    )
    cache = args.cache
    targets = list(panel)
    train, val, test = delpyro.split(delpyro.join_targets(panel), "random", seed=seed)
    started = time.perf_counter()
    joint = delpyro.fit(train, val, config, seed=seed, progress="none", cache_dir=cache)
    joint_seconds = time.perf_counter() - started
    trains, vals = delpyro.split_targets(train), delpyro.split_targets(val)
    started = time.perf_counter()
    alone = {t: delpyro.fit(trains[t], vals[t], config, seed=seed, progress="none", cache_dir=cache) for t in targets}
    alone_seconds = time.perf_counter() - started
    out = {"joint_fit_seconds": joint_seconds, "separate_fit_seconds": alone_seconds}
    for method, result in (("joint", joint), ("separate", alone)):
        out.update({f"{method}_{k}": v for k, v in scores(result, train, test, targets, samples, cache).items()})
    return out


def main() -> None:
    parser = fit_bench_parser(__doc__, "one seed, 10 blocks a cycle, 2 epochs")
    parser.add_argument("--reads", type=float, default=0.4, help="reads a compound a replicate (default 0.4)")
    parser.add_argument("--replicates", type=int, default=3, help="target replicates a target (default 3)")
    parser.add_argument("--bead-sets", action="store_true", help="select the last target on beads of its own")
    args = parser.parse_args()
    if args.quick:
        seeds, cycles, epochs, samples = (0,), (10, 10, 10), 2, 50
    else:
        seeds, cycles, epochs, samples = (0, 1, 2), (30, 30, 30), 20, 200
    config = delpyro.ModelConfig(**{"epochs": epochs, **config_overrides(args.config)})
    machine_lines("cpu")
    line("config", ", ".join(args.config) or "defaults")
    line("compounds", int(np.prod(cycles)))
    line("seeds", len(seeds))
    line("reads_per_compound", args.reads)
    line("target_replicates", args.replicates)
    line("bead_sets", 2 if args.bead_sets else 1)
    rows = [one_panel(seed, cycles, config, samples, args) for seed in seeds]
    means = pd.DataFrame(rows).mean()
    for name, value in means.items():
        line(name, float(value))
    for method in ("joint", "separate"):
        measures = (
            "heldout_spearman",
            "screened_selective_auc",
            "heldout_selective_auc",
            "screened_called",
            "screened_realized_fdr",
            "screened_coverage90",
            "screened_coverage90_top_decile",
            "screened_interval_width",
        )
        for measure in measures:
            values = [v for k, v in means.items() if k.startswith(f"{method}_") and k.endswith(f"_{measure}")]
            line(f"{method}_mean_{measure}", float(np.mean(values)))


if __name__ == "__main__":
    main()

"""Hit calls against the truth: delpyro's posterior-FDR calls beside DESeq2 with Benjamini-Hochberg.

    python bench/hits.py             # 3 seeds x 2 depths, 8,000 compounds (about 6 minutes)
    python bench/hits.py --quick     # one seed, one depth, small screen, 2 epochs
    python bench/hits.py --config combine=additive     # any ModelConfig field

The screens are ``simulate_del(combine="multiplicative", with_load=False)``: three target and two control
replicates, the target's true enrichment t a fold over the control (inert compounds t = 1), library
abundance log-normal and shared by every selection (the simulator's default). A compound is a true hit
when its true log t exceeds the library's median by log 2; delpyro's ``predict`` uses the same rule on its
posterior (``p_enriched`` above its median posterior mean plus log 2), and DESeq2 (``deseq2_enrichment``,
target against control replicates) tests log2 fold change > 1. Two depths: the simulator's default, 0.4
reads a compound a replicate (as sparse as real screens), and 5.

Each method calls at level 0.05 on its own terms: delpyro's ``call_hits(prediction, fdr=0.05)`` (posterior
expected FDR), DESeq2's adjusted p-value < 0.05. Printed as means over seeds: how many each called, its
realized FDR and its true hits; and, to compare the rankings at the same realized FDR, the true hits in
the longest head of each ranking (delpyro by local fdr, DESeq2 by p-value) whose realized FDR is at most
0.05 (``oracle``: a cut only the truth can make). The model is fitted to all compounds (a screen's hits are
called on the screen itself), 20 epochs.
"""

from __future__ import annotations

import math
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import config_overrides, fit_bench_parser, line, machine_lines

import delpyro

LEVEL = 0.05


def oracle_true_hits(order: np.ndarray, truth: np.ndarray, level: float = LEVEL) -> int:
    """True hits in the longest head of ``order`` whose realized FDR is at most ``level``."""
    hits = np.cumsum(truth[order])
    false_rate = 1.0 - hits / np.arange(1, order.size + 1)
    within = np.flatnonzero(false_rate <= level)
    return int(hits[within[-1]]) if within.size else 0


def one_screen(seed: int, cycles: tuple[int, ...], depth: float, config: delpyro.ModelConfig, cache: str) -> dict:
    screen = delpyro.simulate_del(
        seed=seed, n_per_cycle=cycles, combine="multiplicative", with_load=False, reads_per_compound=depth
    )
    log_t = screen.truth["log_target_enrichment"].to_numpy()
    truth = log_t > np.median(log_t) + math.log(2.0)
    out: dict[str, float] = {"true_hits": float(truth.sum())}

    fitted = delpyro.fit(screen, None, config, seed=seed, progress="none", cache_dir=cache)
    calls = delpyro.call_hits(fitted.predict(screen, cache_dir=cache), fdr=LEVEL)
    called = calls.hits.index.to_numpy()
    out["delpyro_called"] = calls.n_called
    out["delpyro_expected_fdr"] = calls.expected_fdr
    out["delpyro_realized_fdr"] = float((~truth[called]).mean()) if called.size else 0.0
    out["delpyro_true_hits"] = float(truth[called].sum())
    out["delpyro_oracle_true_hits"] = oracle_true_hits(calls.table.index.to_numpy(), truth)

    deseq = delpyro.deseq2_enrichment(screen, lfc_null=1.0, alt_hypothesis="greater")
    adjusted = deseq["p_adjusted"].to_numpy()
    called = np.flatnonzero(adjusted < LEVEL)
    out["deseq2_called"] = called.size
    out["deseq2_realized_fdr"] = float((~truth[called]).mean()) if called.size else 0.0
    out["deseq2_true_hits"] = float(truth[called].sum())
    p = deseq["p_value"].fillna(1.0).to_numpy()
    out["deseq2_oracle_true_hits"] = oracle_true_hits(np.argsort(p, kind="stable"), truth)
    return out


def main() -> None:
    parser = fit_bench_parser(__doc__, "one seed, one depth, 10 blocks a cycle, 2 epochs")
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)  # pydeseq2's notes on its dispersion fits
    if args.quick:
        seeds, depths, cycles, epochs = (0,), (5.0,), (10, 10, 10), 2
    else:
        seeds, depths, cycles, epochs = (0, 1, 2), (0.4, 5.0), (20, 20, 20), 20
    config = delpyro.ModelConfig(**{"epochs": epochs, **config_overrides(args.config)})
    machine_lines("cpu")
    line("config", ", ".join(args.config) or "defaults")
    line("compounds", int(np.prod(cycles)))
    line("level", LEVEL)
    for depth in depths:
        rows = [one_screen(seed, cycles, depth, config, args.cache) for seed in seeds]
        means = pd.DataFrame(rows).mean()
        for name, value in means.items():
            line(f"depth{depth:g}_{name}", float(value))


if __name__ == "__main__":
    main()

"""Real screens: held-out ranking against the simple baselines, and a replicate held out.

    python bench/real_screens.py            # 53BP1: seeds 0-2, 20 epochs with early stopping (about 12 min)
    python bench/real_screens.py --quick    # one seed, 2 epochs
    python bench/real_screens.py --config batch_size=2048       # any ModelConfig field
    python bench/real_screens.py --screen my.parquet --target "seq_target_*" --control "seq_matrix_*"

The screen is UNCDEL003 against 53BP1 with its library completed (``delpyro.datasets.uncdel003_53bp1()``,
58,080 members), or any table ``read_counts`` reads (``--screen`` with ``--target``, ``--control``,
``--preset``, ...); it needs building-block ids for the building-block average.

**Held-out compounds.** For each seed, a random 80/10/10 split; the default model (``ModelConfig()`` with
the given fields), the model without a network (``terms=("building_blocks", "compound")``) and the
fingerprint network alone (``terms=("fingerprint",)``) are fitted with early stopping (patience 3) on the
validation part, by ``delpyro.choose_terms``, which also picks the one of highest held-out log predictive
density on the validation part (``chosen``; each fit's lpd and validation loss are printed). Scored by the
Spearman correlation of the held-out compounds' posterior mean log enrichment with what they show: their
reads (each target replicate over its reads per compound, averaged) without controls, the naive log
enrichment (target over control, :func:`delpyro.naive_enrichment`) with them; over every held-out member
(``all``) and, for a table of listed compounds completed from its library, over the listed ones
(``listed``). The building-block average
(``delpyro.building_block_baseline``) is the baseline. Printed per seed and method, then as means.

**A replicate held out** (screens with three or more target replicates). For each target replicate, the
default model is fitted to every compound with that replicate left out (20 epochs, the first seed), and
the Spearman of its posterior mean log enrichment with the left-out replicate's counts is set beside the
naive estimate from the replicates kept (their depth-normalized reads, averaged; over control with
controls).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, config_overrides, line, machine_lines

import delpyro

#: the models compared (``delpyro.choose_terms`` fits them and picks one by held-out predictive density)
CANDIDATES = {"default": None, "no_network": ("building_blocks", "compound"), "network_only": ("fingerprint",)}


def observed_enrichment(data: delpyro.DELData, reference: delpyro.DELData) -> np.ndarray:
    """What a compound shows: its depth-normalized target reads (depths of ``reference``), or with
    controls the naive log enrichment."""
    if data.n_control_replicates:
        return delpyro.naive_enrichment(data)
    depth = reference.target_counts.sum(0) / reference.n_compounds
    return (data.target_counts / depth).mean(1)


def without_target_replicate(screen: delpyro.DELData, r: int) -> delpyro.DELData:
    keep = [j for j in range(screen.n_target_replicates) if j != r]
    return dataclasses.replace(
        screen, target_counts=screen.target_counts[:, keep], target_names=[screen.target_names[j] for j in keep]
    )


def read_screen(args: argparse.Namespace) -> delpyro.DELData:
    if args.screen is None:
        return delpyro.datasets.uncdel003_53bp1()
    options = {"target": args.target, "control": args.control or (), "preset": args.preset}
    options.update({k: v for k, v in (("building_blocks", args.building_blocks), ("smiles", args.smiles)) if v})
    return delpyro.read_counts(args.screen, **options)


def held_out_compounds(screen, config, seeds, cache, epochs) -> None:
    rows = []
    for seed in seeds:
        train, val, test = delpyro.split(screen, "random", seed=seed)
        observed = observed_enrichment(test, screen)
        predictions = {"building_block_average": delpyro.building_block_baseline(train, test)}
        choice = delpyro.choose_terms(
            train, val, config, candidates=CANDIDATES, epochs=epochs, seed=seed, progress="none", cache_dir=cache
        )
        for name, fitted in choice.results.items():
            predictions[name] = fitted.predict(test, cache_dir=cache)["log_enrichment_mean"].to_numpy()
        for name, row in choice.table.set_index("candidate").iterrows():
            line(f"seed{seed}_{name}_lpd", float(row["lpd"]))
            line(f"seed{seed}_{name}_val_loss", float(row["val_loss"]))
        predictions["chosen"] = predictions[choice.chosen]
        line(f"seed{seed}_chosen", choice.chosen)
        listed = test.observed
        for name, predicted in predictions.items():
            row = {"seed": seed, "method": name, "all": float(spearmanr(predicted, observed).statistic)}
            line(f"seed{seed}_{name}_all", row["all"])
            if listed is not None:
                row["listed"] = float(spearmanr(predicted[listed], observed[listed]).statistic)
                line(f"seed{seed}_{name}_listed", row["listed"])
            rows.append(row)
    means = pd.DataFrame(rows).drop(columns="seed").groupby("method").mean()
    for name, row in means.iterrows():
        for part, value in row.items():
            line(f"mean_{name}_{part}", float(value))


def replicate_held_out(screen, config, seed, cache) -> None:
    if screen.n_target_replicates < 3:
        line("replicate_check", f"skipped: {screen.n_target_replicates} target replicates (needs 3)")
        return
    scores = {"default": [], "naive": []}
    for r, name in enumerate(screen.target_names):
        kept = without_target_replicate(screen, r)
        held = screen.target_counts[:, r]
        fitted = delpyro.fit(kept, None, config, seed=seed, progress="none", cache_dir=cache)
        predicted = fitted.predict(kept, cache_dir=cache)["log_enrichment_mean"].to_numpy()
        naive = observed_enrichment(kept, kept)
        for method, value in (("default", predicted), ("naive", naive)):
            rho = float(spearmanr(value, held).statistic)
            scores[method].append(rho)
            line(f"replicate_{name}_{method}_spearman", rho)
    for method, values in scores.items():
        line(f"replicate_mean_{method}_spearman", float(np.mean(values)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one seed, 2 epochs")
    parser.add_argument("--config", action="append", default=[], help="a ModelConfig field, name=value (repeatable)")
    parser.add_argument("--cache", default=str(ROOT / "runs" / "cache"), help="fingerprint cache")
    parser.add_argument("--screen", default=None, help="a table read_counts reads (default: the 53BP1 screen)")
    parser.add_argument("--target", default=None, help="target replicate columns (a glob), with --screen")
    parser.add_argument("--control", default=None, help="control replicate columns (a glob), with --screen")
    parser.add_argument("--preset", default=None, help="a read_counts layout preset, with --screen")
    parser.add_argument("--building-blocks", default=None, help="building-block id columns (a glob), with --screen")
    parser.add_argument("--smiles", default=None, help="the SMILES column, with --screen")
    parser.add_argument("--no-replicate-check", action="store_true", help="skip the replicate held out")
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)  # what reading and completion did
    seeds, epochs = ((0,), 2) if args.quick else ((0, 1, 2), 20)
    overrides = config_overrides(args.config)
    machine_lines("cpu")
    line("config", ", ".join(args.config) or "defaults")
    screen = read_screen(args)
    line("screen", args.screen or "uncdel003_53bp1")
    line("compounds", screen.n_compounds)
    config = delpyro.ModelConfig(**overrides)
    held_out_compounds(screen, config, seeds, args.cache, epochs)
    if not args.no_replicate_check:
        replicate_held_out(screen, dataclasses.replace(config, epochs=epochs), seeds[0], args.cache)


if __name__ == "__main__":
    main()

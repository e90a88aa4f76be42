"""Real screens: held-out ranking against the simple baselines, and a replicate held out.

    python bench/real_screens.py            # 53BP1: seeds 0-2, 20 epochs (about 15 min)
    python bench/real_screens.py --quick    # one seed, 2 epochs, 10 draws
    python bench/real_screens.py --config batch_size=2048       # any ModelConfig field
    python bench/real_screens.py --screen my.parquet --target "seq_target_*" --control "seq_matrix_*"

The screen is UNCDEL003 against 53BP1 with its library completed (``delpyro.datasets.uncdel003_53bp1()``,
58,080 members), or any table ``read_counts`` reads (``--screen`` with ``--target``, ``--control``,
``--preset``, ...); it needs building-block ids for the building-block average.

**Held-out compounds.** For each seed, a random 80/10/10 split; the default model (``ModelConfig()`` with
the given fields), the model without a network (``terms=("building_blocks", "compound")``) and the
fingerprint network alone (``terms=("fingerprint",)``) are fitted for 20 epochs by ``delpyro.choose_terms``,
which also picks the one of highest held-out log predictive density on the validation part (``chosen``;
each fit's lpd and validation loss are printed). Scored by the Spearman correlation of the held-out
compounds' posterior mean log enrichment with what they show: their reads (each target replicate over its
reads per compound, averaged) without controls, the naive log enrichment (target over control,
:func:`delpyro.naive_enrichment`) with them; over every held-out member (``all``) and, for a table of listed
compounds completed from its library, over the listed ones (``listed``). The building-block average
(``delpyro.building_block_baseline``) is the baseline; without controls, two plain block scores that differ
only in how the cycles combine (each block's mean reads, multiplied or added: ``block_reads_product``, the
form of the model's building-block term, and ``block_reads_sum``) show what the form costs. Printed per seed
and method, then as means, then each method's mean difference from the baseline with a 95% interval from 200
paired bootstrap resamples of the held-out compounds (the same resamples score both; averaged over seeds
resample by resample).

**A replicate held out** (screens with three or more target replicates). For each target replicate, the
default model is fitted to every compound with that replicate left out (20 epochs, the first seed), and
the Spearman of its posterior mean log enrichment with the left-out replicate's counts is set beside the
naive estimate from the replicates kept (their depth-normalized reads, averaged; over control with
controls); and the left-out counts' log predictive density per compound under the posterior predictive
(100 draws; the replicate's depth its library-size offset), beside the same ZINB at the posterior mean gate
and concentration with the naive rate (plus half a read, so that no rate is zero). The Spearman is also
given among the compounds with a read in the kept replicates and (the model's) among those without, and
for the model's order among the compounds with reads placed above the others, tied as the naive estimate
ties them; with the fitted per-compound scale, gate and concentration.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import config_overrides, fit_bench_parser, line, machine_lines

import delpyro
from delpyro.distributions import count_distribution

#: the models compared (``delpyro.choose_terms`` fits them and picks one by held-out predictive density)
CANDIDATES = {"default": None, "no_network": ("building_blocks", "compound"), "network_only": ("fingerprint",)}
#: bootstrap resamples of the held-out compounds for the differences from the building-block average
BOOTSTRAP = 200


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
    differences = collections.defaultdict(list)
    for seed in seeds:
        train, val, test = delpyro.split(screen, "random", seed=seed)
        observed = observed_enrichment(test, screen)
        predictions = {"building_block_average": delpyro.building_block_baseline(train, test)}
        if not screen.n_control_replicates:
            predictions.update(block_reads_combined(train, test, screen))
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
        parts = {"all": np.ones(test.n_compounds, bool)}
        if test.observed is not None:
            parts["listed"] = test.observed
        resamples = np.random.default_rng(seed).integers(0, test.n_compounds, (BOOTSTRAP, test.n_compounds))
        for part, members in parts.items():
            baseline = predictions["building_block_average"]
            for name, predicted in predictions.items():
                rho = float(spearmanr(predicted[members], observed[members]).statistic)
                line(f"seed{seed}_{name}_{part}", rho)
                rows.append({"seed": seed, "method": name, "part": part, "spearman": rho})
                if name != "building_block_average":
                    differences[(name, part)].append(
                        paired_differences(predicted, baseline, observed, members, resamples)
                    )
    means = pd.DataFrame(rows).groupby(["method", "part"], sort=False)["spearman"].mean()
    for (name, part), value in means.items():
        line(f"mean_{name}_{part}", float(value))
    for (name, part), draws in differences.items():
        mean_draws = np.mean(draws, axis=0)  # the seeds' splits are independent: average replicate by replicate
        low, high = np.quantile(mean_draws, [0.025, 0.975])
        point = means[(name, part)] - means[("building_block_average", part)]
        line(f"difference_{name}_{part}", f"{point:+.3f} (95% bootstrap interval {low:+.3f} to {high:+.3f})")


def block_reads_combined(train, test, reference) -> dict[str, np.ndarray]:
    """Two plain block scores that differ only in how a compound's cycles combine (screens without
    controls): each block's mean depth-normalized reads over the training compounds that carry it (a block
    absent from training: the overall mean), combined by product (``block_reads_product``: the sum of their
    logs, the form of the model's building-block term) or by sum (``block_reads_sum``)."""
    reads = observed_enrichment(train, reference)
    overall = float(reads.mean())
    means = np.stack(
        [
            test.building_blocks[cycle]
            .map(pd.Series(reads).groupby(train.building_blocks[cycle].to_numpy()).mean())
            .fillna(overall)
            .to_numpy(np.float64)
            for cycle in train.building_blocks.columns
        ]
    )
    floor = overall / 100  # a block whose compounds have no reads: a hundredth of the mean, not log(0)
    return {
        "block_reads_product": np.log(np.maximum(means, floor)).sum(0),
        "block_reads_sum": np.log(means.sum(0) + floor),
    }


def paired_differences(predicted, baseline, observed, members, resamples) -> np.ndarray:
    """Spearman(predicted) - Spearman(baseline) on ``BOOTSTRAP`` resamples of the held-out compounds (the
    same resamples for both, restricted to ``members``)."""
    out = np.empty(len(resamples))
    for b, rows in enumerate(resamples):
        rows = rows[members[rows]]
        out[b] = (
            spearmanr(predicted[rows], observed[rows]).statistic - spearmanr(baseline[rows], observed[rows]).statistic
        )
    return out


def held_out_replicate_lpd(fitted, kept, held: np.ndarray, total: float, cache: str, num_samples: int = 100):
    """Per compound, log (1/S) sum_s p(held_i | draw s): the held-out replicate's counts under the posterior
    predictive, its depth the library-size offset log(total reads / compounds) as for any replicate, and,
    beside it, the same ZINB at the posterior mean gate and concentration with the naive rate of the kept
    replicates (their normalized reads averaged, plus half a read so that no rate is zero)."""
    model = fitted.model
    config = fitted.config
    if (config.likelihood, config.gates, config.concentration) != ("zinb", "latent", "latent"):
        raise ValueError("the replicate check's likelihood needs the default ZINB with latent gates and concentrations")
    idata = fitted.to_inference_data(kept, num_samples=num_samples, cache_dir=cache)
    post = idata.posterior
    n = kept.n_compounds
    log_t = torch.as_tensor(post["log_target_enrichment"].values.reshape(-1, n), dtype=torch.float64)
    log_m = None
    if "log_matrix_enrichment" in post:
        log_m = torch.as_tensor(post["log_matrix_enrichment"].values.reshape(-1, n), dtype=torch.float64)
    log_rate = model.log_retained(log_t, log_m) + math.log(total / n)
    if "log_load_offset" in idata.constant_data:
        log_rate = log_rate + torch.as_tensor(idata.constant_data["log_load_offset"].values)
    gate = torch.as_tensor(post["target_gate"].values.reshape(-1, 1), dtype=torch.float64)
    log_phi = torch.as_tensor(post["target_concentration"].values.reshape(-1, 1), dtype=torch.float64).log()
    logits = gate.log() - (-gate).log1p()
    y = torch.as_tensor(held, dtype=torch.float64)
    log_p = count_distribution("zinb", log_rate, logits, log_phi).log_prob(y.expand_as(log_rate))
    model_lpd = (torch.logsumexp(log_p, 0) - math.log(log_p.shape[0])).numpy()
    depth = kept.target_counts.sum(0) / n
    naive_rate = (kept.target_counts / depth).mean(1) * (total / n) + 0.5
    naive_p = count_distribution("zinb", torch.as_tensor(np.log(naive_rate)), logits.mean(), log_phi.mean()).log_prob(y)
    return model_lpd, naive_p.numpy()


def replicate_held_out(screen, config, seed, cache, draws: int = 100) -> None:
    if screen.n_target_replicates < 3:
        line("replicate_check", f"skipped: {screen.n_target_replicates} target replicates (needs 3)")
        return
    scores = {"default": [], "naive": []}
    lpds = {"default": [], "naive": []}
    for r, name in enumerate(screen.target_names):
        kept = without_target_replicate(screen, r)
        held = screen.target_counts[:, r]
        fitted = delpyro.fit(kept, None, config, seed=seed, progress="none", cache_dir=cache)
        predicted = fitted.predict(kept, cache_dir=cache)["log_enrichment_mean"].to_numpy()
        naive = observed_enrichment(kept, kept)
        read = kept.target_counts.sum(1) > 0  # compounds with a read in the kept replicates
        line(f"replicate_{name}_share_with_reads", float(read.mean()))
        for method, value in (("default", predicted), ("naive", naive)):
            rho = float(spearmanr(value, held).statistic)
            scores[method].append(rho)
            line(f"replicate_{name}_{method}_spearman", rho)
            # where the ranking is won or lost: among compounds with reads, and (the model only: the naive
            # estimate ties them all) among those without
            line(f"replicate_{name}_{method}_spearman_with_reads", float(spearmanr(value[read], held[read]).statistic))
            if method != "naive":
                rho = float(spearmanr(value[~read], held[~read]).statistic)
                line(f"replicate_{name}_{method}_spearman_without_reads", rho)
                # the model's order among the compounds with reads, put above the rest tied (as the naive
                # estimate ties them): how a Spearman over mostly zeros scores an order of every compound
                tied = np.where(read, value - value.min() + 1.0, 0.0)
                rho = float(spearmanr(tied, held).statistic)
                line(f"replicate_{name}_{method}_reads_first_rest_tied_spearman", rho)
        summary = fitted.globals_summary(200).set_index("site")["mean"]
        for site in ("compound_scale", "target_gate", "target_concentration"):
            if site in summary:
                line(f"replicate_{name}_{site}", float(summary[site]))
        model_lpd, naive_lpd = held_out_replicate_lpd(fitted, kept, held, float(held.sum()), cache, draws)
        for method, value in (("default", model_lpd), ("naive", naive_lpd)):
            lpds[method].append(float(np.mean(value)))
            line(f"replicate_{name}_{method}_lpd", float(np.mean(value)))
    for method in scores:
        line(f"replicate_mean_{method}_spearman", float(np.mean(scores[method])))
        line(f"replicate_mean_{method}_lpd", float(np.mean(lpds[method])))


def main() -> None:
    parser = fit_bench_parser(__doc__, "one seed, 2 epochs")
    parser.add_argument("--screen", default=None, help="a table read_counts reads (default: the 53BP1 screen)")
    parser.add_argument("--target", default=None, help="target replicate columns (a glob), with --screen")
    parser.add_argument("--control", default=None, help="control replicate columns (a glob), with --screen")
    parser.add_argument("--preset", default=None, help="a read_counts layout preset, with --screen")
    parser.add_argument("--building-blocks", default=None, help="building-block id columns (a glob), with --screen")
    parser.add_argument("--smiles", default=None, help="the SMILES column, with --screen")
    parser.add_argument("--no-replicate-check", action="store_true", help="skip the replicate held out")
    parser.add_argument("--replicate-check-only", action="store_true", help="only the replicate held out")
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
    if not args.replicate_check_only:
        held_out_compounds(screen, config, seeds, args.cache, epochs)
    if not args.no_replicate_check:
        replicate_held_out(
            screen, dataclasses.replace(config, epochs=epochs), seeds[0], args.cache, 10 if args.quick else 100
        )


if __name__ == "__main__":
    main()

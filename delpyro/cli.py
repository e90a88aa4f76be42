"""The command line: ``python -m delpyro COMMAND`` (also installed as ``delpyro``).

- ``delpyro simulate --out screen.parquet``: simulate a screen with known truth and save it.
- ``delpyro summary SCREEN``: read a saved screen (or any table with ``--preset``) and describe it.
- ``delpyro demo``: the main job: simulate the built-in screen, save and read it back, fit the default
  model, and print held-out metrics (loss, Spearman with the true enrichment, against a naive estimate).
- ``delpyro fit SCREEN --out RUN_DIR``: read a screen, split off validation and test compounds, fit a model
  and write a run directory: predictions, history, checkpoint, an ArviZ ``idata.nc``, figures,
  ``settings.json``, ``evaluation.json`` and ``report.md``.
- ``delpyro report RUN_DIR``: rebuild ``report.md`` from a saved run, optionally with measured affinities.

This module holds the command line only; the run directory (its files, how ``fit`` writes it and ``report``
rebuilds it) is :mod:`delpyro.report`.

A user error (a bad column, bad counts, a missing file, a run directory without a checkpoint) prints one
clear line and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from scipy.stats import spearmanr

from delpyro import plots
from delpyro.baselines import naive_enrichment
from delpyro.config import FEATURES, OBSERVED_ONLY, PRESETS, TERMS, ModelConfig, batch_size_for
from delpyro.data import DELData, DELDataError
from delpyro.distributions import LIKELIHOODS
from delpyro.posterior import truth_on_model_scale
from delpyro.reading import LAYOUTS, read_counts
from delpyro.report import finish_run, prepare_run, read_screen, rebuild_report, write_run
from delpyro.simulate import simulate_del
from delpyro.splits import split
from delpyro.train import fit


def _parse_cycles(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 30,30,30, got {text!r}") from None
    if len(sizes) != 3 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected three positive sizes like 30,30,30, got {text!r}")
    return sizes


def _positive_integer(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


def _simulate(args: argparse.Namespace) -> int:
    data = simulate_del(
        seed=args.seed,
        n_per_cycle=args.n_per_cycle,
        n_target_replicates=args.target_replicates,
        n_control_replicates=args.control_replicates,
        with_load=not args.no_load,
        n_poses=args.poses,
    )
    path = data.save(args.out)
    print(f"wrote {path} ({data.n_compounds:,} compounds)")
    return 0


def _read(args: argparse.Namespace) -> DELData:
    return read_counts(args.screen, preset=args.preset)


def _summary(args: argparse.Namespace) -> int:
    print(_read(args).summary())
    return 0


def _demo(args: argparse.Namespace) -> int:
    out = Path(args.out)
    started = time.perf_counter()
    data = simulate_del(seed=args.seed, n_per_cycle=args.n_per_cycle)
    print(f"simulated a screen of {data.n_compounds:,} compounds in {time.perf_counter() - started:.1f} s")
    path = data.save(out / "screen.parquet")
    print(f"saved it to {path}")
    again = read_counts(path, preset="delpyro")
    if not again.equals(data):
        print("error: the screen read back differs from the one saved", file=sys.stderr)
        return 1
    print("read it back: identical\n")
    print(again.summary())
    truth = again.truth
    if truth is not None and "is_binder" in truth:
        print(f"\ntrue binders: {int(truth['is_binder'].sum()):,} of {again.n_compounds:,}")

    train, val, test = split(again, "random", (0.8, 0.1, 0.1), seed=args.seed)
    config = ModelConfig.preset("default", epochs=args.epochs)
    print(f"\nfitting the default model ({_settings_line(config, train.n_compounds)})")
    print(f"on {train.n_compounds:,} training and {val.n_compounds:,} validation compounds")
    started = time.perf_counter()
    result = fit(
        train,
        val,
        config,
        seed=args.seed,
        progress="text",
        checkpoint_dir=out,
        cache_dir=str(out / "cache"),
        early_stopping_patience=4,
    )
    print(f"fitted in {time.perf_counter() - started:.1f} s; checkpoint {out / 'checkpoint.pt'}")
    result.history.to_csv(out / "history.csv", index=False)
    prediction = result.predict(test, cache_dir=str(out / "cache"))
    prediction.to_csv(out / "predictions_test.csv", index=False)
    true_log_target = test.truth["log_target_enrichment"].to_numpy()
    model_rho = spearmanr(prediction["log_enrichment_mean"], true_log_target).statistic
    naive_rho = spearmanr(naive_enrichment(test), true_log_target).statistic
    print(f"\nheld-out ({test.n_compounds:,} test compounds)")
    print(f"  loss (negative ELBO per compound): {result.evaluate(test, cache_dir=str(out / 'cache')):.4f}")
    print(f"  Spearman with the true log target enrichment: model {model_rho:.3f}, naive {naive_rho:.3f}")
    print(f"wrote {out / 'history.csv'} and {out / 'predictions_test.csv'}")
    figures = Path(args.figures)
    figures.mkdir(parents=True, exist_ok=True)
    plots.training_curves(result.history, path=figures / "demo_training_curves.png")
    on_model_scale = truth_on_model_scale(result, test)
    plots.predicted_vs_true(prediction, on_model_scale, path=figures / "demo_predicted_vs_true.png")
    plots.top_compounds(prediction, n=30, path=figures / "demo_top_compounds.png")
    print(f"figures: {', '.join(f'{figures}/demo_{name}.png' for name in _DEMO_FIGURES)}")
    return 0


_DEMO_FIGURES = ("training_curves", "predicted_vs_true", "top_compounds")


_SHOWN = ("likelihood", "combine", "gates", "hidden_size", "epochs", "batch_size", "lr")


def _settings_line(config: ModelConfig, n_train: int) -> str:
    """The settings a run shows, the batch size as it will be (the default grows with the screen)."""
    shown = {name: getattr(config, name) for name in _SHOWN}
    if config.batch_size is None:
        shown["batch_size"] = f"{batch_size_for(n_train)} (for {n_train:,} compounds)"
    return ", ".join(f"{name}={value}" for name, value in shown.items())


# ----------------------------------------------------------------------------------------------------
# fit and report: the command line side (the run directory itself is delpyro.report)


def _data_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``read_counts`` arguments given on the command line (the ``delpyro`` layout by default)."""
    options = {
        "preset": args.preset,
        "target": args.target,
        "control": args.control,
        "smiles": args.smiles,
        "compound_id": args.compound_id,
        "building_blocks": args.building_blocks,
        "block_smiles": args.block_smiles,
        "load": args.load,
        "library": None if args.library is None else str(Path(args.library).resolve()),
        "selection_target": args.selection_target,
        "all_targets": args.all_targets or None,
        "selections": None if args.selections is None else str(Path(args.selections).resolve()),
    }
    if options["preset"] is None and options["target"] is None and options["selections"] is None:
        options["preset"] = "delpyro"
    return options


def _model_config(args: argparse.Namespace) -> ModelConfig:
    overrides: dict[str, Any] = {}
    if args.likelihood is not None:
        overrides["likelihood"] = args.likelihood
    if args.terms is not None:
        overrides["terms"] = tuple(args.terms)
    for name in ("observed_only", "features"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.batch_size is not None:
        overrides["batch_size"] = args.batch_size
    return ModelConfig.preset(args.config, **overrides)


def _fractions(val: float, test: float) -> tuple[float, float, float]:
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise ValueError(
            f"--val-fraction {val} and --test-fraction {test}: each must be in [0, 1) and together below 1"
        )
    return (1.0 - val - test, val, test)


def _fit(args: argparse.Namespace) -> int:
    out = Path(args.out)
    options = _data_options(args)
    config = _model_config(args)  # settings and the run folder are checked before the screen is read
    fractions = _fractions(args.val_fraction, args.test_fraction)
    writing = prepare_run(out, overwrite=args.overwrite)  # out, or a staging folder when replacing a run
    data = read_screen(args.screen, options)
    train, val, test = split(data, "random", fractions, seed=args.seed)
    print(f"read {args.screen}: {data.n_compounds:,} compounds")
    print(
        f"split (seed {args.seed}): {train.n_compounds:,} training, {val.n_compounds:,} validation, "
        f"{test.n_compounds:,} test"
    )
    print(f"fitting the {config.name!r} model ({_settings_line(config, train.n_compounds)})")
    cache = str(out / "cache")
    started = time.perf_counter()
    result = fit(
        train,
        val if val.n_compounds else None,
        config,
        seed=args.seed,
        progress="text",
        checkpoint_dir=writing,
        cache_dir=cache,
        distributed=args.nproc if args.nproc > 1 else None,
        early_stopping_patience=args.early_stopping if val.n_compounds else None,
    )
    result.save(writing / "checkpoint.pt")
    print(f"fitted in {time.perf_counter() - started:.1f} s")
    result.history.to_csv(writing / "history.csv", index=False)

    settings = {
        "model": config.to_dict(),
        "data": {"screen": str(Path(args.screen).resolve()), "options": options},
        "split": {
            "how": "random",
            "seed": args.seed,
            "fractions": list(fractions),
            "n_train": train.n_compounds,
            "n_validation": val.n_compounds,
            "n_test": test.n_compounds,
        },
        "fit": {
            "seed": args.seed,
            "epochs": config.epochs,
            "batch_size": config.batch_size or batch_size_for(train.n_compounds),
            "processes": args.nproc,
            "early_stopping_patience": args.early_stopping,
        },
    }
    print("writing the run directory:")
    report = write_run(writing, result, data, train, val, test, settings, progress=True, cache_dir=cache)
    finish_run(out, writing)
    targets = result.model.targets
    written = "predictions.csv" if targets is None else ", ".join(f"predictions_{t}.csv" for t in targets)
    if targets is not None:
        written += ", selectivity.csv, selectivity_pairs.csv"
    print(f"wrote {out}: {written}, history.csv, checkpoint.pt, idata.nc, figures/, settings.json, {report.name}")
    return 0


def _report(args: argparse.Namespace) -> int:
    path = rebuild_report(
        Path(args.run_dir),
        args.affinity,
        value_column=args.affinity_col,
        kind=args.kind,
        smiles_column=args.smiles_col,
        unit=args.unit,
    )
    print(f"wrote {path}")
    return 0


class _Help(argparse.HelpFormatter):
    """Help that shows each option's default (none for a required option, a flag, or a default of None,
    whose help says what it means)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.required or action.default is None or action.default is False or action.default == argparse.SUPPRESS:
            return text
        return f"{text} (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="delpyro", description="Bayesian models of DEL screens.")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str, description: str | None = None) -> argparse.ArgumentParser:
        """A subcommand whose --help has a description and shows every option's default."""
        return commands.add_parser(
            name, help=help, description=description or help[0].upper() + help[1:] + ".", formatter_class=_Help
        )

    simulate = command(
        "simulate",
        "simulate a screen with known truth and save it",
        "Simulate a three-cycle DEL screen whose true enrichments are known (the truth columns are saved with "
        "it) and write it as a table; read it back with read_counts(path, preset='delpyro').",
    )
    simulate.add_argument("--out", required=True, help="output table (.csv, .tsv or .parquet)")
    simulate.add_argument("--seed", type=int, default=0, help="seeds the library, its truth and the counts")
    simulate.add_argument("--n-per-cycle", type=_parse_cycles, default="30,30,30", help="building blocks per cycle")
    simulate.add_argument("--target-replicates", type=int, default=3, help="target selection replicates")
    simulate.add_argument("--control-replicates", type=int, default=2, help="bead (no-protein) control replicates")
    simulate.add_argument("--poses", type=int, default=0, help="docked poses per compound (0: none)")
    simulate.add_argument("--no-load", action="store_true", help="no pre-selection (load) counts")
    simulate.set_defaults(run=_simulate)

    summary = command("summary", "describe a screen: sizes, depth and zeros per replicate")
    summary.add_argument("screen", help="a table written by delpyro, or any table with --layout")
    summary.add_argument(
        "--layout", "--preset", dest="preset", default="delpyro", choices=sorted(LAYOUTS), help="the table's layout"
    )
    summary.set_defaults(run=_summary)

    demo = command("demo", "simulate the built-in screen, fit the default model, report")
    demo.add_argument("--out", default="runs/demo", help="run directory")
    demo.add_argument("--seed", type=int, default=0, help="seeds the screen, the split and the fit")
    demo.add_argument("--n-per-cycle", type=_parse_cycles, default="30,30,30", help="building blocks per cycle")
    demo.add_argument("--epochs", type=int, default=20, help="training epochs of the default model")
    demo.add_argument("--figures", default="figures", help="where the demo's figures are written")
    demo.set_defaults(run=_demo)

    fit_command = command(
        "fit",
        "fit a model to a screen and write a run directory",
        "Read a screen, split off validation and test compounds at random, fit a model and write "
        "RUN_DIR: predictions.csv, history.csv, checkpoint.pt, idata.nc, figures/, settings.json, "
        "evaluation.json and report.md. --layout says how the table is laid out; --model chooses the model.",
    )
    fit_command.add_argument("screen", help="a table written by delpyro, or any table with --layout or --target")
    fit_command.add_argument("--out", required=True, help="run directory")
    fit_command.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a run already in --out, once the new one is whole (its old figures go)",
    )
    columns = fit_command.add_argument_group("columns (read_counts; given ones win over the preset)")
    columns.add_argument(
        "--layout",
        "--preset",
        dest="preset",
        default=None,
        choices=sorted([*LAYOUTS, "delt"]),
        help="the table's layout (None: delpyro's, unless --target names the columns); delt: a folder of "
        "per-selection count files",
    )
    columns.add_argument("--target", nargs="+", metavar="COL", help="target replicate count columns (or globs)")
    columns.add_argument("--control", nargs="+", metavar="COL", help="control (bead) replicate count columns")
    columns.add_argument("--smiles", metavar="COL", help="SMILES column (None: the layout's, else smiles)")
    columns.add_argument("--compound-id", metavar="COL", help="unique compound id column")
    columns.add_argument("--building-blocks", nargs="+", metavar="COL", help="building-block columns, one per cycle")
    columns.add_argument("--block-smiles", nargs="+", metavar="COL", help="building-block SMILES columns, per cycle")
    columns.add_argument("--load", metavar="COL", help="pre-selection (load) count column")
    columns.add_argument(
        "--selection-target",
        metavar="NAME",
        help="several selections (--preset delt, or --selections): the target whose screen to fit",
    )
    columns.add_argument(
        "--selections",
        metavar="TABLE",
        help="the screen is a wide table with one count column per selection, and this table (name, target, group "
        "protein|no_protein[, beads, buffer]) says which; with --selection-target or --all-targets",
    )
    columns.add_argument(
        "--all-targets",
        action="store_true",
        help="several selections (--preset delt, or --selections) of targets on the same controls: fit them "
        "together in one model, and write each target's predictions and a selectivity table",
    )
    columns.add_argument(
        "--library",
        metavar="TABLE",
        help="for a table of the members with reads only: the whole library (ids, SMILES, blocks); the members "
        "without reads are added with zero counts",
    )
    model = fit_command.add_argument_group("model")
    model.add_argument(
        "--model", "--config", dest="config", default="default", choices=sorted(PRESETS), help="the model preset"
    )
    model.add_argument("--likelihood", choices=LIKELIHOODS, help="count likelihood (overrides the preset's)")
    model.add_argument("--terms", nargs="+", choices=TERMS, metavar="TERM", help=f"model terms, from {TERMS}")
    model.add_argument(
        "--observed-only",
        choices=OBSERVED_ONLY,
        help="the table lists only members with reads (in the target replicates, or in any): model it so",
    )
    model.add_argument("--features", choices=FEATURES, help="what the fingerprint network reads")
    training = fit_command.add_argument_group("training")
    training.add_argument("--epochs", type=int, help="training epochs (None: the model preset's)")
    training.add_argument(
        "--batch-size", type=int, help="compounds per minibatch (None: the preset's, or grown with the screen)"
    )
    training.add_argument(
        "--early-stopping",
        type=_positive_integer,
        default=None,
        metavar="EPOCHS",
        help="stop when the validation loss has not improved for this many epochs and keep the best epoch "
        "(None: train every epoch)",
    )
    training.add_argument("--seed", type=int, default=0, help="seeds the split, the fit and every draw")
    training.add_argument("--val-fraction", type=float, default=0.1, help="share of compounds for validation")
    training.add_argument("--test-fraction", type=float, default=0.1, help="share of compounds held out for test")
    training.add_argument(
        "--nproc",
        type=_positive_integer,
        default=1,
        help="train in this many processes, each holding a shard of the compounds (torch.distributed, gloo)",
    )
    fit_command.set_defaults(run=_fit)

    report = command(
        "report",
        "rebuild report.md of a run directory, optionally with measured affinities",
        "Rebuild RUN_DIR/report.md from the saved run (checkpoint, predictions, history, settings); "
        "with --affinity add affinity correlations and a predicted-vs-affinity figure.",
    )
    report.add_argument("run_dir", help="a directory written by delpyro fit")
    report.add_argument("--affinity", metavar="TABLE", help="a table of measured affinities (.csv, .tsv, .parquet)")
    report.add_argument("--affinity-col", default="Ki", help="the affinity value column")
    report.add_argument("--kind", choices=("Ki", "Kd", "IC50", "EC50"), help="affinity kind (None: from the column)")
    report.add_argument("--smiles-col", default="smiles", help="the affinity table's SMILES column")
    report.add_argument("--unit", default="nM", help="affinity unit: M, mM, uM, nM, pM, or pK")
    report.set_defaults(run=_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (DELDataError, ValueError, OSError) as err:  # a user's file, folder or setting: one line, no traceback
        print(f"delpyro {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""The command line: ``python -m delpyro COMMAND`` (also installed as ``delpyro``).

- ``delpyro simulate --out screen.parquet``: simulate a screen with known truth and save it.
- ``delpyro summary SCREEN``: read a saved screen (or any table with ``--preset``) and describe it.
- ``delpyro demo``: the main job: simulate the built-in screen, save and read it back, fit the default
  model, and print held-out metrics (loss, Spearman with the true enrichment, against a naive estimate).
- ``delpyro fit SCREEN --out RUN_DIR``: read a screen, split off validation and test compounds, fit a model
  and write a run directory: predictions, history, checkpoint, an ArviZ ``idata.nc``, figures,
  ``settings.json``, ``evaluation.json`` and ``report.md``.
- ``delpyro report RUN_DIR``: rebuild ``report.md`` from a saved run, optionally with measured affinities.

A user error (a bad column, bad counts, a missing file, a run directory without a checkpoint) prints one
clear line and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from delpyro import plots
from delpyro.data import PRESETS, DELData, DELDataError, read_counts, split
from delpyro.infer import FitResult, fit, load
from delpyro.model import PRESETS as MODEL_PRESETS
from delpyro.model import TERMS, ModelConfig
from delpyro.posterior import naive_enrichment, truth_on_model_scale
from delpyro.simulate import simulate_del

LIKELIHOODS = ("poisson", "zip", "nb", "zinb")
#: compounds written to ``idata.nc`` at most (a random subset, fixed seed, of a larger screen)
IDATA_COMPOUNDS = 2000
IDATA_SAMPLES = 100
#: figure file names in a run directory's ``figures/`` and their captions, in report order
FIGURES = {
    "training_curves.png": "Training and validation loss per epoch",
    "top_compounds.png": "Compounds with the highest posterior mean log target enrichment",
    "ppc_counts.png": "Posterior predictive check of the target counts",
    "building_block_forest.png": "Building-block effects on the target arm",
    "predicted_vs_true.png": "Predicted against true log target enrichment (held-out compounds)",
    "predicted_vs_affinity.png": "Predicted enrichment against measured affinity",
}


def _parse_cycles(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 30,30,30, got {text!r}") from None
    if len(sizes) != 3 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected three positive sizes like 30,30,30, got {text!r}")
    return sizes


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
    print(f"\nfitting the default model ({', '.join(f'{k}={getattr(config, k)}' for k in _SHOWN)})")
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


# ----------------------------------------------------------------------------------------------------
# fit and report: a run directory


class RunError(ValueError):
    """A run directory that cannot be read (no checkpoint, a missing file)."""


def _data_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``read_counts`` arguments given on the command line (the ``delpyro`` layout by default)."""
    options = {
        "preset": args.preset,
        "target": args.target,
        "control": args.control,
        "smiles": args.smiles,
        "compound_id": args.compound_id,
        "building_blocks": args.building_blocks,
        "load": args.load,
    }
    if options["preset"] is None and options["target"] is None:
        options["preset"] = "delpyro"
    return options


def _read_screen(screen: str | Path, options: dict[str, Any]) -> DELData:
    return read_counts(screen, **{key: value for key, value in options.items() if value is not None})


def _model_config(args: argparse.Namespace) -> ModelConfig:
    overrides: dict[str, Any] = {}
    if args.likelihood is not None:
        overrides["likelihood"] = args.likelihood
    if args.terms is not None:
        overrides["terms"] = tuple(args.terms)
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


def _idata_compounds(n: int, limit: int = IDATA_COMPOUNDS) -> np.ndarray:
    """Positions of the compounds exported to ``idata.nc``: all of them, or ``limit`` drawn with a fixed seed."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, limit, replace=False))


def _fit(args: argparse.Namespace) -> int:
    out = Path(args.out)
    options = _data_options(args)
    data = _read_screen(args.screen, options)
    config = _model_config(args)
    fractions = _fractions(args.val_fraction, args.test_fraction)
    train, val, test = split(data, "random", fractions, seed=args.seed)
    print(f"read {args.screen}: {data.n_compounds:,} compounds")
    print(
        f"split (seed {args.seed}): {train.n_compounds:,} training, {val.n_compounds:,} validation, "
        f"{test.n_compounds:,} test"
    )
    print(f"fitting the {config.name!r} model ({', '.join(f'{k}={getattr(config, k)}' for k in _SHOWN)})")
    out.mkdir(parents=True, exist_ok=True)
    cache = str(out / "cache")
    started = time.perf_counter()
    result = fit(
        train,
        val if val.n_compounds else None,
        config,
        seed=args.seed,
        progress="text",
        checkpoint_dir=out,
        cache_dir=cache,
    )
    result.save(out / "checkpoint.pt")
    print(f"fitted in {time.perf_counter() - started:.1f} s")
    result.history.to_csv(out / "history.csv", index=False)

    labels = pd.Series("train", index=pd.Index(data.compound_id, dtype=object), dtype=object)
    labels[list(val.compound_id)] = "validation"
    labels[list(test.compound_id)] = "test"
    prediction = result.predict(data, cache_dir=cache)
    prediction.insert(1, "smiles", data.smiles)
    prediction.insert(2, "split", labels.to_numpy())
    prediction.to_csv(out / "predictions.csv", index=False)

    chosen = _idata_compounds(data.n_compounds)
    idata = result.to_inference_data(data, num_samples=IDATA_SAMPLES, compounds=chosen, seed=args.seed, cache_dir=cache)
    idata.to_netcdf(out / "idata.nc")

    held, held_name = (test, "test") if test.n_compounds else (val, "validation")
    evaluation: dict[str, Any] = {
        "held_out_set": held_name if held.n_compounds else None,
        "n_held_out": held.n_compounds,
    }
    evaluation["held_out_loss"] = result.evaluate(held, cache_dir=cache) if held.n_compounds else None
    evaluation["guide_diagnostic"] = _guide_verdict(result, train)
    (out / "evaluation.json").write_text(json.dumps(evaluation, indent=1))

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
        "fit": {"seed": args.seed, "epochs": config.epochs, "batch_size": config.batch_size},
        "idata": {"n_compounds": len(chosen), "num_samples": IDATA_SAMPLES},
    }
    (out / "settings.json").write_text(json.dumps(settings, indent=1))

    _fit_figures(result, data, prediction, idata, held_name if held.n_compounds else None, out / "figures")
    report = _write_report(out, result, data, settings, prediction, result.history, evaluation)
    print(f"wrote {out}: predictions.csv, history.csv, checkpoint.pt, idata.nc, figures/, settings.json, {report.name}")
    return 0


def _guide_verdict(result: FitResult, train: DELData) -> dict[str, Any]:
    from delpyro.posterior import guide_diagnostic

    try:
        return guide_diagnostic(result, train, num_particles=100, seed=result.seed)
    except (FloatingPointError, ValueError, RuntimeError) as err:
        return {"k": None, "verdict": f"not computed: {err}"}


def _truth_scale(result: FitResult, data: DELData) -> np.ndarray | None:
    """The true log target enrichment on the model's scale, when the screen is a simulated one."""
    from delpyro.posterior import truth_on_model_scale

    if data.truth is None or "target_scale" not in data.attrs:
        return None
    return truth_on_model_scale(result, data)


def _fit_figures(
    result: FitResult, data: DELData, prediction: pd.DataFrame, idata: Any, held_name: str | None, figures: Path
) -> None:
    from delpyro import plots

    figures.mkdir(parents=True, exist_ok=True)
    plots.training_curves(result.history, path=figures / "training_curves.png")
    plots.top_compounds(prediction, n=min(30, len(prediction)), path=figures / "top_compounds.png")
    observed = pd.DataFrame(idata.observed_data["target_counts"].values, columns=list(data.target_names))
    plots.ppc_counts(observed, idata.posterior_predictive["target_counts"].values, path=figures / "ppc_counts.png")
    if result.model.spec.bb_vocabulary is not None and "building_blocks" in result.model.term_names:
        effects = result.building_block_effects(num_samples=200, seed=result.seed)
        plots.building_block_forest(effects, top=20, path=figures / "building_block_forest.png")
    if held_name is not None and data.truth is not None and "log_target_enrichment" in data.truth:
        rows = np.flatnonzero(prediction["split"].to_numpy() == held_name)
        held = data.subset(rows)
        truth = _truth_scale(result, held)
        if truth is None:
            truth = held.truth["log_target_enrichment"].to_numpy()
        pred = prediction.iloc[rows].reset_index(drop=True)
        plots.predicted_vs_true(pred, truth, path=figures / "predicted_vs_true.png")


def _cell(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return "NaN" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def _markdown_table(frame: pd.DataFrame, index: bool = False) -> str:
    if index:
        frame = frame.reset_index()
    lines = ["| " + " | ".join(str(c) for c in frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines)


def _write_report(
    run: Path,
    result: FitResult,
    data: DELData,
    settings: dict[str, Any],
    prediction: pd.DataFrame,
    history: pd.DataFrame,
    evaluation: dict[str, Any],
    affinity: dict[str, Any] | None = None,
) -> Path:
    """Write ``report.md`` of a run directory from its saved parts."""
    model = settings["model"]
    split_info = settings["split"]
    lines = ["# delpyro run report", "", "## Data", ""]
    lines += [f"Screen: `{settings['data']['screen']}`", ""]
    options = {k: v for k, v in settings["data"]["options"].items() if v is not None}
    lines += [f"Read with: `{json.dumps(options)}`", "", "```", data.summary(), "```", ""]
    lines += [
        f"Split ({split_info['how']}, seed {split_info['seed']}): {split_info['n_train']:,} training, "
        f"{split_info['n_validation']:,} validation, {split_info['n_test']:,} test compounds.",
        "",
        "## Settings",
        "",
    ]
    shown = ("name", "terms", "likelihood", "combine", "gates", "guide", "hidden_size", "epochs", "batch_size", "lr")
    lines += [_markdown_table(pd.DataFrame({"setting": shown, "value": [str(model.get(k)) for k in shown]})), ""]
    lines += ["Every setting is in `settings.json`.", "", "## Training", ""]
    if len(history):
        last = history.iloc[-1]
        lines.append(f"- {len(history)} epochs; last training loss {last['train_loss']:.4f}")
        if "val_loss" in history and history["val_loss"].notna().any():
            lines.append(f"- validation loss: last {last['val_loss']:.4f}, best {history['val_loss'].min():.4f}")
    lines += ["", "## Held-out metrics", ""]
    held_name = evaluation.get("held_out_set")
    if held_name is None:
        lines += ["No compounds were held out.", ""]
    else:
        lines += _held_out_lines(result, data, prediction, evaluation)
    lines += ["## Guide diagnostic", "", evaluation["guide_diagnostic"]["verdict"], ""]
    if affinity is not None:
        lines += [
            "## Affinity",
            "",
            f"Measured {affinity['column']} ({affinity['unit']}) from `{affinity['table']}`, matched to the screen's "
            "compounds; rank and linear correlation with the posterior mean log target enrichment (a good model "
            "gives positive correlations):",
            "",
            _markdown_table(affinity["correlation"], index=True),
            "",
        ]
    lines += ["## Figures", ""]
    for name, caption in FIGURES.items():
        if name == "predicted_vs_affinity.png" and affinity is None:
            continue
        if (run / "figures" / name).exists():
            lines += [f"### {caption}", "", f"![{caption}](figures/{name})", ""]
    path = run / "report.md"
    path.write_text("\n".join(lines))
    return path


def _held_out_lines(
    result: FitResult, data: DELData, prediction: pd.DataFrame, evaluation: dict[str, Any]
) -> list[str]:
    from delpyro import metrics

    held_name = evaluation["held_out_set"]
    rows = np.flatnonzero(prediction["split"].to_numpy() == held_name)
    lines = [f"On the {len(rows):,} {held_name} compounds.", ""]
    lines.append(f"- loss (negative ELBO per compound): {evaluation['held_out_loss']:.4f}")
    truth = data.truth
    if truth is None or "log_target_enrichment" not in truth:
        lines += ["- the screen carries no true enrichment: no truth metrics", ""]
        return lines
    held = data.subset(rows)
    pred = prediction.iloc[rows].reset_index(drop=True)
    true = held.truth["log_target_enrichment"].to_numpy()
    model_rho = spearmanr(pred["log_enrichment_mean"], true).statistic
    naive_rho = spearmanr(naive_enrichment(held), true).statistic
    lines += [f"- Spearman with the true log target enrichment: model {model_rho:.3f}, naive {naive_rho:.3f}", ""]
    if "is_binder" in held.truth:
        ks = [k for k in (10, 50, 100) if k <= len(rows)] or [len(rows)]
        recovery = metrics.hit_recovery(pred, held.truth["is_binder"].to_numpy(), top_k=ks)
        lines += ["Hit recovery at k (true binders among the top k by posterior mean):", ""]
        lines += [_markdown_table(recovery), ""]
    scaled = _truth_scale(result, held)
    if scaled is not None:
        lines += ["Calibration (coverage of the central posterior intervals of the true enrichment):", ""]
        lines += [_markdown_table(metrics.calibration(pred, scaled)), ""]
    return lines


def _read_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    return pd.read_csv(path, sep="\t" if suffix in (".tsv", ".tab") else ",")


def _report(args: argparse.Namespace) -> int:
    run = Path(args.run_dir)
    if not run.is_dir():
        raise RunError(f"{run}: no such run directory")
    checkpoint = run / "checkpoint.pt"
    if not checkpoint.exists():
        raise RunError(f"{run}: no checkpoint.pt; expected a run directory written by delpyro fit")
    for name in ("settings.json", "evaluation.json", "predictions.csv", "history.csv"):
        if not (run / name).exists():
            raise RunError(f"{run}: no {name}; expected a run directory written by delpyro fit")
    settings = json.loads((run / "settings.json").read_text())
    evaluation = json.loads((run / "evaluation.json").read_text())
    result = load(checkpoint, restore_rng=False)
    data = _read_screen(settings["data"]["screen"], settings["data"]["options"])
    prediction = pd.read_csv(run / "predictions.csv", dtype={"compound_id": str, "smiles": str, "split": str})
    if list(prediction["compound_id"]) != [str(c) for c in data.compound_id]:
        raise RunError(f"{run}: predictions.csv does not list the compounds of {settings['data']['screen']}")
    history = pd.read_csv(run / "history.csv")
    affinity = None
    if args.affinity is not None:
        from delpyro import metrics, plots

        table = _read_table(args.affinity)
        kind = args.kind or (args.affinity_col if args.affinity_col.lower() in metrics.AFFINITY_KINDS else "Ki")
        options = {"unit": args.unit, "value_column": args.affinity_col, "smiles_column": args.smiles_col}
        correlation = metrics.affinity_correlation(prediction, table, kind, **options)
        plots.predicted_vs_affinity(
            prediction, table, kind, path=run / "figures" / "predicted_vs_affinity.png", **options
        )
        affinity = {
            "table": str(args.affinity),
            "column": args.affinity_col,
            "unit": args.unit,
            "correlation": correlation,
        }
    path = _write_report(run, result, data, settings, prediction, history, evaluation, affinity)
    print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="delpyro", description="Bayesian models of DEL screens.")
    commands = parser.add_subparsers(dest="command", required=True)

    simulate = commands.add_parser("simulate", help="simulate a screen with known truth and save it")
    simulate.add_argument("--out", required=True, help="output table (.csv, .tsv or .parquet)")
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument("--n-per-cycle", type=_parse_cycles, default=(30, 30, 30), help="e.g. 30,30,30")
    simulate.add_argument("--target-replicates", type=int, default=3)
    simulate.add_argument("--control-replicates", type=int, default=2)
    simulate.add_argument("--poses", type=int, default=0, help="docked poses per compound (0: none)")
    simulate.add_argument("--no-load", action="store_true", help="no pre-selection (load) counts")
    simulate.set_defaults(run=_simulate)

    summary = commands.add_parser("summary", help="describe a screen: sizes, depth and zeros per replicate")
    summary.add_argument("screen", help="a table written by delpyro, or any table with --preset")
    summary.add_argument("--preset", default="delpyro", choices=sorted(PRESETS))
    summary.set_defaults(run=_summary)

    demo = commands.add_parser("demo", help="simulate the built-in screen, fit the default model, report")
    demo.add_argument("--out", default="runs/demo", help="run directory")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--n-per-cycle", type=_parse_cycles, default=(30, 30, 30), help="e.g. 30,30,30")
    demo.add_argument("--epochs", type=int, default=20, help="training epochs of the default model")
    demo.add_argument("--figures", default="figures", help="where the demo's figures are written")
    demo.set_defaults(run=_demo)

    fit_command = commands.add_parser(
        "fit",
        help="fit a model to a screen and write a run directory",
        description="Read a screen, split off validation and test compounds at random, fit a model and write "
        "RUN_DIR: predictions.csv, history.csv, checkpoint.pt, idata.nc, figures/, settings.json, "
        "evaluation.json and report.md.",
    )
    fit_command.add_argument("screen", help="a table written by delpyro, or any table with --preset or --target")
    fit_command.add_argument("--out", required=True, help="run directory")
    columns = fit_command.add_argument_group("columns (read_counts; given ones win over the preset)")
    columns.add_argument(
        "--preset", default=None, choices=sorted(PRESETS), help="data layout (default: delpyro without --target)"
    )
    columns.add_argument("--target", nargs="+", metavar="COL", help="target replicate count columns (or globs)")
    columns.add_argument("--control", nargs="+", metavar="COL", help="control (bead) replicate count columns")
    columns.add_argument("--smiles", metavar="COL", help="SMILES column (default smiles)")
    columns.add_argument("--compound-id", metavar="COL", help="unique compound id column")
    columns.add_argument("--building-blocks", nargs="+", metavar="COL", help="building-block columns, one per cycle")
    columns.add_argument("--load", metavar="COL", help="pre-selection (load) count column")
    model = fit_command.add_argument_group("model")
    model.add_argument(
        "--config", default="default", choices=sorted(MODEL_PRESETS), help="model preset (default: default)"
    )
    model.add_argument("--likelihood", choices=LIKELIHOODS, help="count likelihood (overrides the preset's)")
    model.add_argument("--terms", nargs="+", choices=TERMS, metavar="TERM", help=f"model terms, from {TERMS}")
    training = fit_command.add_argument_group("training")
    training.add_argument("--epochs", type=int, help="training epochs (default: the preset's)")
    training.add_argument("--batch-size", type=int, help="compounds per minibatch (default: the preset's)")
    training.add_argument("--seed", type=int, default=0, help="seeds the split, the fit and every draw")
    training.add_argument("--val-fraction", type=float, default=0.1, help="share of compounds for validation")
    training.add_argument("--test-fraction", type=float, default=0.1, help="share of compounds held out for test")
    fit_command.set_defaults(run=_fit)

    report = commands.add_parser(
        "report",
        help="rebuild report.md of a run directory, optionally with measured affinities",
        description="Rebuild RUN_DIR/report.md from the saved run (checkpoint, predictions, history, settings); "
        "with --affinity add affinity correlations and a predicted-vs-affinity figure.",
    )
    report.add_argument("run_dir", help="a directory written by delpyro fit")
    report.add_argument("--affinity", metavar="TABLE", help="a table of measured affinities (.csv, .tsv, .parquet)")
    report.add_argument("--affinity-col", default="Ki", help="the affinity value column (default Ki)")
    report.add_argument("--kind", choices=("Ki", "Kd", "IC50", "EC50"), help="affinity kind (default: from the column)")
    report.add_argument("--smiles-col", default="smiles", help="the affinity table's SMILES column")
    report.add_argument("--unit", default="nM", help="affinity unit: M, mM, uM, nM, pM, or pK (default nM)")
    report.set_defaults(run=_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (DELDataError, FileNotFoundError, ValueError) as err:
        print(f"delpyro {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

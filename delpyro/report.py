"""A run directory: what ``delpyro fit`` writes and ``delpyro report`` rebuilds.

The files of a run directory:

- ``predictions.csv``: the posterior summary of every compound of the screen, with its SMILES and the split
  it fell in (``train``, ``validation`` or ``test``).
- ``history.csv``: one row per epoch: training and validation loss, seconds.
- ``checkpoint.pt``: the fitted model, guide and optimizer (:func:`delpyro.results.load`).
- ``idata.nc``: an ArviZ InferenceData of posterior, posterior predictive and log likelihood draws, on at most
  ``IDATA_COMPOUNDS`` compounds (a fixed random subset of a larger screen).
- ``figures/``: the figures of ``FIGURES`` that apply to the run.
- ``settings.json``: the model configuration, the screen and how it was read, the split, the fit and the
  ``idata.nc`` export: enough to read the screen again.
- ``evaluation.json``: the held-out set, its loss and the guide diagnostic.
- ``report.md``: all of the above in words, tables and figure links.

A model of several targets (a folder of selections read with ``--all-targets``) writes
``predictions_<target>.csv`` per target in place of ``predictions.csv``, and ``selectivity.csv`` (per compound
and target: ``p_enriched``, ``p_selective``, the enrichment from the target's median compound) and
``selectivity_pairs.csv`` (per compound and pair of targets: the difference and ``p_greater``); its
figures are per target, with a selectivity map and a building-block selectivity forest per pair with the
first target.

:func:`write_run` writes a run directory from a fit; :func:`rebuild_report` rewrites its ``report.md`` from
the saved files, optionally with measured affinities. A run directory that cannot be read raises
:class:`RunError`.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from delpyro import files, metrics, plots
from delpyro.baselines import naive_enrichment
from delpyro.data import DELData, separator, table_kind
from delpyro.diagnostics import guide_diagnostic
from delpyro.hits import call_hits
from delpyro.posterior import truth_on_model_scale
from delpyro.reading import read_counts
from delpyro.results import FitResult, load
from delpyro.selections import read_delt, read_selections
from delpyro.selectivity import building_block_selectivity, selectivity
from delpyro.targets import join_targets

#: compounds written to ``idata.nc`` at most (a random subset, fixed seed, of a larger screen)
IDATA_COMPOUNDS = 2000
IDATA_SAMPLES = 100
#: posterior draws per compound in ``predictions.csv``, and the guide diagnostic's draws
PREDICT_SAMPLES = 200
GUIDE_PARTICLES = 100
#: figure file names in a run directory's ``figures/`` and their captions, in report order
FIGURES = {
    "training_curves.png": "Training and validation loss per epoch",
    "top_compounds.png": "Compounds with the highest posterior mean log target enrichment",
    "ppc_counts.png": "Posterior predictive check of the target counts",
    "building_block_forest.png": "Building-block effects on the target arm",
    "predicted_vs_true.png": "Predicted against true log target enrichment (held-out compounds)",
    "predicted_vs_affinity.png": "Predicted enrichment against measured affinity",
}


class RunError(ValueError):
    """A run directory that cannot be read (no checkpoint, a missing file)."""


def read_screen(screen: str | Path, options: dict[str, Any]) -> DELData:
    """The screen read with the ``read_counts`` options of a run's ``settings.json`` (None: not given).

    Several selections in one source give one screen per target: a folder of per-selection count files
    (``preset="delt"``, read with :func:`delpyro.selections.read_delt` and completed to every combination
    of its building blocks), or a wide table with one count column per selection described by a
    selections table (``selections``, read with :func:`delpyro.selections.read_selections`). Then
    ``selection_target`` picks one target's screen (needed when there are several), or ``all_targets``
    joins them all into one screen (:func:`delpyro.targets.join_targets`) for one model."""
    given = {key: value for key, value in options.items() if value is not None}
    target = given.pop("selection_target", None)
    every = bool(given.pop("all_targets", False))
    table = given.pop("selections", None)
    if table is not None:
        keep = {k: given[k] for k in ("smiles", "compound_id", "building_blocks", "load") if k in given}
        screens = read_selections(screen, table, **keep)
    elif given.get("preset") == "delt":
        screens = read_delt(screen, complete=True)
    else:
        if target is not None or every:
            raise RunError(
                "--selection-target and --all-targets are for several selections: a folder of per-selection count "
                "files (--preset delt) or a wide table with --selections"
            )
        return read_counts(screen, **given)
    if every:
        if target is not None:
            raise RunError("--all-targets fits every target: leave --selection-target out")
        if len(screens) < 2:
            raise RunError(f"{screen}: --all-targets needs two or more targets; its selections hold {sorted(screens)}")
        return join_targets(screens)
    if target is None and len(screens) == 1:
        return next(iter(screens.values()))
    if target not in screens:
        raise RunError(f"{screen}: its selections hold the targets {sorted(screens)}; pick one with --selection-target")
    return screens[target]


#: the files of a run directory (the fingerprint cache beside them is kept when a run is replaced);
#: a model of several targets writes ``predictions_<target>.csv`` (:data:`PER_TARGET_PREDICTIONS`)
RUN_FILES = (
    "checkpoint.pt",
    "history.csv",
    "predictions.csv",
    "selectivity.csv",
    "selectivity_pairs.csv",
    "idata.nc",
    "settings.json",
    "evaluation.json",
    "report.md",
    "figures",
)
PER_TARGET_PREDICTIONS = "predictions_{target}.csv"


#: where a run that replaces another is written until it is whole (inside the run folder)
STAGING = ".delpyro-new-run"


def _held(run: Path) -> list[str]:
    """The run files and folders ``run`` holds (see :data:`RUN_FILES`)."""
    held = [name for name in RUN_FILES if (run / name).exists()]
    return held + sorted(path.name for path in run.glob(PER_TARGET_PREDICTIONS.format(target="*")))


def prepare_run(run: Path, overwrite: bool = False) -> Path:
    """Make ``run`` ready for a new run before anything is fitted and return the folder to write it in.

    Refuses a path that is a file, or a folder that holds a run already unless ``overwrite``; creates it
    (``OSError`` when that is not allowed). A new run is written in ``run`` itself; one that replaces
    another is written in ``run / STAGING`` (emptied first: what a run that failed left there), and
    :func:`finish_run` puts it in place of the old one once it is whole, so a fit or a write that fails
    leaves the old run as it was."""
    if run.exists() and not run.is_dir():
        raise RunError(f"--out {run}: a file, not a folder for the run")
    held = _held(run)
    if held and not overwrite:
        raise RunError(
            f"--out {run} holds a run already ({', '.join(held)}): pass --overwrite to replace it, "
            "or choose another folder"
        )
    run.mkdir(parents=True, exist_ok=True)
    target = run
    if held:
        target = run / STAGING
        if target.exists():
            shutil.rmtree(target)
        target.mkdir()
    with files.replacing(target / ".delpyro-write-check") as probe:  # fails now, not after the fit
        probe.write_bytes(b"")
    (target / ".delpyro-write-check").unlink()
    return target


def finish_run(run: Path, written: Path) -> None:
    """Put the run written in ``written`` (what :func:`prepare_run` returned) in place: when it is the
    staging folder, the old run's files and figures are removed (so an old figure never turns up beside
    the new report), then the new ones moved in, one rename each."""
    if written == run:
        return
    for name in _held(run):
        path = run / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    for path in sorted(written.iterdir()):
        path.rename(run / path.name)
    written.rmdir()


@contextmanager
def _phase(what: str, progress: bool) -> Iterator[None]:
    """With ``progress``, a line saying what runs, ended by its seconds when it is done."""
    started = time.perf_counter()
    if progress:
        print(f"  {what} ...", end="", flush=True)
    yield
    if progress:
        print(f" {time.perf_counter() - started:.1f} s", flush=True)


def write_run(
    run: Path,
    result: FitResult,
    data: DELData,
    train: DELData,
    val: DELData,
    test: DELData,
    settings: dict[str, Any],
    *,
    progress: bool = False,
    cache_dir: str | Path | None = None,
) -> Path:
    """Write the run directory of ``result``, fitted on ``train`` (split from ``data`` with ``val`` and
    ``test``), next to its checkpoint and history: predictions, ``idata.nc``, ``evaluation.json``,
    ``settings.json`` (``settings`` and the ``idata.nc`` export), figures and ``report.md``, whose path it
    returns. With ``progress``, a line per phase (what runs, then its seconds). Fingerprints are cached in
    ``cache_dir`` (default ``run / "cache"``)."""
    cache = str(run / "cache" if cache_dir is None else cache_dir)
    labels = pd.Series("train", index=pd.Index(data.compound_id, dtype=object), dtype=object)
    labels[list(val.compound_id)] = "validation"
    labels[list(test.compound_id)] = "test"
    targets = result.model.targets
    what = f"predicting {data.n_compounds:,} compounds ({PREDICT_SAMPLES} posterior draws each)"
    if targets is not None:
        what += f" for {len(targets)} targets"
    with _phase(what, progress):
        predictions = {}
        for target in targets or [None]:
            prediction = result.predict(data, num_samples=PREDICT_SAMPLES, cache_dir=cache, target=target)
            prediction.insert(1, "smiles", data.smiles)
            prediction.insert(2, "split", labels.to_numpy())
            with files.replacing(run / _predictions_file(target)) as temporary:
                prediction.to_csv(temporary, index=False)
            predictions[target] = prediction
    selective = None
    if targets is not None:
        with _phase(f"selectivity of {len(targets)} targets ({PREDICT_SAMPLES} posterior draws)", progress):
            selective = selectivity(result, data, num_samples=PREDICT_SAMPLES, cache_dir=cache, seed=result.seed)
            table = selective.table.copy()
            table.insert(2, "split", np.tile(labels.to_numpy(), len(targets)))
            with files.replacing(run / "selectivity.csv") as temporary:
                table.to_csv(temporary, index=False)
            with files.replacing(run / "selectivity_pairs.csv") as temporary:
                selective.pairs.to_csv(temporary, index=False)

    chosen = _idata_compounds(data.n_compounds)
    with _phase(f"exporting idata.nc ({len(chosen):,} compounds x {IDATA_SAMPLES} draws)", progress):
        idata = result.to_inference_data(
            data, num_samples=IDATA_SAMPLES, compounds=chosen, seed=result.seed, cache_dir=cache
        )
        with files.replacing(run / "idata.nc") as temporary:
            idata.to_netcdf(temporary)

    held, held_name = (test, "test") if test.n_compounds else (val, "validation")
    evaluation: dict[str, Any] = {
        "held_out_set": held_name if held.n_compounds else None,
        "n_held_out": held.n_compounds,
    }
    with _phase(f"held-out loss ({held.n_compounds:,} {held_name} compounds)", progress and held.n_compounds > 0):
        evaluation["held_out_loss"] = result.evaluate(held, cache_dir=cache) if held.n_compounds else None
    with _phase(f"guide diagnostic ({GUIDE_PARTICLES} draws)", progress):
        evaluation["guide_diagnostic"] = _guide_verdict(result, train)
    files.write_text(run / "evaluation.json", json.dumps(evaluation, indent=1))

    settings = {**settings, "idata": {"n_compounds": len(chosen), "num_samples": IDATA_SAMPLES}}
    files.write_text(run / "settings.json", json.dumps(settings, indent=1))

    with _phase("figures and report.md", progress):
        _fit_figures(result, data, predictions, idata, evaluation["held_out_set"], run / "figures", selective)
        return _write_report(run, result, data, settings, predictions, result.history, evaluation)


def _predictions_file(target: str | None) -> str:
    """The predictions file of a run: of its one target, or of one of several."""
    return "predictions.csv" if target is None else PER_TARGET_PREDICTIONS.format(target=target)


def _figure_captions(targets: list[str] | None) -> dict[str, str]:
    """The figures a run directory may hold, by file name, with their captions, in report order."""
    if targets is None:
        return dict(FIGURES)
    out = {"training_curves.png": FIGURES["training_curves.png"]}
    for target in targets:
        out[f"top_compounds_{target}.png"] = f"{target}: compounds with the highest posterior mean log enrichment"
    out["ppc_counts.png"] = "Posterior predictive check of the target counts (every target's replicates)"
    for target in targets:
        out[f"building_block_forest_{target}.png"] = f"{target}: building-block effects (shared plus its own)"
    for other in targets[1:]:
        pair = f"{targets[0]}_{other}"
        out[f"selectivity_map_{pair}.png"] = f"Selectivity, {targets[0]} against {other}"
        out[f"selectivity_forest_{pair}.png"] = f"Building-block selectivity, {targets[0]} against {other}"
    return out


def rebuild_report(
    run: Path,
    affinity_table: str | Path | None = None,
    *,
    value_column: str = "Ki",
    kind: str | None = None,
    smiles_column: str = "smiles",
    unit: str = "nM",
) -> Path:
    """Rewrite ``report.md`` of a run directory from its saved files and return its path.

    With ``affinity_table`` (a table of measured affinities: ``value_column`` in ``unit``, matched to the
    screen by ``smiles_column``), add their correlation with the predictions and a predicted-vs-affinity
    figure. ``kind`` (Ki, Kd, IC50, EC50) defaults to the value column's name when it is one, else Ki.
    """
    if not run.is_dir():
        raise RunError(f"{run}: no such run directory")
    checkpoint = run / "checkpoint.pt"
    if not checkpoint.exists():
        raise RunError(f"{run}: no checkpoint.pt; expected a run directory written by delpyro fit")
    for name in ("settings.json", "evaluation.json", "history.csv"):
        if not (run / name).exists():
            raise RunError(f"{run}: no {name}; expected a run directory written by delpyro fit")
    settings = _read_json(run / "settings.json", ("model", "data", "split"))
    evaluation = _read_json(run / "evaluation.json", ("held_out_set", "guide_diagnostic"))
    result = load(checkpoint, restore_rng=False)
    data = read_screen(settings["data"]["screen"], settings["data"]["options"])
    types = {"compound_id": str, "smiles": str, "split": str}
    predictions = {}
    for target in result.model.targets or [None]:
        name = _predictions_file(target)
        if not (run / name).exists():
            raise RunError(f"{run}: no {name}; expected a run directory written by delpyro fit")
        predictions[target] = _read_csv(run / name, ("compound_id", "split", "log_enrichment_mean"), types)
        if list(predictions[target]["compound_id"]) != [str(c) for c in data.compound_id]:
            raise RunError(f"{run}: {name} does not list the compounds of {settings['data']['screen']}")
    history = _read_csv(run / "history.csv", ("epoch", "train_loss", "val_loss"))
    affinity = None
    if affinity_table is not None:
        if result.model.targets is not None:
            raise RunError(
                f"{run}: a model of several targets; set measured affinities beside one target's predictions "
                "(predictions_<target>.csv) with delpyro.metrics.affinity_correlation"
            )
        prediction = predictions[None]
        table = _read_table(affinity_table)
        kind = kind or (value_column if value_column.lower() in metrics.AFFINITY_KINDS else "Ki")
        options = {"unit": unit, "value_column": value_column, "smiles_column": smiles_column}
        correlation = metrics.affinity_correlation(prediction, table, kind, **options)
        plots.predicted_vs_affinity(
            prediction, table, kind, path=run / "figures" / "predicted_vs_affinity.png", **options
        )
        affinity = {"table": str(affinity_table), "column": value_column, "unit": unit, "correlation": correlation}
    return _write_report(run, result, data, settings, predictions, history, evaluation, affinity)


def _read_json(path: Path, keys: tuple[str, ...]) -> dict[str, Any]:
    try:
        values = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise RunError(f"{path}: not the JSON delpyro fit writes ({err})") from None
    if not isinstance(values, dict) or any(key not in values for key in keys):
        raise RunError(f"{path}: not the settings delpyro fit writes (expected the keys {list(keys)})")
    return values


def _read_csv(path: Path, columns: tuple[str, ...], types: dict[str, Any] | None = None) -> pd.DataFrame:
    try:
        table = pd.read_csv(path, dtype=types)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as err:
        raise RunError(f"{path}: not the table delpyro fit writes ({err})") from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise RunError(f"{path}: not the table delpyro fit writes (no columns {missing})")
    return table


def _idata_compounds(n: int, limit: int = IDATA_COMPOUNDS) -> np.ndarray:
    """Positions of the compounds exported to ``idata.nc``: all of them, or ``limit`` drawn with a fixed seed."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, limit, replace=False))


def _guide_verdict(result: FitResult, train: DELData) -> dict[str, Any]:
    try:
        return guide_diagnostic(result, train, num_particles=GUIDE_PARTICLES, seed=result.seed)
    except (FloatingPointError, ValueError, RuntimeError) as err:
        return {"k": None, "verdict": f"not computed: {err}"}


def _truth_scale(result: FitResult, data: DELData) -> np.ndarray | None:
    """The true log target enrichment on the model's scale, when the screen is a simulated one."""
    if data.truth is None or "target_scale" not in data.attrs:
        return None
    return truth_on_model_scale(result, data)


def _fit_figures(
    result: FitResult,
    data: DELData,
    predictions: dict[str | None, pd.DataFrame],
    idata: Any,
    held_name: str | None,
    figures: Path,
    selective: Any = None,
) -> None:
    figures.mkdir(parents=True, exist_ok=True)
    plots.training_curves(result.history, path=figures / "training_curves.png")
    targets = result.model.targets
    for target, prediction in predictions.items():
        name = "top_compounds.png" if target is None else f"top_compounds_{target}.png"
        plots.top_compounds(prediction, n=min(30, len(prediction)), path=figures / name)
    observed = pd.DataFrame(idata.observed_data["target_counts"].values, columns=list(data.target_names))
    plots.ppc_counts(observed, idata.posterior_predictive["target_counts"].values, path=figures / "ppc_counts.png")
    encoding = result.model.encoding
    if encoding.bb_vocabulary is not None and "building_blocks" in encoding.terms:
        for target in targets or [None]:
            effects = result.building_block_effects(num_samples=200, seed=result.seed, target=target)
            name = "building_block_forest.png" if target is None else f"building_block_forest_{target}.png"
            plots.building_block_forest(effects, top=20, path=figures / name)
    if selective is not None:
        pairs = [(targets[0], other) for other in targets[1:]]
        blocks = None
        if encoding.bb_vocabulary is not None and "building_blocks" in encoding.terms:
            blocks = building_block_selectivity(result, pairs, num_samples=200, seed=result.seed)
        for first, other in pairs:
            plots.selectivity_map(selective, first, other, path=figures / f"selectivity_map_{first}_{other}.png")
            if blocks is not None:
                path = figures / f"selectivity_forest_{first}_{other}.png"
                plots.selectivity_forest(blocks, first, other, path=path)
    prediction = predictions.get(None)
    has_truth = data.truth is not None and "log_target_enrichment" in data.truth
    if prediction is not None and held_name is not None and has_truth:
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
    predictions: dict[str | None, pd.DataFrame],
    history: pd.DataFrame,
    evaluation: dict[str, Any],
    affinity: dict[str, Any] | None = None,
) -> Path:
    """Write ``report.md`` of a run directory from its saved parts (``predictions``: ``{None: table}`` for
    one target, ``{target: table}`` for several)."""
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
    values = {name: model.get(name) for name in shown}
    if values["batch_size"] is None:  # the default, which grows with the screen: the size it took
        values["batch_size"] = f"{settings.get('fit', {}).get('batch_size')} (grows with the screen)"
    lines += [_markdown_table(pd.DataFrame({"setting": shown, "value": [str(v) for v in values.values()]})), ""]
    lines += ["Every setting is in `settings.json`.", "", "## Training", ""]
    if len(history):
        last = history.iloc[-1]
        lines.append(f"- {len(history)} epochs; last training loss {last['train_loss']:.4f}")
        if "val_loss" in history and history["val_loss"].notna().any():
            lines.append(f"- validation loss: last {last['val_loss']:.4f}, best {history['val_loss'].min():.4f}")
    lines += ["", "## Held-out metrics", ""]
    if evaluation.get("held_out_set") is None:
        lines += ["No compounds were held out.", ""]
    else:
        for target, prediction in predictions.items():
            lines += _held_out_lines(result, data, prediction, evaluation, target)
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
    targets = result.model.targets
    if targets is not None and (run / "selectivity.csv").exists():
        lines += _selectivity_lines(run, targets)
    lines += ["## Figures", ""]
    for name, caption in _figure_captions(targets).items():
        if name == "predicted_vs_affinity.png" and affinity is None:
            continue
        if (run / "figures" / name).exists():
            lines += [f"### {caption}", "", f"![{caption}](figures/{name})", ""]
    path = run / "report.md"
    files.write_text(path, "\n".join(lines))
    return path


def _selectivity_lines(run: Path, targets: list[str]) -> list[str]:
    """The report's selectivity section: per target, the selective hits at posterior expected FDR 0.05."""
    table = pd.read_csv(run / "selectivity.csv", dtype={"compound_id": str, "target": str})
    lines = ["## Selectivity", ""]
    lines += [
        "Each target's log enrichment measured from its median compound; a compound is selective for a target "
        "when it is enriched for it (above log 2) and for none of the others. Selective hits are called at a "
        "posterior expected false discovery rate of 0.05 (`selectivity.csv`: every compound; "
        "`selectivity_pairs.csv`: every pair of targets).",
        "",
    ]
    rows = []
    for target in targets:
        own = table[table["target"] == target].reset_index(drop=True)
        calls = call_hits(own, 0.05, column="p_selective", what=f"selective for {target}")
        top = calls.hits.head(3)["compound_id"].tolist()
        rows.append({"target": target, "selective hits": calls.n_called, "most certain": ", ".join(top)})
    lines += [_markdown_table(pd.DataFrame(rows)), ""]
    return lines


def _held_out_lines(
    result: FitResult,
    data: DELData,
    prediction: pd.DataFrame,
    evaluation: dict[str, Any],
    target: str | None = None,
) -> list[str]:
    held_name = evaluation["held_out_set"]
    rows = np.flatnonzero(prediction["split"].to_numpy() == held_name)
    if target is None:
        lines = [f"On the {len(rows):,} {held_name} compounds.", ""]
        lines.append(f"- loss (negative ELBO per compound): {evaluation['held_out_loss']:.4f}")
    else:
        lines = []
        if target == result.model.targets[0]:  # the loss is of every target's reads: said once
            lines += [
                f"On the {len(rows):,} {held_name} compounds: loss (negative ELBO per compound, every target's "
                f"reads) {evaluation['held_out_loss']:.4f}.",
                "",
            ]
        lines += [f"### {target}", ""]
    truth = data.truth
    column = "log_target_enrichment" if target is None else f"log_t_{target}"
    if truth is None or column not in truth:
        lines += ["- the screen carries no true enrichment: no truth metrics", ""]
        return lines
    held = data.subset(rows)
    pred = prediction.iloc[rows].reset_index(drop=True)
    true = held.truth[column].to_numpy()
    model_rho = spearmanr(pred["log_enrichment_mean"], true).statistic
    if target is not None:
        lines += [f"- Spearman with the true log enrichment: model {model_rho:.3f}", ""]
        return lines
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
    kind = table_kind(path)
    if kind == "parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, sep=separator(kind))

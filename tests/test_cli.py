"""The command line: simulate, summary, the demo, fit and report, and one-line errors."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import arviz as az
import pandas as pd
import pytest

import delpyro
from delpyro import read_counts
from delpyro.cli import main


def test_simulate_then_summary(tmp_path, capsys) -> None:
    out = tmp_path / "screen.csv"
    assert main(["simulate", "--out", str(out), "--n-per-cycle", "4,3,3", "--seed", "2"]) == 0
    data = read_counts(out, preset="delpyro")
    assert data.n_compounds == 36 and data.n_target_replicates == 3 and data.n_control_replicates == 2
    capsys.readouterr()
    assert main(["summary", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "36 compounds" in printed and "zero_fraction" in printed


def test_demo_round_trip(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    figures = tmp_path / "figures"
    arguments = ["demo", "--out", str(run), "--n-per-cycle", "6,5,4", "--epochs", "2", "--figures", str(figures)]
    assert main(arguments) == 0
    printed = capsys.readouterr().out
    assert "read it back: identical" in printed
    assert "120 compounds" in printed
    assert "epoch 2/2" in printed and "Spearman with the true log target enrichment" in printed
    for name in ("screen.parquet", "checkpoint.pt", "history.csv", "predictions_test.csv"):
        assert (run / name).exists(), name
    assert len(pd.read_csv(run / "history.csv")) == 2
    assert len(pd.read_csv(run / "predictions_test.csv")) == 12  # 10% of 120 held out
    for name in ("training_curves", "predicted_vs_true", "top_compounds"):
        assert (figures / f"demo_{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_user_errors_are_one_line_without_traceback(tmp_path) -> None:
    table = pd.DataFrame({"smiles": ["CCO", "CCN"], "target:r1": [1, -1], "compound_id": ["a", "b"]})
    table.to_csv(tmp_path / "bad.csv", index=False)
    result = subprocess.run(
        [sys.executable, "-m", "delpyro", "summary", str(tmp_path / "bad.csv")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "'target:r1'" in lines[0] and "negative" in lines[0]
    missing = subprocess.run(
        [sys.executable, "-m", "delpyro", "summary", str(tmp_path / "none.csv")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == 2 and "no such file" in missing.stderr


# ----------------------------------------------------------------------------------------------------
# fit and report


PREDICT_COLUMNS = [
    "compound_id",
    "log_enrichment_mean",
    "log_enrichment_sd",
    "log_enrichment_q05",
    "log_enrichment_q25",
    "log_enrichment_q50",
    "log_enrichment_q75",
    "log_enrichment_q95",
    "log_matrix_mean",
    "p_enriched",
]


@pytest.fixture(scope="module")
def fitted_run(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny simulated screen (48 compounds) and a two-epoch run directory fitted on it."""
    root = tmp_path_factory.mktemp("cli_fit")
    screen = root / "x.csv"
    assert main(["simulate", "--n-per-cycle", "4,4,3", "--out", str(screen)]) == 0
    run = root / "run"
    code = main(["fit", str(screen), "--out", str(run), "--epochs", "2", "--batch-size", "16", "--seed", "1"])
    assert code == 0
    return screen, run


def test_fit_in_two_processes_writes_the_same_run(fitted_run, tmp_path, capsys) -> None:
    """``--nproc 2``: the run folder of a one-process fit, from one checkpoint of the whole screen, with
    the progress lines of both epochs; and the same training losses (the same batches, the compounds
    sharded, the gradients added)."""
    screen, single = fitted_run
    run = tmp_path / "run"
    capsys.readouterr()
    code = main(
        ["fit", str(screen), "--out", str(run), "--epochs", "2", "--batch-size", "16", "--seed", "1", "--nproc", "2"]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "epoch 1/2" in printed and "epoch 2/2" in printed
    for name in ("predictions.csv", "history.csv", "checkpoint.pt", "report.md"):
        assert (run / name).is_file(), name
    assert json.loads((run / "settings.json").read_text())["fit"]["processes"] == 2
    assert len(pd.read_csv(run / "predictions.csv")) == 48
    losses = pd.read_csv(run / "history.csv")["train_loss"]
    assert losses.iloc[0] == pytest.approx(pd.read_csv(single / "history.csv")["train_loss"].iloc[0], rel=0.2)
    with pytest.raises(SystemExit):
        main(["fit", str(screen), "--out", str(tmp_path / "bad"), "--nproc", "0"])
    assert "--nproc: expected at least 1, got 0" in capsys.readouterr().err


def test_simulate_writes_csv_and_parquet_with_poses(tmp_path) -> None:
    for name in ("screen.csv", "screen.parquet"):
        out = tmp_path / name
        assert main(["simulate", "--out", str(out), "--n-per-cycle", "3,2,2", "--poses", "2", "--seed", "3"]) == 0
        data = read_counts(out, preset="delpyro")
        assert data.n_compounds == 12 and data.n_poses == 2 and data.truth is not None
        assert (tmp_path / "screen.poses.npy").exists()


def test_fit_writes_the_run_directory(fitted_run, capsys) -> None:
    _, run = fitted_run
    for name in ("predictions.csv", "history.csv", "checkpoint.pt", "idata.nc", "settings.json", "report.md"):
        assert (run / name).is_file(), name
    figures = sorted(p.name for p in (run / "figures").glob("*.png"))
    expected = ["building_block_forest.png", "ppc_counts.png", "predicted_vs_true.png", "top_compounds.png"]
    assert figures == sorted([*expected, "training_curves.png"])

    prediction = pd.read_csv(run / "predictions.csv")
    assert set(PREDICT_COLUMNS) <= set(prediction.columns)
    assert len(prediction) == 48 and prediction["compound_id"].is_unique
    assert prediction["split"].value_counts().to_dict() == {"train": 38, "validation": 5, "test": 5}
    assert list(pd.read_csv(run / "history.csv")["epoch"]) == [1, 2]

    settings = json.loads((run / "settings.json").read_text())
    assert settings["model"]["epochs"] == 2 and settings["model"]["batch_size"] == 16
    assert settings["data"]["options"]["preset"] == "delpyro"
    assert settings["split"]["seed"] == 1 and settings["split"]["n_test"] == 5

    idata = az.from_netcdf(run / "idata.nc")
    assert "log_likelihood" in idata.groups()
    assert idata.log_likelihood["counts"].shape == (1, 100, 48)
    assert idata.posterior_predictive["target_counts"].shape == (1, 100, 48, 3)

    report = (run / "report.md").read_text()
    assert "## Held-out metrics" in report and "On the 5 test compounds" in report
    assert "loss (negative ELBO per compound)" in report
    assert "Spearman with the true log target enrichment" in report
    assert "Hit recovery at k" in report and "Calibration" in report
    assert "## Guide diagnostic" in report and "k = " in report
    links = re.findall(r"\]\((figures/[^)]+)\)", report)
    assert sorted(Path(link).name for link in links) == figures
    assert all((run / link).is_file() for link in links)


def test_report_adds_an_affinity_section(fitted_run, tmp_path, capsys) -> None:
    screen, run = fitted_run
    data = read_counts(screen, preset="delpyro")
    ki = pd.DataFrame({"smiles": data.smiles[:8], "Ki": [1.0, 5.0, 20.0, 80.0, 300.0, 900.0, 4000.0, 10000.0]})
    table = tmp_path / "ki.csv"
    ki.to_csv(table, index=False)
    assert main(["report", str(run), "--affinity", str(table), "--affinity-col", "Ki", "--unit", "nM"]) == 0
    assert "report.md" in capsys.readouterr().out
    report = (run / "report.md").read_text()
    assert "## Affinity" in report and "spearman" in report and "| all | 8 |" in report
    assert "## Held-out metrics" in report
    assert (run / "figures" / "predicted_vs_affinity.png").is_file()
    assert "](figures/predicted_vs_affinity.png)" in report


def _one_line_error(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err
    return lines[0]


def test_fit_and_report_user_errors(fitted_run, tmp_path, capsys) -> None:
    screen, run = fitted_run
    capsys.readouterr()
    out = tmp_path / "bad"
    assert main(["fit", str(screen), "--out", str(out), "--target", "no_such_column", "--epochs", "1"]) == 2
    assert "no_such_column" in _one_line_error(capsys)
    assert main(["fit", str(tmp_path / "none.csv"), "--out", str(out), "--epochs", "1"]) == 2
    line = _one_line_error(capsys)
    assert "none.csv" in line and "no such file" in line
    empty = tmp_path / "empty_run"
    empty.mkdir()
    assert main(["report", str(empty)]) == 2
    line = _one_line_error(capsys)
    assert "checkpoint.pt" in line and "empty_run" in line
    assert main(["report", str(run), "--affinity", str(tmp_path / "nope.csv")]) == 2
    assert "nope.csv" in _one_line_error(capsys)


def test_fit_help_runs_as_a_module() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "delpyro", "fit", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    for option in ("--out", "--layout", "--target", "--model", "--likelihood", "--terms", "--early-stopping"):
        assert option in result.stdout
    # every option's default is shown (none for flags, required options and those whose help says what None is)
    assert "--val-fraction VAL_FRACTION" in result.stdout and "(default: 0.1)" in result.stdout
    assert "(default: None)" not in result.stdout and "(default: False)" not in result.stdout


def test_every_command_has_a_description_and_every_option_help() -> None:
    from delpyro.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in commands.choices.items():
        assert command.description, name
        for action in command._actions:
            assert action.help, f"{name} {action.option_strings or action.dest}"
    simulate = commands.choices["simulate"].format_help()
    assert "(default: 30,30,30)" in simulate and "(default: 3)" in simulate
    # the older option names still work
    args = parser.parse_args(["fit", "s.csv", "--out", "r", "--preset", "kindel", "--config", "del-dock"])
    assert args.preset == "kindel" and args.config == "del-dock"


def test_fit_stops_early_when_asked(tmp_path, capsys) -> None:
    screen = tmp_path / "screen.csv"
    delpyro.simulate_del(seed=0, n_per_cycle=(4, 4, 4)).save(screen)
    run = tmp_path / "run"
    arguments = ["fit", str(screen), "--out", str(run), "--epochs", "60", "--early-stopping", "1", "--batch-size", "16"]
    assert main(arguments) == 0
    out = capsys.readouterr().out
    assert "early stopping: no improvement for 1 epochs, kept epoch" in out
    settings = json.loads((run / "settings.json").read_text())
    assert settings["fit"]["early_stopping_patience"] == 1
    assert len(pd.read_csv(run / "history.csv")) < 60


def test_fit_reads_a_folder_of_selections(tmp_path, capsys) -> None:
    """A per-selection folder (DELT layout) fits with --preset delt, completed to every combination of its
    building blocks, and --selection-target picks one of several targets."""
    import numpy as np

    import delpyro

    screen = delpyro.simulate_del(seed=2, n_per_cycle=(3, 3, 2))
    screen.target_names = ["t1", "t2", "t3"]
    screen.control_names = ["c1", "c2"]
    other = screen.subset(np.arange(screen.n_compounds))
    other.target_counts = np.random.default_rng(0).permutation(screen.target_counts)  # a second target, shuffled
    other.target_names = ["u1", "u2", "u3"]
    folder = delpyro.write_delt({"kinase": screen, "other": other}, tmp_path / "selections")
    run = tmp_path / "run"
    assert main(["fit", str(folder), "--preset", "delt", "--out", str(run), "--epochs", "1"]) == 2
    assert "--selection-target" in capsys.readouterr().err
    arguments = ["fit", str(folder), "--preset", "delt", "--selection-target", "kinase", "--out", str(run)]
    assert main([*arguments, "--epochs", "1", "--batch-size", "16"]) == 0
    predictions = pd.read_csv(run / "predictions.csv")
    assert len(predictions) == screen.n_compounds  # every combination of the blocks
    assert main(["report", str(run)]) == 0


def test_fit_with_all_targets_fits_one_model_and_writes_selectivity(tmp_path, capsys) -> None:
    """A folder of selections of several targets on shared controls fits in one model with --all-targets:
    each target's predictions, the selectivity tables, per-target and selectivity figures, a report that
    rebuilds; and --all-targets where it does not apply is a one-line error."""
    import delpyro

    panel = delpyro.simulate_targets(0, targets=("CA2", "USP7"), n_per_cycle=(5, 4, 4), reads_per_compound=2.0)
    folder = delpyro.write_delt(panel, tmp_path / "panel")
    run = tmp_path / "run"
    arguments = ["fit", str(folder), "--preset", "delt", "--all-targets", "--out", str(run)]
    assert main([*arguments, "--epochs", "2", "--batch-size", "16"]) == 0
    printed = capsys.readouterr().out
    assert "selectivity of 2 targets" in printed and "predictions_CA2.csv, predictions_USP7.csv" in printed
    n = panel["CA2"].n_compounds
    for target in ("CA2", "USP7"):
        predictions = pd.read_csv(run / f"predictions_{target}.csv")
        assert len(predictions) == n and set(predictions["split"]) == {"train", "validation", "test"}
    assert not (run / "predictions.csv").exists()
    table = pd.read_csv(run / "selectivity.csv")
    assert len(table) == 2 * n and list(table["target"].unique()) == ["CA2", "USP7"]
    assert table["p_selective"].between(0, 1).all() and (table["p_selective"] <= table["p_enriched"]).all()
    pairs = pd.read_csv(run / "selectivity_pairs.csv")
    assert len(pairs) == 2 * n and set(zip(pairs["target"], pairs["other"], strict=True)) == {
        ("CA2", "USP7"),
        ("USP7", "CA2"),
    }
    figures = {p.name for p in (run / "figures").iterdir()}
    assert {
        "top_compounds_CA2.png",
        "building_block_forest_USP7.png",
        "selectivity_map_CA2_USP7.png",
        "selectivity_forest_CA2_USP7.png",
    } <= figures
    report = (run / "report.md").read_text()
    assert "## Selectivity" in report and "| CA2 |" in report and "figures/selectivity_map_CA2_USP7.png" in report
    assert main(["report", str(run)]) == 0
    assert (run / "report.md").read_text() == report
    screen = tmp_path / "screen.csv"
    assert main(["simulate", "--n-per-cycle", "3,3,2", "--out", str(screen)]) == 0
    assert main(["fit", str(screen), "--all-targets", "--out", str(tmp_path / "other"), "--epochs", "1"]) == 2
    assert "--all-targets" in capsys.readouterr().err


def test_fit_with_all_targets_on_two_kinds_of_beads_gives_each_its_controls(tmp_path, capsys) -> None:
    """A folder whose targets were selected on different beads, each with its own no-protein controls
    (paired by the selections table's beads), fits in one model with a matrix of each bead set."""
    import delpyro

    beads = {"CA2": "SA", "USP7": "Ni"}
    panel = delpyro.simulate_targets(
        0, targets=tuple(beads), n_per_cycle=(5, 4, 4), reads_per_compound=2.0, bead_sets=beads
    )
    rows = {
        name: {"beads": beads[target]}
        for target, screen in panel.items()
        for name in [*screen.target_names, *screen.control_names]
    }
    folder = delpyro.write_delt(panel, tmp_path / "panel", selections=rows)
    run = tmp_path / "run"
    arguments = ["fit", str(folder), "--preset", "delt", "--all-targets", "--out", str(run)]
    assert main([*arguments, "--epochs", "2", "--batch-size", "16"]) == 0
    capsys.readouterr()
    report = (run / "report.md").read_text()
    assert "bead sets, each with its own controls: SA: CA2; Ni: USP7" in report
    assert len(pd.read_csv(run / "predictions_USP7.csv")) == panel["USP7"].n_compounds
    model = delpyro.load(run / "checkpoint.pt").model
    assert model.matrix_arms == ("matrix:SA", "matrix:Ni")


def test_fit_reads_a_wide_table_of_selections(tmp_path, capsys) -> None:
    """A wide table with one count column per selection and a selections table (--selections): one
    target's screen with --selection-target, every target in one model with --all-targets."""
    import delpyro

    panel = delpyro.simulate_targets(1, targets=("CA2", "USP7"), n_per_cycle=(4, 4, 3), reads_per_compound=2.0)
    first = panel["CA2"]
    table = pd.DataFrame({"compound_id": first.compound_id, "smiles": first.smiles})
    for cycle in first.building_blocks.columns:
        table[cycle] = first.building_blocks[cycle]
    rows = []
    for target, screen in panel.items():
        for j, name in enumerate(screen.target_names):
            table[name] = screen.target_counts[:, j]
            rows.append({"name": name, "target": target, "group": "protein"})
    for j, name in enumerate(first.control_names):
        table[name] = first.control_counts[:, j]
        rows.append({"name": name, "target": "", "group": "no_protein"})
    table.to_csv(tmp_path / "wide.csv", index=False)
    pd.DataFrame(rows).to_csv(tmp_path / "selections.csv", index=False)
    common = ["fit", str(tmp_path / "wide.csv"), "--selections", str(tmp_path / "selections.csv"), "--compound-id"]
    common += ["compound_id", "--building-blocks", "cycle1", "cycle2", "cycle3", "--epochs", "1", "--batch-size", "16"]
    assert main([*common, "--selection-target", "USP7", "--out", str(tmp_path / "one")]) == 0
    predictions = pd.read_csv(tmp_path / "one" / "predictions.csv")
    assert len(predictions) == first.n_compounds
    settings = json.loads((tmp_path / "one" / "settings.json").read_text())
    assert settings["data"]["options"]["selections"] == str((tmp_path / "selections.csv").resolve())
    assert main([*common, "--all-targets", "--out", str(tmp_path / "both")]) == 0
    selectivity = pd.read_csv(tmp_path / "both" / "selectivity.csv")
    assert list(selectivity["target"].unique()) == ["CA2", "USP7"] and len(selectivity) == 2 * first.n_compounds
    assert main(["report", str(tmp_path / "both")]) == 0
    capsys.readouterr()
    assert main([*common, "--out", str(tmp_path / "none")]) == 2  # two targets: which one?
    assert "--selection-target" in capsys.readouterr().err

"""The command line: simulate, summary and the demo, and one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd

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
    assert main(["demo", "--out", str(run), "--n-per-cycle", "6,5,4", "--epochs", "2"]) == 0
    printed = capsys.readouterr().out
    assert "read it back: identical" in printed
    assert "120 compounds" in printed
    assert "epoch 2/2" in printed and "Spearman with the true log target enrichment" in printed
    for name in ("screen.parquet", "checkpoint.pt", "history.csv", "predictions_test.csv"):
        assert (run / name).exists(), name
    assert len(pd.read_csv(run / "history.csv")) == 2
    assert len(pd.read_csv(run / "predictions_test.csv")) == 12  # 10% of 120 held out


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

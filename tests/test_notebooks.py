"""Every walkthrough in notebooks/ runs top to bottom in fast mode (DELPYRO_FAST=1) without an error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, "notebooks/ holds no walkthrough"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_fast_mode(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DELPYRO_FAST", "1")
    monkeypatch.setenv("DELPYRO_FIGURES", str(tmp_path / "figures"))
    monkeypatch.setenv("DELPYRO_RUNS", str(tmp_path / "runs"))
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": path.parent}})
    client.execute()  # raises CellExecutionError, naming the cell, when any cell fails
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert any((tmp_path / "figures").glob(f"{path.stem}_*.png")), "the notebook wrote no figure"


def test_arviz_daily_notice_is_silenced_by_importing_delpyro(tmp_path) -> None:
    """ArviZ warns once a day on import of its coming 1.0 (a FutureWarning about ArviZ); with delpyro
    imported first it does not reach a notebook's output. ArviZ's stamp file is kept in a fresh cache."""
    code = "import warnings; warnings.simplefilter('default'); import delpyro, arviz"
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert "ArviZ is undergoing" not in shown.stderr
    bare = subprocess.run(
        [sys.executable, "-c", "import warnings; warnings.simplefilter('default'); import arviz"],
        capture_output=True,
        text=True,
        env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "other")},
        check=True,
    )
    assert "ArviZ is undergoing" in bare.stderr  # the notice this guards against, as arviz gives it

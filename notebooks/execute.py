"""Run walkthrough notebooks top to bottom (a full run) and save them with their outputs.

    python notebooks/execute.py notebooks/03_docked_poses.ipynb [more.ipynb ...]

Each notebook runs in its own folder (as JupyterLab runs it). Cell execution metadata (timings, ids of
the run) and kernel-specific notebook metadata are stripped, so a re-run changes only the outputs.
Set DELPYRO_FAST=1 for the small fast mode instead of a full run.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

KEEP_CELL_METADATA = ("tags",)
NOTEBOOK_METADATA = {
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}


def execute(path: Path, timeout: int = 3600) -> float:
    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    client = NotebookClient(
        notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
    seconds = time.perf_counter() - start
    notebook.metadata = dict(NOTEBOOK_METADATA)
    for cell in notebook.cells:
        cell.metadata = {k: v for k, v in cell.metadata.items() if k in KEEP_CELL_METADATA}
        if cell.cell_type == "code":
            for output in cell.outputs:
                if "metadata" in output:
                    output.metadata = {k: v for k, v in output.metadata.items() if k != "execution"}
    nbformat.write(notebook, path)
    return seconds


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip())
        return 2
    for name in argv:
        path = Path(name).resolve()
        print(f"{path.name}: running", flush=True)
        print(f"{path.name}: ran in {execute(path):.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

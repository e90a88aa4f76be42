"""Progress of long loops, reported through one place.

``make_progress(mode, ...)`` returns a reporter with ``step(info)``, ``epoch(row)`` and ``close()``:

- ``"text"``: one line per epoch (terminals, CI, logs);
- ``"widget"``: a live ipywidgets progress bar over the epochs, with the latest losses (JupyterLab);
- ``"auto"``: the widget inside a Jupyter kernel when ipywidgets is installed, text elsewhere;
- ``"none"``: nothing.

Reporters only read what the training loop hands them.
"""

from __future__ import annotations

import math
import sys
from typing import Any

__all__ = ["in_jupyter", "make_progress"]


def in_jupyter() -> bool:
    """True inside a Jupyter (IPython kernel) session."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def _format(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


class _Silent:
    def step(self, info: dict[str, Any]) -> None:
        pass

    def epoch(self, row: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


class _Text(_Silent):
    def __init__(self, total_epochs: int, stream: Any = None) -> None:
        self.total_epochs = total_epochs
        self.stream = stream or sys.stdout

    def epoch(self, row: dict[str, Any]) -> None:
        print(
            f"epoch {row['epoch']}/{self.total_epochs}  train_loss {_format(row['train_loss'])}  "
            f"val_loss {_format(row['val_loss'])}  {row['seconds']:.1f} s",
            file=self.stream,
            flush=True,
        )


class _Widget(_Silent):
    def __init__(self, total_epochs: int) -> None:
        import ipywidgets
        from IPython.display import display

        self.bar = ipywidgets.IntProgress(min=0, max=total_epochs, description="epochs")
        self.label = ipywidgets.HTML()
        self.total_epochs = total_epochs
        display(ipywidgets.HBox([self.bar, self.label]))

    def step(self, info: dict[str, Any]) -> None:
        if info["step"] % 20 == 0:
            self.label.value = f"step {info['step']}: loss {_format(info['loss'])}"

    def epoch(self, row: dict[str, Any]) -> None:
        self.bar.value = row["epoch"]
        self.label.value = (
            f"epoch {row['epoch']}/{self.total_epochs}: train {_format(row['train_loss'])}, "
            f"val {_format(row['val_loss'])}"
        )


def make_progress(mode: str, total_epochs: int) -> _Silent:
    """A reporter for ``mode`` in "auto" | "text" | "widget" | "none"."""
    if mode not in ("auto", "text", "widget", "none"):
        raise ValueError(f"progress must be 'auto', 'text', 'widget' or 'none', got {mode!r}")
    if mode == "none":
        return _Silent()
    if mode == "widget" or (mode == "auto" and in_jupyter()):
        try:
            return _Widget(total_epochs)
        except ImportError:
            if mode == "widget":
                raise
    return _Text(total_epochs)

"""Benchmark: a long fit's step time with subnormal floats flushed to zero (delpyro's way) and kept.

    python bench/subnormals.py               # 2,400 steps of 4,096 compounds each way (about 25 minutes)
    python bench/subnormals.py --steps 600   # a shorter run, before the drift sets in
    python bench/subnormals.py --quick       # 1,000 compounds, 20 steps: that it runs

The default model trains on the synthetic screen of 100^3 = 1,000,000 compounds that ``memory.py`` uses
(``_common.synthetic_screen``, made once into ``--dir``; batch 4,096, so 245 steps an epoch). Two fresh
processes train the same fit at the same time, one CPU thread each, so that whatever else the machine does
slows both alike: one as delpyro trains (``train_step`` flushes subnormals to zero), the other with the
flushing turned off. Printed per process: the mean milliseconds a step in each tenth of the run; then the
ratio kept / flushed per tenth. As training goes on, the networks' weights and activations drift towards
zero and into subnormal floats, which a CPU handles up to a hundred times slower than normal ones.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, StopAfter, line, machine_lines, synthetic_screen

TENTHS = 10


def worker(path: Path, steps: int, flush: bool) -> None:
    """Train ``steps`` steps in one thread; print the mean step time of each tenth of them."""
    import torch

    torch.set_num_threads(1)
    import contextlib

    import numpy as np

    import delpyro
    import delpyro.steps

    if not flush:
        delpyro.steps.flushing_subnormals = contextlib.nullcontext
    screen = delpyro.read_counts(path, preset="delpyro")
    stamps: list[float] = []

    class Clock(StopAfter):
        def __call__(self, event: str, info: dict) -> None:
            if event == "step":
                stamps.append(time.perf_counter())
            super().__call__(event, info)

    delpyro.fit(
        screen,
        None,
        epochs=steps,  # ended by the step count
        progress="none",
        callbacks=[Clock(steps)],
        cache_dir=str(path.parent / "fingerprints"),
        seed=0,
    )
    milliseconds = np.diff(stamps) * 1e3
    name = "flushed" if flush else "kept"
    tenths = [float(part.mean()) for part in np.array_split(milliseconds, TENTHS)]
    line(f"{name}_steps", len(stamps))
    line(f"{name}_ms_per_step_by_tenth", " ".join(f"{t:.0f}" for t in tenths))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 compounds and 20 steps")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default 2,400; quick 20)")
    parser.add_argument("--dir", default=str(ROOT / "runs" / "bench"), help="where the screen is kept")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--path", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    steps = args.steps or (20 if args.quick else 2400)
    if args.worker:
        worker(Path(args.path), steps, args.worker == "flushed")
        return 0
    machine_lines("cpu")
    path = synthetic_screen(Path(args.dir), 10 if args.quick else 100)
    command = [sys.executable, str(Path(__file__).resolve()), "--path", str(path), "--steps", str(steps)]
    runs = {
        name: subprocess.Popen([*command, "--worker", name], stdout=subprocess.PIPE, text=True)
        for name in ("flushed", "kept")
    }
    values = {}
    for name, process in runs.items():
        output, _ = process.communicate()
        if process.returncode:
            raise SystemExit(f"the {name} worker ended with exit status {process.returncode}")
        for row in output.splitlines():
            print(row, flush=True)
            if ": " in row:
                key, value = row.split(": ", 1)
                values[key] = value
    flushed = [float(v) for v in values["flushed_ms_per_step_by_tenth"].split()]
    kept = [float(v) for v in values["kept_ms_per_step_by_tenth"].split()]
    line("kept_over_flushed_by_tenth", " ".join(f"{k / f:.2f}" for k, f in zip(kept, flushed, strict=True)))
    line("kept_over_flushed_whole_run", f"{sum(kept) / sum(flushed):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

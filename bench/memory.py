"""Benchmark: peak memory of training, per compound.

    python bench/memory.py                 # 1,000,000 compounds (default model), 100,000 with poses (del-dock)
    python bench/memory.py --quick         # 8,000 and 2,000 compounds, under a minute once prepared
    python bench/memory.py --device cuda   # train on a GPU (host memory is still what is measured)
    python bench/memory.py --models default-10m --steps 20   # 10,077,696 compounds (synthetic)
    python bench/memory.py --models default-1m,default-10m   # an epoch of each: cost per compound, 10^6 and 10^7

Two measurements, each in a fresh Python process that reads a screen from disk and trains on it:

- **default**: the default model (``ModelConfig()``) on a simulated screen of 100 x 100 x 100 = 1,000,000
  compounds: fingerprints packed (256 bytes a compound, from the cache), building blocks, per-compound
  effects with their Adam state and moving average.
- **default-10m**: the default model on a synthetic screen of 216^3 = 10,077,696 compounds
  (``_common.synthetic_screen``: SMILES joined from fragments, block ids, three target and three control
  replicates, no truth columns, as a real screen has none), written to parquet a row group at a time;
  its fingerprints are computed in the measured process, chunk by chunk, into the cache.
- **default-1m**: the same on a synthetic screen of 100^3 = 1,000,000 compounds, to set the 10^7 figures
  beside in one run.
- **del-dock**: the ``del-dock`` preset on 50 x 50 x 40 = 100,000 compounds with 20 docked poses x 224
  features, stored as float16 in ``screen.poses.npy`` and memory-mapped: batches read their rows from the
  file, so the 0.9 GB of poses are never copied into the process.

The screens are simulated once into ``--dir`` (default ``runs/bench``; the 1M screen takes a few minutes
to make and is reused). Printed per model: the process's memory after imports (``baseline_mb``), the peak
resident set (``peak_rss_mb``, the kernel's VmHWM: it counts the pages of memory-mapped files read so
far, which the kernel can drop at will), the peak of anonymous memory (``peak_anon_mb``: what the process
allocated itself), and bytes per compound above the baseline; and, to tell reading from training, the peak
resident set once the screen is read and the anonymous memory after reading and after training; and the
peak of anonymous memory of each stage, in bytes a compound above the baseline: reading
(``stage_read``), ``fit`` until its first step is taken (``stage_first_step``: fingerprints, the arrays
batches are sliced from, the guide's per-compound rows and their optimizer state) and the rest of
training (``stage_training``). Training runs ``--steps`` steps (default: one whole epoch) and its cost is
printed as seconds of the (possibly partial) epoch per compound trained on (``us_per_compound``: the
epoch's time as ``fit`` records it, from its first step to the end of the epoch, so without reading,
fingerprints and assembling the arrays).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    ROOT,
    MemoryWatch,
    StopAfter,
    check_device,
    line,
    machine_lines,
    prepared_screen,
    run_worker,
    synthetic_screen,
)

SIZES = {
    "default": {"full": (100, 100, 100), "quick": (20, 20, 20), "poses": 0},
    "del-dock": {"full": (50, 50, 40), "quick": (20, 10, 10), "poses": 20},
    # a synthetic screen written straight to parquet (_common.synthetic_screen): 216^3 = 10,077,696
    "default-10m": {"full": 216, "quick": 20, "synthetic": True},
    "default-1m": {"full": 100, "quick": 10, "synthetic": True},
}


def worker(model_name: str, path: Path, steps: int | None, device: str) -> None:
    """Read the screen and train, inside a MemoryWatch; print the figures."""
    import torch

    import delpyro  # imported before the baseline is read: imports count in it

    baseline_kb, baseline_anon_kb = MemoryWatch.rss_kb(), MemoryWatch.anon_kb()
    with MemoryWatch(stage="read") as watch:
        started = time.perf_counter()
        screen = delpyro.read_counts(path, preset="delpyro")
        line(f"{model_name}_read_s", time.perf_counter() - started)
        line(f"{model_name}_read_peak_rss_mb", MemoryWatch.peak_rss_kb() / 1024)
        line(f"{model_name}_after_read_anon_mb", MemoryWatch.anon_kb() / 1024)
        watch.stage("first_step")
        config = delpyro.ModelConfig.preset("del-dock") if model_name == "del-dock" else delpyro.ModelConfig()
        stopper = StopAfter(steps, on_first_step=lambda: watch.stage("training"))
        started = time.perf_counter()
        result = delpyro.fit(
            screen,
            None,
            config,
            epochs=1,
            progress="none",
            callbacks=[stopper],
            cache_dir=str(path.parent / "fingerprints"),
            device=device,
        )
        seconds = time.perf_counter() - started
        line(f"{model_name}_after_training_anon_mb", MemoryWatch.anon_kb() / 1024)
    n = screen.n_compounds
    peak_kb, anon_kb = MemoryWatch.peak_rss_kb(), watch.peak_anon_kb
    line(f"{model_name}_compounds", n)
    if screen.poses is not None:
        line(f"{model_name}_poses", f"{screen.n_poses} x {screen.n_pose_features} {screen.poses.dtype}")
        line(f"{model_name}_poses_memory_mapped", type(screen.poses).__name__ == "memmap")
        line(f"{model_name}_poses_file_mb", screen.poses.nbytes / 2**20)
    line(f"{model_name}_steps", result.step)
    line(f"{model_name}_train_s", seconds)
    epoch_s = result.records[-1]["seconds"]
    line(f"{model_name}_epoch_s", epoch_s)
    line(f"{model_name}_compounds_trained", stopper.compounds)
    line(f"{model_name}_us_per_compound", 1e6 * epoch_s / stopper.compounds)
    line(f"{model_name}_baseline_mb", baseline_kb / 1024)
    line(f"{model_name}_baseline_anon_mb", baseline_anon_kb / 1024)
    line(f"{model_name}_peak_rss_mb", peak_kb / 1024)
    line(f"{model_name}_peak_anon_mb", anon_kb / 1024)
    line(f"{model_name}_bytes_per_compound", (peak_kb - baseline_kb) * 1024 / n)
    line(f"{model_name}_anon_bytes_per_compound", (anon_kb - baseline_anon_kb) * 1024 / n)
    for stage in ("read", "first_step", "training"):
        above = (watch.stage_peaks_kb[stage] - baseline_anon_kb) * 1024 / n
        line(f"{model_name}_stage_{stage}_bytes_per_compound", above)
    if torch.cuda.is_available() and device.startswith("cuda"):
        line(f"{model_name}_cuda_peak_mb", torch.cuda.max_memory_allocated() / 2**20)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small screens and 20 steps (under a minute)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, ...")
    parser.add_argument("--dir", default=str(ROOT / "runs" / "bench"), help="where the screens are kept")
    parser.add_argument(
        "--models", default="default,del-dock", help="comma-separated: default, del-dock, default-1m, default-10m"
    )
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: one epoch; quick 20)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--path", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    check_device(args.device)
    steps = args.steps if args.steps is not None else (20 if args.quick else None)
    if args.worker:
        worker(args.worker, Path(args.path), steps, args.device)
        return 0
    machine_lines(args.device)
    targets = {"default": 1.5 * 1024, "del-dock": None, "default-10m": None, "default-1m": None}
    for name in args.models.split(","):
        if name not in SIZES:
            parser.error(f"unknown model {name!r}")
        size = SIZES[name]["quick" if args.quick else "full"]
        if SIZES[name].get("synthetic"):  # its fingerprints are computed, chunk by chunk, in the worker
            path = synthetic_screen(Path(args.dir), size)
        else:
            path = prepared_screen(Path(args.dir), size, n_poses=SIZES[name]["poses"], fingerprints=True)
        values = run_worker(
            __file__,
            ["--worker", name, "--path", str(path), "--device", args.device]
            + (["--steps", str(steps)] if steps is not None else []),
        )
        if targets[name] is not None:
            peak = float(values[f"{name}_peak_rss_mb"])
            line(f"{name}_within_1_5_gb", peak <= targets[name])
    return 0


if __name__ == "__main__":
    sys.exit(main())

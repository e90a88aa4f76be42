"""Benchmark: posterior prediction (200 draws a compound) throughput and peak memory.

    python bench/predict.py                 # 1,000,000 compounds, the default model
    python bench/predict.py --quick         # 8,000 compounds, under a minute
    python bench/predict.py --device cuda   # predict on a GPU

In a fresh process: read the simulated screen (made once into ``--dir``, shared with bench/memory.py),
train the default model for ``--train-steps`` steps (the fit's quality does not change the cost of
prediction), then time ``FitResult.predict(screen, num_samples=200)`` over every compound, inside a
memory watch. ``predict`` makes two passes over the draws when no ``threshold`` is given (the first
finds the median that ``p_enriched`` is measured against), as here. Prints compounds per second, the
peak resident set and the peak of anonymous memory of the whole process (screen, model and
prediction), and whether the peak is under 2 GB.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, MemoryWatch, StopAfter, check_device, line, machine_lines, prepared_screen, run_worker


def worker(path: Path, train_steps: int, num_samples: int, batch_size: int, device: str) -> None:
    import delpyro

    baseline_kb, baseline_anon_kb = MemoryWatch.rss_kb(), MemoryWatch.anon_kb()
    with MemoryWatch() as watch:
        screen = delpyro.read_counts(path, preset="delpyro")
        cache = str(path.parent / "fingerprints")
        result = delpyro.fit(
            screen, None, delpyro.ModelConfig(), epochs=1, progress="none", callbacks=[StopAfter(train_steps)],
            cache_dir=cache, device=device,
        )  # fmt: skip
        before_predict_kb = MemoryWatch.rss_kb()
        started = time.perf_counter()
        prediction = result.predict(screen, num_samples=num_samples, batch_size=batch_size, cache_dir=cache)
        seconds = time.perf_counter() - started
    n = screen.n_compounds
    assert len(prediction) == n and prediction["log_enrichment_mean"].notna().all()
    peak_kb = MemoryWatch.peak_rss_kb()
    line("compounds", n)
    line("num_samples", num_samples)
    line("batch_size", batch_size)
    line("predict_s", seconds)
    line("compounds_per_s", n / seconds)
    line("compound_draws_per_s", n * num_samples / seconds)
    line("baseline_mb", baseline_kb / 1024)
    line("before_predict_mb", before_predict_kb / 1024)
    line("peak_rss_mb", peak_kb / 1024)
    line("peak_anon_mb", watch.peak_anon_kb / 1024)
    line("anon_above_baseline_mb", (watch.peak_anon_kb - baseline_anon_kb) / 1024)
    line("under_2_gb", peak_kb / 1024 <= 2048)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="8,000 compounds (under a minute)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, ...")
    parser.add_argument("--dir", default=str(ROOT / "runs" / "bench"), help="where the screens are kept")
    parser.add_argument("--num-samples", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=4096, help="compounds per prediction batch")
    parser.add_argument("--train-steps", type=int, default=20)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    check_device(args.device)
    if args.worker:
        worker(Path(args.worker), args.train_steps, args.num_samples, args.batch_size, args.device)
        return 0
    machine_lines(args.device)
    size = (20, 20, 20) if args.quick else (100, 100, 100)
    path = prepared_screen(Path(args.dir), size)
    options = {"--device": args.device, "--num-samples": args.num_samples, "--batch-size": args.batch_size}
    options["--train-steps"] = args.train_steps
    run_worker(__file__, ["--worker", str(path), *(str(v) for pair in options.items() for v in pair)])
    return 0


if __name__ == "__main__":
    sys.exit(main())

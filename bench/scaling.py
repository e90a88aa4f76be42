"""Benchmark: how the default model's training cost per compound grows with the library.

    python bench/scaling.py                    # 10^4 to 10^6 compounds, three and two cycles (about 20 min)
    python bench/scaling.py --quick            # 900 to 8,100 compounds, to check that the script runs
    python bench/scaling.py --config bb_pairs=True --config batch_size=256   # any ModelConfig field
    python bench/scaling.py --device cuda

Each screen is simulated once into ``--dir`` (default ``runs/bench``) with its fingerprints cached, then
read and trained in a fresh Python process (so its peak memory is its own): ``delpyro.fit`` for two
epochs; the second is timed (the first builds the guide and encodes the screen). Sizes:

- three cycles: 22 x 22 x 21 (10,164), 47 x 46 x 46 (99,452), 100 x 100 x 100 (1,000,000) compounds;
- two cycles: 100 x 100 (10,000), 316 x 316 (99,856), 488 x 885 (431,880: the simulator's largest
  two-cycle library; the real two-cycle screen this was measured against has 332,959).

Per screen: ``{library}_{n}_epoch_s``, ``..._us_per_compound`` (microseconds of the timed epoch per
compound), ``..._steps``, ``..._peak_rss_mb``; per library, ``ratio_{library}``: the cost per compound at
the largest size over the smallest (the target is at most 1.2: cost linear in the library). ``ratio`` is
the larger of the two.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, MemoryWatch, check_device, config_overrides, line, machine_lines, prepared_screen, run_worker

SIZES = {
    "full": {
        "three_cycle": [(22, 22, 21), (47, 46, 46), (100, 100, 100)],
        "two_cycle": [(100, 100), (316, 316), (488, 885)],
    },
    "quick": {"three_cycle": [(10, 10, 10), (20, 20, 20)], "two_cycle": [(30, 30), (90, 90)]},
}


def worker(path: Path, tag: str, overrides: dict, device: str) -> None:
    """Read the screen, fit two epochs, print the second's time per compound and the peak memory."""
    import delpyro
    from delpyro.config import batch_size_for

    with MemoryWatch():
        screen = delpyro.read_counts(path, preset="delpyro")
        config = delpyro.ModelConfig(**overrides)
        started = time.perf_counter()
        result = delpyro.fit(
            screen, None, config, epochs=2, progress="none", cache_dir=str(path.parent / "fingerprints"), device=device
        )
        total = time.perf_counter() - started
    n = screen.n_compounds
    epoch_s = float(result.history["seconds"].iloc[-1])
    line(f"{tag}_compounds", n)
    line(f"{tag}_batch_size", result.config.batch_size or batch_size_for(n))
    line(f"{tag}_families", ", ".join(name for name, _ in result.model.encoding.families))
    line(f"{tag}_steps", result.step // 2)
    line(f"{tag}_fit_s", total)
    line(f"{tag}_epoch_s", epoch_s)
    line(f"{tag}_us_per_compound", epoch_s / n * 1e6)
    line(f"{tag}_peak_rss_mb", MemoryWatch.peak_rss_kb() / 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small screens, to check that the script runs")
    parser.add_argument("--dir", default=str(ROOT / "runs" / "bench"), help="where screens are made and kept")
    parser.add_argument("--config", action="append", default=[], help="a ModelConfig field, name=value (repeatable)")
    parser.add_argument("--libraries", default="three_cycle,two_cycle", help="which libraries, comma-separated")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--worker", nargs=2, metavar=("PATH", "TAG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    check_device(args.device)
    overrides = config_overrides(args.config)
    if args.worker:
        worker(Path(args.worker[0]), args.worker[1], overrides, args.device)
        return
    machine_lines(args.device)
    line("config", ", ".join(args.config) or "defaults")
    ratios = []
    for library in args.libraries.split(","):
        costs = []
        for n_per_cycle in SIZES["quick" if args.quick else "full"][library]:
            path = prepared_screen(Path(args.dir), n_per_cycle)
            n = 1
            for size in n_per_cycle:
                n *= size
            tag = f"{library}_{n}"
            extra = [f"--config={pair}" for pair in args.config]
            values = run_worker(__file__, ["--worker", str(path), tag, f"--device={args.device}", *extra])
            costs.append(float(values[f"{tag}_us_per_compound"]))
        ratio = costs[-1] / costs[0]
        line(f"ratio_{library}", ratio)
        ratios.append(ratio)
    line("ratio", max(ratios))


if __name__ == "__main__":
    main()

"""Benchmark: the cost of a training step as the screen's per-compound rows grow, the batch held fixed.

    python bench/row_scaling.py            # 27,000, 10^6 and 10^7 rows, batch 4,096 (about 5 minutes)
    python bench/row_scaling.py --quick    # 27,000 and 10^6 rows

A screen's size enters a step through the per-compound effects: their guide parameters have a row per
screened compound, and a step of the default model handles them whole (the scales' constraint, the dense
gradient the plate's index gives back, the row-wise Adam's search for the rows that moved, the finite
check, the moving average). This script measures that alone, on the real step: the default model is
built for a simulated screen of 27,000 compounds, then given ``--rows`` rows of per-compound effects (the
screened plate of a screen that large), and the same batches of 4,096 compounds, whose training positions
are drawn among those rows, are stepped through ``train_step`` and the moving average, as ``fit`` does.
Printed per size: milliseconds a step and the ratio to the smallest size. Everything else a larger screen
costs (reading it, its arrays, the epoch's order) is not in these figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import line, machine_lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="27,000 and 10^6 rows")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per size (after 5 untimed)")
    parser.add_argument("--batch-size", type=int, default=4096)
    args = parser.parse_args(argv)

    import pyro
    import torch

    import delpyro
    from delpyro.batches import Minibatches
    from delpyro.encoding import Encoding
    from delpyro.guides import build_guide
    from delpyro.keys import SCREEN_SIZE, TRAINING_POSITION
    from delpyro.model import DELModel
    from delpyro.results import FitResult
    from delpyro.steps import train_step
    from delpyro.train import MovingAverage

    machine_lines("cpu")
    screen = delpyro.simulate_del(n_per_cycle=(30, 30, 30), seed=0)
    config = delpyro.ModelConfig()
    encoding = Encoding.fit(screen, config)
    arrays = encoding.encode(screen)
    sizes = [screen.n_compounds, 1_000_000] + ([] if args.quick else [10_000_000])
    times = {}
    for rows in sizes:
        pyro.set_rng_seed(0)
        grown = dataclasses.replace(encoding, training_ids=[""] * rows, training_structures=None)
        result = FitResult.build(config, DELModel(config, grown))
        build_guide(result.guide, result.model)
        generator = torch.Generator().manual_seed(1)
        batches = []
        for batch in Minibatches(arrays, args.batch_size, seed=0):
            batch[TRAINING_POSITION] = torch.randperm(rows, generator=generator)[: len(batch[TRAINING_POSITION])]
            batch[SCREEN_SIZE] = rows
            batches.append(batch)

        average = MovingAverage()  # fit's own: the batch's rows named before the step, averaged after it

        def step(batch, result=result, average=average) -> None:
            average.on_batch(result, batch)
            train_step(result.svi, batch, validate=False)
            average.on_step(result, {})

        for batch in batches[:5]:
            step(batch)
        started = time.perf_counter()
        for k in range(args.steps):
            step(batches[k % len(batches)])
        times[rows] = (time.perf_counter() - started) / args.steps * 1e3
        line(f"rows_{rows}_ms_per_step", times[rows])
        averaged = sum(v.shape[0] for k, v in result.ema.shadow.items() if k.endswith(".compound_effect"))
        line(f"rows_{rows}_moving_average_rows", averaged)  # read, the moving average covers every row
        line(f"rows_{rows}_ratio", times[rows] / times[sizes[0]])
        del result, batches
    return 0


if __name__ == "__main__":
    sys.exit(main())

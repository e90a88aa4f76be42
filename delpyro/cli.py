"""The command line: ``python -m delpyro COMMAND`` (also installed as ``delpyro``).

- ``delpyro simulate --out screen.parquet``: simulate a screen with known truth and save it.
- ``delpyro summary SCREEN``: read a saved screen (or any table with ``--preset``) and describe it.
- ``delpyro demo``: the main job on the built-in simulated screen.

A user error (a bad column, bad counts, a missing file) prints one clear line and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from delpyro.data import PRESETS, DELData, DELDataError, read_counts
from delpyro.simulate import simulate_del


def _parse_cycles(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 30,30,30, got {text!r}") from None
    if len(sizes) != 3 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected three positive sizes like 30,30,30, got {text!r}")
    return sizes


def _simulate(args: argparse.Namespace) -> int:
    data = simulate_del(
        seed=args.seed,
        n_per_cycle=args.n_per_cycle,
        n_target_replicates=args.target_replicates,
        n_control_replicates=args.control_replicates,
        with_load=not args.no_load,
        n_poses=args.poses,
    )
    path = data.save(args.out)
    print(f"wrote {path} ({data.n_compounds:,} compounds)")
    return 0


def _read(args: argparse.Namespace) -> DELData:
    return read_counts(args.screen, preset=args.preset)


def _summary(args: argparse.Namespace) -> int:
    print(_read(args).summary())
    return 0


def _demo(args: argparse.Namespace) -> int:
    out = Path(args.out)
    started = time.perf_counter()
    data = simulate_del(seed=args.seed, n_per_cycle=args.n_per_cycle)
    print(f"simulated a screen of {data.n_compounds:,} compounds in {time.perf_counter() - started:.1f} s")
    path = data.save(out / "screen.parquet")
    print(f"saved it to {path}")
    again = read_counts(path, preset="delpyro")
    if not again.equals(data):
        print("error: the screen read back differs from the one saved", file=sys.stderr)
        return 1
    print("read it back: identical\n")
    print(again.summary())
    truth = again.truth
    if truth is not None and "is_binder" in truth:
        print(f"\ntrue binders: {int(truth['is_binder'].sum()):,} of {again.n_compounds:,}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="delpyro", description="Bayesian models of DEL screens.")
    commands = parser.add_subparsers(dest="command", required=True)

    simulate = commands.add_parser("simulate", help="simulate a screen with known truth and save it")
    simulate.add_argument("--out", required=True, help="output table (.csv, .tsv or .parquet)")
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument("--n-per-cycle", type=_parse_cycles, default=(30, 30, 30), help="e.g. 30,30,30")
    simulate.add_argument("--target-replicates", type=int, default=3)
    simulate.add_argument("--control-replicates", type=int, default=2)
    simulate.add_argument("--poses", type=int, default=0, help="docked poses per compound (0: none)")
    simulate.add_argument("--no-load", action="store_true", help="no pre-selection (load) counts")
    simulate.set_defaults(run=_simulate)

    summary = commands.add_parser("summary", help="describe a screen: sizes, depth and zeros per replicate")
    summary.add_argument("screen", help="a table written by delpyro, or any table with --preset")
    summary.add_argument("--preset", default="delpyro", choices=sorted(PRESETS))
    summary.set_defaults(run=_summary)

    demo = commands.add_parser("demo", help="simulate the built-in screen, save, read back and summarize")
    demo.add_argument("--out", default="runs/demo", help="run directory")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--n-per-cycle", type=_parse_cycles, default=(30, 30, 30), help="e.g. 30,30,30")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (DELDataError, FileNotFoundError, ValueError) as err:
        print(f"delpyro {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

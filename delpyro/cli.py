"""The command line: ``python -m delpyro COMMAND`` (also installed as ``delpyro``).

- ``delpyro simulate --out screen.parquet``: simulate a screen with known truth and save it.
- ``delpyro summary SCREEN``: read a saved screen (or any table with ``--preset``) and describe it.
- ``delpyro demo``: the main job: simulate the built-in screen, save and read it back, fit the default
  model, and print held-out metrics (loss, Spearman with the true enrichment, against a naive estimate).

A user error (a bad column, bad counts, a missing file) prints one clear line and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from scipy.stats import spearmanr

from delpyro.data import PRESETS, DELData, DELDataError, read_counts, split
from delpyro.infer import fit
from delpyro.model import ModelConfig
from delpyro.posterior import naive_enrichment
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

    train, val, test = split(again, "random", (0.8, 0.1, 0.1), seed=args.seed)
    config = ModelConfig.preset("default", epochs=args.epochs)
    print(f"\nfitting the default model ({', '.join(f'{k}={getattr(config, k)}' for k in _SHOWN)})")
    print(f"on {train.n_compounds:,} training and {val.n_compounds:,} validation compounds")
    started = time.perf_counter()
    result = fit(
        train,
        val,
        config,
        seed=args.seed,
        progress="text",
        checkpoint_dir=out,
        cache_dir=str(out / "cache"),
        early_stopping_patience=4,
    )
    print(f"fitted in {time.perf_counter() - started:.1f} s; checkpoint {out / 'checkpoint.pt'}")
    result.history.to_csv(out / "history.csv", index=False)
    prediction = result.predict(test, cache_dir=str(out / "cache"))
    prediction.to_csv(out / "predictions_test.csv", index=False)
    true_log_target = test.truth["log_target_enrichment"].to_numpy()
    model_rho = spearmanr(prediction["log_enrichment_mean"], true_log_target).statistic
    naive_rho = spearmanr(naive_enrichment(test), true_log_target).statistic
    print(f"\nheld-out ({test.n_compounds:,} test compounds)")
    print(f"  loss (negative ELBO per compound): {result.evaluate(test, cache_dir=str(out / 'cache')):.4f}")
    print(f"  Spearman with the true log target enrichment: model {model_rho:.3f}, naive {naive_rho:.3f}")
    print(f"wrote {out / 'history.csv'} and {out / 'predictions_test.csv'}")
    return 0


_SHOWN = ("likelihood", "combine", "gates", "hidden_size", "epochs", "batch_size", "lr")


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

    demo = commands.add_parser("demo", help="simulate the built-in screen, fit the default model, report")
    demo.add_argument("--out", default="runs/demo", help="run directory")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--n-per-cycle", type=_parse_cycles, default=(30, 30, 30), help="e.g. 30,30,30")
    demo.add_argument("--epochs", type=int, default=20, help="training epochs of the default model")
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

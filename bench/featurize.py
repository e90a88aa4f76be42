"""Benchmark: Morgan fingerprints per second, cold (serial and in worker processes) and from the cache.

    python bench/featurize.py            # 100,000 DEL-like SMILES
    python bench/featurize.py --quick    # 10,000 SMILES, well under a minute

Prints one ``name: value`` line per measurement; each timing is the fastest of ``--repeat`` runs (3).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import tempfile
import time
from itertools import islice, product
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import rdkit

from delpyro.features import fingerprints
from delpyro.workers import PARALLEL_THRESHOLD

# Three-cycle amide library: acyl group (cycle 1) - amino acid (cycle 2) - amine (cycle 3).
_ACYL_CORES = [
    "c1ccc({})cc1",
    "c1cc({})cnc1",
    "c1cc({})sc1",
    "c1ccc2[nH]c({})cc2c1",
    "c1nc({})ncc1",
    "c1ccc2cc({})ccc2c1",
]
_SUBSTITUENTS = ["F", "Cl", "C", "OC", "C(F)(F)F", "C#N", "N(C)C", "S(C)(=O)=O", "C(N)=O", "[H]"]
_SIDE_CHAINS = [
    "C",
    "CC(C)C",
    "Cc1ccccc1",
    "CO",
    "Cc1c[nH]c2ccccc12",
    "CCSC",
    "CC(=O)O",
    "CCCCN",
    "Cc1ccc(O)cc1",
    "C(C)C",
    "Cc1cnc[nH]1",
    "CCC(N)=O",
    "C1CCCCC1",
    "Cc1ccc(F)cc1",
    "CC#C",
    "Cc1cccs1",
    "CCc1ccccc1",
    "C(C)(C)C",
    "Cc1ccncc1",
    "CC1CC1",
]
_AMINES = [
    "NCc1ccccc1",
    "N1CCOCC1",
    "N1CCN(c2ncccn2)CC1",
    "NC1CC1",
    "N[C@@H](C)c1ccccc1",
    "N[C@H](C)c1ccccc1",
    "Nc1ccc(F)cc1",
    "N1CCC(C(=O)N)CC1",
    "NCCc1ccc(OC)cc1",
    "N(C)Cc1cccnc1",
    "NC1CCOCC1",
    "N1CCC[C@H]1CO",
    "N1CCC[C@@H]1CO",
    "NCc1ccco1",
    "Nc1cccc2ccccc12",
    "NCC(F)(F)F",
    "N1CCc2ccccc2C1",
    "NC(C)(C)C",
    "Nc1nccs1",
    "N1CC(F)(F)C1",
    "NCc1ccc(Cl)cc1Cl",
    "NCCN1CCCC1",
    "Nc1ccc2OCOc2c1",
    "N1CCS(=O)(=O)CC1",
    "NC[C@H]1CCCO1",
    "NC[C@@H]1CCCO1",
    "Nc1cc(C)on1",
    "NCCS(C)(=O)=O",
    "N1CCC(CC1)c1ccccc1",
    "NCc1cn(C)nc1",
    "N1CCN(C(C)=O)CC1",
    "NCc1ccc2[nH]ccc2c1",
    "N[C@H]1CCN(C(=O)OC(C)(C)C)C1",
    "N[C@@H]1CCN(C(=O)OC(C)(C)C)C1",
    "Nc1cnn(C)c1",
    "NCC1(O)CCCC1",
    "N1CCOC[C@H]1C",
    "N1CCOC[C@@H]1C",
    "NCCOc1ccccc1",
    "Nc1ccc(cc1)S(N)(=O)=O",
    "NC1CCN(Cc2ccccc2)CC1",
    "N1CC2(C1)CCOCC2",
    "NCc1nc2ccccc2[nH]1",
    "N[C@@H](CO)c1ccccc1",
    "NCc1ccnc(N)n1",
]


def builtin_del_smiles(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct SMILES of a combinatorial amide library, in a shuffled order."""
    acyls = [core.format(sub).replace("([H])", "") for core in _ACYL_CORES for sub in _SUBSTITUENTS]
    amino_acids = [(side, chirality) for side in _SIDE_CHAINS for chirality in ("@", "@@")]
    size = len(acyls) * len(amino_acids) * len(_AMINES)
    if n > size:
        raise ValueError(f"the built-in library has {size} members; ask for at most that many")
    combos = list(product(range(len(acyls)), range(len(amino_acids)), range(len(_AMINES))))
    order = np.random.default_rng(seed).permutation(len(combos))[:n]
    smiles = []
    for index in order:
        a, b, c = combos[index]
        side, chirality = amino_acids[b]
        smiles.append(f"{acyls[a]}C(=O)N[C{chirality}H]({side})C(=O){_AMINES[c]}")
    return smiles


def del_smiles(n: int) -> tuple[list[str], str]:
    """``n`` DEL-like SMILES: from ``simulate_del`` when it is available, otherwise built here."""
    per_cycle = math.ceil(n ** (1 / 3))
    try:
        from delpyro.simulate import simulate_del

        library = simulate_del(seed=0, n_per_cycle=(per_cycle, per_cycle, per_cycle))
        smiles = list(islice(library.smiles, n))
        if len(smiles) == n:
            return smiles, "simulate_del"
    except Exception as error:  # any failure of the optional source falls back to the built-in one
        print(f"note: simulate_del unavailable ({type(error).__name__}: {error}); using built-in library")
    return builtin_del_smiles(n), "builtin"


def timed(function):
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def main(argv=None) -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--quick", action="store_true", help="10,000 SMILES instead of 100,000")
    parser.add_argument("--n", type=int, default=None, help="number of SMILES (overrides --quick)")
    parser.add_argument("--n-jobs", type=int, default=None, help="worker processes (default: all CPUs)")
    parser.add_argument("--radius", type=int, default=3)
    parser.add_argument("--n-bits", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement; the fastest counts")
    parser.add_argument(
        "--device", default="cpu", help="accepted for a uniform command line: RDKit computes fingerprints on the CPU"
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    n = args.n if args.n is not None else (10_000 if args.quick else 100_000)

    smiles, source = del_smiles(n)
    settings = {"radius": args.radius, "n_bits": args.n_bits, "n_jobs": args.n_jobs}
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"machine: {platform.machine()} {platform.system()}, {os.cpu_count()} cores ({usable} usable)")
    print(f"python: {platform.python_version()}  rdkit: {rdkit.__version__}")
    print(f"smiles_source: {source}")
    print(f"n_smiles: {len(smiles)}")
    print(f"mean_smiles_length: {np.mean([len(s) for s in smiles]):.1f}")
    print(f"radius: {args.radius}  n_bits: {args.n_bits}")

    n_jobs = args.n_jobs if args.n_jobs is not None else usable
    workers = n_jobs if n_jobs > 1 and len(smiles) > PARALLEL_THRESHOLD else 1
    print(f"n_jobs: {n_jobs}")
    print(f"parallel_threshold: {PARALLEL_THRESHOLD}")
    print(f"workers_used: {workers}")
    print(f"repeat: {args.repeat} (the fastest run of each kind is reported)")

    times = {"serial": [], "parallel": [], "write": [], "cached": []}
    for _ in range(args.repeat):
        serial, seconds = timed(lambda: fingerprints(smiles, **{**settings, "n_jobs": 1}))
        times["serial"].append(seconds)
        parallel, seconds = timed(lambda: fingerprints(smiles, **settings))
        times["parallel"].append(seconds)
        with tempfile.TemporaryDirectory() as cache_dir:
            written, seconds = timed(lambda: fingerprints(smiles, cache_dir=cache_dir, **settings))
            times["write"].append(seconds)
            cached, seconds = timed(lambda: fingerprints(smiles, cache_dir=cache_dir, **settings))
            times["cached"].append(seconds)
            cache_bytes = sum(path.stat().st_size for path in Path(cache_dir).iterdir())
    best = {kind: min(seconds) for kind, seconds in times.items()}

    print(f"cold_serial_s: {best['serial']:.2f}")
    print(f"cold_serial_per_s: {len(smiles) / best['serial']:.0f}")
    print(f"cold_parallel_s: {best['parallel']:.2f}")
    print(f"cold_parallel_per_s: {len(smiles) / best['parallel']:.0f}")
    print(f"cold_with_cache_write_s: {best['write']:.2f}")
    print(f"cached_s: {best['cached']:.3f}")
    print(f"cached_per_s: {len(smiles) / best['cached']:.0f}")
    print(f"cache_file_mb: {cache_bytes / 1e6:.1f}")
    print(f"ratio: {best['parallel'] / best['cached']:.0f}")
    same = serial.tobytes() == parallel.tobytes() == written.tobytes() == cached.tobytes()
    print(f"identical: {same}")
    if not same:
        raise SystemExit("serial, parallel and cached fingerprints differ")


if __name__ == "__main__":
    main()

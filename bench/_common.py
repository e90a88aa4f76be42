"""Shared pieces of the benchmarks: output lines, memory measurement, screens prepared on disk."""

from __future__ import annotations

import argparse
import ast
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def line(name: str, value: object) -> None:
    """One ``name: value`` line (floats to 4 significant digits, large ones whole)."""
    if isinstance(value, float):
        value = f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    print(f"{name}: {value}", flush=True)


def machine_lines(device: str) -> None:
    import torch

    line("machine", f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs, torch {torch.__version__}")
    name = device
    if device.startswith("cuda") and torch.cuda.is_available():
        name += f" ({torch.cuda.get_device_name(torch.device(device))})"
    line("device", name)
    line("torch_threads", torch.get_num_threads())


def check_device(device: str) -> None:
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        print(f"{Path(sys.argv[0]).name}: --device {device}, but torch sees no CUDA device", file=sys.stderr)
        raise SystemExit(2)


def _status_kb(field: str) -> int:
    """A field of /proc/self/status in kB (0 where /proc is missing)."""
    try:
        with open("/proc/self/status") as handle:
            for row in handle:
                if row.startswith(field + ":"):
                    return int(row.split()[1])
    except OSError:
        pass
    return 0


class MemoryWatch:
    """Peak memory of this process: the kernel's peak resident set (VmHWM, which counts pages of
    memory-mapped files read so far) and the peak of anonymous memory (RssAnon: what the process itself
    allocated), the latter sampled every ``interval`` seconds in a thread, overall and per stage
    (:meth:`stage` names the stage under way; ``stage_peaks_kb`` holds each finished stage's peak)."""

    def __init__(self, interval: float = 0.05, stage: str = "start") -> None:
        self.interval = interval
        self.peak_anon_kb = _status_kb("RssAnon")
        self.stage_peaks_kb: dict[str, int] = {}
        self._stage, self._stage_peak_kb = stage, self.peak_anon_kb
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        now = _status_kb("RssAnon")
        self.peak_anon_kb = max(self.peak_anon_kb, now)
        self._stage_peak_kb = max(self._stage_peak_kb, now)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def stage(self, name: str) -> None:
        """End the stage under way (its peak goes to ``stage_peaks_kb``) and start ``name``."""
        self._sample()
        self.stage_peaks_kb[self._stage] = self._stage_peak_kb
        self._stage, self._stage_peak_kb = name, _status_kb("RssAnon")

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.stage("end")

    @staticmethod
    def anon_kb() -> int:
        return _status_kb("RssAnon")

    @staticmethod
    def rss_kb() -> int:
        return _status_kb("VmRSS")

    @staticmethod
    def peak_rss_kb() -> int:
        peak = _status_kb("VmHWM")
        return peak or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_worker(script: str, args: list[str]) -> dict[str, str]:
    """Run ``script`` in a fresh Python process (so that its peak memory is its own); echo its
    ``name: value`` lines and return them as a dict."""
    command = [sys.executable, str(Path(script).resolve()), *args]
    completed = subprocess.run(command, capture_output=True, text=True)
    sys.stderr.write(completed.stderr[-4000:] if completed.returncode else "")
    if completed.returncode:
        raise SystemExit(f"{Path(script).name} {' '.join(args)}: exit status {completed.returncode}")
    values = {}
    for row in completed.stdout.splitlines():
        print(row, flush=True)
        if ": " in row:
            name, value = row.split(": ", 1)
            values[name] = value
    return values


def prepared_screen(folder: Path, n_per_cycle: tuple[int, int, int], n_poses: int = 0, fingerprints: bool = True):
    """A simulated screen saved in ``folder`` (``screen.parquet``, with ``screen.poses.npy`` as float16 when
    ``n_poses``), its fingerprints cached in ``folder/fingerprints``; made once and reused. Returns the path."""
    import delpyro
    from delpyro.config import ModelConfig

    tag = "x".join(map(str, n_per_cycle)) + (f"_poses{n_poses}" if n_poses else "")
    path = folder / tag / "screen.parquet"
    if not path.exists():
        started = time.perf_counter()
        screen = delpyro.simulate_del(
            seed=0, n_per_cycle=n_per_cycle, n_poses=n_poses, n_pose_features=224, pose_dtype="float16"
        )
        screen.save(path)
        line(f"prepare_simulate_s_{tag}", time.perf_counter() - started)
        if fingerprints:
            started = time.perf_counter()
            config = ModelConfig()
            delpyro.fingerprints(
                screen.smiles,
                radius=config.fingerprint_radius,
                n_bits=config.fingerprint_bits,
                use_chirality=config.fingerprint_chirality,
                cache_dir=str(path.parent / "fingerprints"),
            )
            line(f"prepare_fingerprints_s_{tag}", time.perf_counter() - started)
    return path


class StopAfter:
    """A fit callback that ends training after ``steps`` steps (None: never); it counts the compounds
    trained on, and calls ``on_first_step`` (when given) after the first step."""

    def __init__(self, steps: int | None, on_first_step: Callable[[], None] | None = None) -> None:
        self.steps = steps
        self.stop_requested = False
        self.taken = 0
        self.compounds = 0
        self.on_first_step = on_first_step

    def __call__(self, event: str, info: dict) -> None:
        if event == "step":
            self.taken += 1
            self.compounds += info["compounds"]
            if self.taken == 1 and self.on_first_step is not None:
                self.on_first_step()
            self.stop_requested = self.steps is not None and self.taken >= self.steps


def fit_bench_parser(doc: str, quick: str) -> argparse.ArgumentParser:
    """The options every benchmark that fits models shares: ``--quick`` (described by ``quick``),
    ``--config name=value`` (repeatable; see :func:`config_overrides`) and ``--cache`` (fingerprints)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--config", action="append", default=[], help="a ModelConfig field, name=value (repeatable)")
    parser.add_argument("--cache", default=str(ROOT / "runs" / "cache"), help="fingerprint cache")
    return parser


def config_overrides(pairs: list[str]) -> dict:
    """``name=value`` pairs (values read as Python literals, else kept as text) as ModelConfig keyword
    arguments."""
    out = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        try:
            out[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[name] = value
    return out


# the parts of a synthetic screen's compounds (:func:`synthetic_screen`): SMILES fragments joined by amide
# bonds, first + "C(=O)N" + second + "C(=O)N" + third; each fragment's ring closures are closed within it,
# so every joined string is a valid SMILES
_RINGS = [
    "c1ccccc1", "c1ccncc1", "c1ccsc1", "c1ccoc1", "C1CCCCC1", "C1CCOCC1",
    "c1cncnc1", "C1CCCC1", "c1ccc2ccccc2c1", "C1CC1", "c1nccnc1", "C1CCNCC1",
]  # fmt: skip
_SUBSTITUENTS = ["", "F", "Cl", "C", "CO", "FC(F)(F)", "N#C", "O", "CN(C)"]  # each bonds by its last atom
_ENDS = ["", "F", "Cl", "C", "OC", "C(F)(F)F", "C#N", "O", "N(C)C"]  # each bonds by its first atom
_SIDES = [
    "C", "CC", "C(C)C", "CC(C)C", "Cc1ccccc1", "CO", "CS", "CCSC", "Cc1ccc(O)cc1",
    "CC(N)=O", "CCC(N)=O", "CC(=O)O", "CCC(=O)O", "CCCCN", "Cc1c[nH]cn1", "C1CC1", "F", "OC",
]  # fmt: skip
_TAILS = ["", "C", "CC", "c1ccc(cc1)", "C1CCC(CC1)", "OCC", "c1cc(cs1)", "CC(C)", "C(C)(C)", "CCOC", "N(C)C", "CCC"]


def synthetic_fragments(n_per_cycle: int) -> list[list[str]]:
    """Three cycles of ``n_per_cycle`` (at most 216) distinct SMILES fragments (see :func:`synthetic_screen`)."""
    first = [s + r + link for r in _RINGS for s in _SUBSTITUENTS for link in ("", "C")]
    second = [f"C({side}){tail}" for side in _SIDES for tail in _TAILS]
    third = [link + r + end for r in _RINGS for end in _ENDS for link in ("", "C")]
    return [first[:n_per_cycle], second[:n_per_cycle], third[:n_per_cycle]]


def synthetic_screen(folder: Path, n_per_cycle: int, seed: int = 0, rows_per_group: int = 1 << 20) -> Path:
    """A screen of ``n_per_cycle``^3 compounds written straight to ``folder/screen.parquet`` a row group at
    a time (never whole in memory; 216 makes 10,077,696): ids, SMILES joined from three cycles of
    fragments (:func:`synthetic_fragments`), block ids, three target and three control replicates.
    Counts are Poisson around an abundance (log-normal, sd 0.7) times, in the target arm, the exponent
    of additive block effects (sd 0.5); about 1 read a compound a replicate. Made once and reused."""
    import numpy as np
    import pyarrow
    import pyarrow.parquet
    from rdkit import Chem

    path = folder / f"synthetic{n_per_cycle}" / "screen.parquet"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    fragments = synthetic_fragments(n_per_cycle)
    for k, cycle in enumerate(fragments):  # each fragment is checked once, with the other cycles' first
        for fragment in cycle:
            joined = "C(=O)N".join(fragment if m == k else other[0] for m, other in enumerate(fragments))
            if Chem.MolFromSmiles(joined) is None:
                raise ValueError(f"synthetic fragment {fragment!r} makes an invalid SMILES {joined!r}")
    rng = np.random.default_rng(seed)
    effects = [rng.normal(0.0, 0.5, n_per_cycle) for _ in range(3)]
    n = n_per_cycle**3
    ids = [[f"{c}{i:03d}" for i in range(n_per_cycle)] for c in "ABC"]
    partial = path.with_suffix(".partial")
    writer = None
    for start in range(0, n, rows_per_group):
        index = np.arange(start, min(start + rows_per_group, n))
        codes = np.stack(np.unravel_index(index, (n_per_cycle,) * 3), axis=1)
        log_target = sum(effects[k][codes[:, k]] for k in range(3))
        abundance = rng.lognormal(0.0, 0.7, len(index))
        columns = {
            "compound_id": [f"S{i:08d}" for i in index.tolist()],
            "smiles": [
                f"{fragments[0][a]}C(=O)N{fragments[1][b]}C(=O)N{fragments[2][c]}" for a, b, c in codes.tolist()
            ],
        }
        for k, cycle in enumerate(("cycle1", "cycle2", "cycle3")):
            columns[f"bb:{cycle}"] = pyarrow.array(np.asarray(ids[k], dtype=object)[codes[:, k]]).dictionary_encode()
        for j in range(3):
            columns[f"target:r{j + 1}"] = rng.poisson(abundance * np.exp(log_target - 1.0))
        for j in range(3):
            columns[f"control:r{j + 1}"] = rng.poisson(abundance)
        table = pyarrow.table(columns)
        if writer is None:
            writer = pyarrow.parquet.ParquetWriter(partial, table.schema)
        writer.write_table(table)
    writer.close()
    partial.rename(path)
    line(f"prepare_synthetic_s_{n_per_cycle}", time.perf_counter() - started)
    return path

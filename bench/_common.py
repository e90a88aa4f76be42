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
    allocated), the latter sampled every ``interval`` seconds in a thread."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak_anon_kb = _status_kb("RssAnon")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_anon_kb = max(self.peak_anon_kb, _status_kb("RssAnon"))

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_anon_kb = max(self.peak_anon_kb, _status_kb("RssAnon"))

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
    """A fit callback that ends training after ``steps`` steps (None: never)."""

    def __init__(self, steps: int | None) -> None:
        self.steps = steps
        self.stop_requested = False
        self.taken = 0

    def __call__(self, event: str, info: dict) -> None:
        if event == "step":
            self.taken += 1
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

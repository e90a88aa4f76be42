"""Torch's CPU threads and subnormal floats: importing delpyro starts the pool flushing them, leaving the
importing thread as it was; a pool started earlier is reported."""

from __future__ import annotations

import subprocess
import sys

import torch

from delpyro import workers

CHECK = """
import torch
{before}
import warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import delpyro
from delpyro import workers
print(workers.flushes_subnormals(), workers.flushes_subnormals(every_thread=True))
with workers.flushing_subnormals():
    print(workers.flushes_subnormals(every_thread=True))
print(workers.flushes_subnormals(), [str(w.message)[:60] for w in caught if w.category is RuntimeWarning])
"""


def _run(before: str) -> list[str]:
    code = CHECK.format(before=before)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    return done.stdout.strip().splitlines()


def test_importing_delpyro_starts_torch_threads_that_flush_and_leaves_the_importing_thread_alone() -> None:
    lines = _run("torch.set_num_threads(2)")
    assert lines[0] == "False False"  # the importing thread keeps subnormals (so one large op has some left)
    assert lines[1] == "True"  # inside the block every thread flushes
    assert lines[2] == "False []"  # restored, and no warning


def test_a_pool_started_before_the_import_is_reported() -> None:
    lines = _run("torch.set_num_threads(2)\ntorch.ones(1 << 21).mul_(2.0)  # starts the pool, flags clear")
    assert lines[1] == "False"  # the pool's threads kept their flags, whatever delpyro sets in this one
    assert "CPU threads were started before delpyro was imported" in lines[2]


def test_the_subnormal_probe_reads_this_threads_flags() -> None:
    assert not workers.flushes_subnormals()
    with workers.flushing_subnormals():
        assert workers.flushes_subnormals()
        assert (workers._subnormals(4) * 1.0).eq(0).all()
    assert not workers.flushes_subnormals()
    assert (workers._subnormals(4) * 1.0).ne(0).all()
    assert torch.finfo(torch.float32).tiny > workers._subnormals(1).item() > 0  # the probe's value is subnormal

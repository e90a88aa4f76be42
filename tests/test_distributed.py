"""Data-parallel training: two processes on gloo against one, checkpoints across process counts, the
sharded batches, and the ways a distributed run is refused or stopped."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pyro
import pytest
import torch
from scipy.stats import spearmanr

import delpyro
from delpyro import ModelConfig
from delpyro.batches import Minibatches, Shard, ShardedMinibatches
from delpyro.distributed import Processes, shard_state
from delpyro.keys import BATCH_TOTAL, INDEX, SCREEN_SIZE, TRAINING_POSITION
from delpyro.model import is_compound_row
from tests.helpers import params_of

#: a model whose fit is deterministic (point estimates, no dropout), so two processes must give the
#: numbers one gives, up to the order of floating-point sums
POINT = ModelConfig(guide="auto_delta", dropout=0.0, hidden_size=16, fingerprint_bits=256)
#: the largest parameter difference allowed between a fit in two processes and one in one process
EXACT = 1e-4


@pytest.fixture(scope="module")
def parts():
    screen = delpyro.simulate_del(n_per_cycle=(10, 10, 8), seed=1)
    return delpyro.split(screen, seed=0)


def largest_difference(a, b) -> float:
    pa, pb = params_of(a), params_of(b)
    assert set(pa) == set(pb)
    return max(float((pa[k] - pb[k]).abs().max()) for k in pa)


def test_shards_cover_the_screen_once() -> None:
    shards = [Shard.of(rank, 3, 10) for rank in range(3)]
    assert [(s.start, s.stop) for s in shards] == [(0, 3), (3, 6), (6, 10)]
    assert sum(s.size for s in shards) == 10
    with pytest.raises(ValueError, match="rank"):
        Shard.of(3, 3, 10)


def test_the_parts_of_each_batch_make_up_the_batch_one_process_takes() -> None:
    n, size = 103, 16
    arrays = {"x": np.arange(n) * 10, TRAINING_POSITION: np.arange(n)}
    whole = Minibatches(arrays, size, seed=5)
    whole.epoch = 2
    shards = [Shard.of(rank, 3, n) for rank in range(3)]
    parts = []
    for shard in shards:
        rows = np.arange(shard.start, shard.stop)
        held = {name: values[rows] for name, values in arrays.items()}
        sharded = ShardedMinibatches(held, rows, n, size, seed=5, position_offset=shard.start)
        sharded.epoch = 2
        parts.append(list(sharded))
    batches = list(whole)
    assert all(len(p) == len(batches) for p in parts)
    for step, batch in enumerate(batches):
        pieces = [p[step] for p in parts]
        union = np.sort(np.concatenate([piece[INDEX].numpy() for piece in pieces]))
        assert np.array_equal(union, np.sort(batch[INDEX].numpy()))
        for shard, piece in zip(shards, pieces, strict=True):
            assert piece[SCREEN_SIZE] == n and piece[BATCH_TOTAL] == len(batch[INDEX])
            assert np.array_equal(piece["x"].numpy(), piece[INDEX].numpy() * 10)  # rows travel with their index
            # training positions become rows of the shard
            assert np.array_equal(piece[TRAINING_POSITION].numpy(), piece[INDEX].numpy() - shard.start)


def test_a_state_cut_into_shards_and_gathered_is_the_whole_state() -> None:
    n = 7
    state = {
        "params": {"AutoNormal.locs.compound_effect": torch.arange(n * 2.0).reshape(n, 2), "net.w": torch.ones(3)},
        "optim_state": {
            "AutoNormal.locs.compound_effect": {
                "state": {
                    0: {"step": torch.arange(n * 1.0), "exp_avg": torch.ones(n, 2), "exp_avg_sq": torch.ones(n, 2)}
                },
                "param_groups": [{"lr": 0.1}],
            },
            "net.w": {"state": {0: {"step": 3, "exp_avg": torch.zeros(3)}}, "param_groups": [{"lr": 0.1}]},
        },
        "ema": {"decay": 0.9, "updates": 2, "shadow": {"AutoNormal.locs.compound_effect": torch.zeros(n, 2) + 5}},
    }
    shard = Shard.of(1, 2, n)
    part = shard_state(state, shard)
    assert part["params"]["AutoNormal.locs.compound_effect"].shape == (4, 2)
    assert torch.equal(part["params"]["AutoNormal.locs.compound_effect"][0], torch.tensor([6.0, 7.0]))
    assert torch.equal(
        part["optim_state"]["AutoNormal.locs.compound_effect"]["state"][0]["step"], torch.arange(3.0, 7.0)
    )
    assert part["params"]["net.w"] is state["params"]["net.w"]  # replicated: shared, not cut
    assert state["params"]["AutoNormal.locs.compound_effect"].shape == (7, 2)  # the whole state is untouched
    assert is_compound_row("AutoGuideList.1.scales.compound_effect")
    assert not is_compound_row("AutoNormal.locs.new_compound_effect_scale")
    assert not is_compound_row("AutoNormal.locs.compound_scale")


def test_two_processes_fit_what_one_fits(parts, tmp_path) -> None:
    """A deterministic model: the fit in two processes (compounds sharded, gradients added over gloo) has
    the parameters of the fit in one, within EXACT, and the same training losses; its checkpoint holds the
    whole screen."""
    train, _, _ = parts
    one = delpyro.fit(train, None, POINT, epochs=3, batch_size=200, progress="none")
    two = delpyro.fit(
        train, None, POINT, epochs=3, batch_size=200, progress="none", distributed=2, checkpoint_dir=tmp_path
    )
    assert largest_difference(one, two) < EXACT
    assert np.allclose(one.history.train_loss, two.history.train_loss, rtol=1e-5)
    assert two.epoch == 3 and two.step == one.step
    saved = delpyro.load(tmp_path / "checkpoint.pt")
    assert largest_difference(saved, two) == 0.0
    with saved.model.param_scope():
        rows = dict(pyro.get_param_store().named_parameters())["AutoDelta.compound_effect"]
    assert rows.shape[0] == train.n_compounds
    # a perturbed reduction would be seen: the control of the tolerance
    wrong = delpyro.fit(train, None, POINT, epochs=3, batch_size=100, progress="none")
    assert largest_difference(one, wrong) > 100 * EXACT


def test_a_checkpoint_goes_from_two_processes_to_one_and_back(parts, tmp_path) -> None:
    """Epoch 1 in two processes, epoch 2 in one from its checkpoint, epoch 3 in two from that one: the
    parameters and the validation losses of the epochs run in one process are those of a run straight
    through in one process."""
    train, val, _ = parts
    straight = delpyro.fit(train, val, POINT, epochs=3, batch_size=200, progress="none")
    delpyro.fit(
        train, val, POINT, epochs=1, batch_size=200, progress="none", distributed=2, checkpoint_dir=tmp_path / "a"
    )
    middle = delpyro.fit(
        train,
        val,
        epochs=2,
        batch_size=200,
        progress="none",
        resume=tmp_path / "a" / "checkpoint.pt",
        checkpoint_dir=tmp_path / "b",
    )
    end = delpyro.fit(
        train, val, epochs=3, batch_size=200, progress="none", resume=tmp_path / "b" / "checkpoint.pt", distributed=2
    )
    assert largest_difference(straight, end) < EXACT
    assert middle.history.val_loss[1] == pytest.approx(straight.history.val_loss[1], rel=1e-5)
    assert list(end.history.epoch) == [1, 2, 3]
    assert np.allclose(end.history.train_loss, straight.history.train_loss, rtol=1e-5)
    # the validation loss in two processes: the same quantity, with other draws of the held-out
    # compounds' effects (Monte Carlo noise of a few percent at epoch 3)
    assert end.history.val_loss[2] == pytest.approx(straight.history.val_loss[2], rel=0.05)


def test_the_default_model_in_two_processes_agrees_with_one_as_two_seeds_do(parts) -> None:
    """The default guide draws its globals in each process: the fit in two processes is another draw of
    the same SVI, so it must agree with one process's fit as closely as that fit with another seed."""
    train, val, test = parts
    config = ModelConfig(hidden_size=32, fingerprint_bits=512)
    one = delpyro.fit(train, val, config, epochs=12, progress="none")
    other_seed = delpyro.fit(train, val, config, epochs=12, progress="none", seed=1)
    two = delpyro.fit(train, val, config, epochs=12, progress="none", distributed=2)
    means = {
        name: r.predict(test).log_enrichment_mean for name, r in (("one", one), ("seed", other_seed), ("two", two))
    }
    between_seeds = spearmanr(means["one"], means["seed"])[0]
    between_counts = spearmanr(means["one"], means["two"])[0]
    assert between_seeds > 0.85
    assert between_counts > between_seeds - 0.05
    assert two.history.val_loss.iloc[-1] == pytest.approx(one.history.val_loss.iloc[-1], rel=0.03)


def test_stop_in_the_starting_process_stops_every_process(parts) -> None:
    train, _, _ = parts

    class StopAfterFirstStep:
        stop_requested = False

        def __call__(self, event, info):
            if event == "step":
                self.stop_requested = True

    events = []
    stopper = StopAfterFirstStep()
    result = delpyro.fit(
        train,
        None,
        POINT,
        epochs=5,
        batch_size=100,
        progress="none",
        distributed=2,
        callbacks=[stopper, lambda event, info: events.append(event)],
    )
    assert result.stopped_by_user and result.epoch == 1
    assert result.step < 2 * len(train) // 100  # stopped within the first epoch, not after five
    assert events[0] == "step" and events[-1] == "end" and "epoch" in events


def test_distributed_runs_are_refused_with_reasons(parts, monkeypatch) -> None:
    train, _, _ = parts
    for variable in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(variable, raising=False)
    with pytest.raises(RuntimeError, match="torchrun"):
        delpyro.fit(train, None, POINT, epochs=1, progress="none", distributed=True)
    with pytest.raises(ValueError, match="at least 2"):
        delpyro.fit(train, None, POINT, epochs=1, progress="none", distributed=1)


def test_a_failing_process_reports_its_error(parts) -> None:
    train, val, _ = parts
    renamed = val.subset(np.arange(len(val)))
    renamed.target_names = [f"other_{name}" for name in val.target_names]
    with pytest.raises(RuntimeError, match=r"process 0:[\s\S]*DELDataError[\s\S]*replicates"):
        delpyro.fit(train, renamed, POINT, epochs=1, progress="none", distributed=2)


def test_torchrun_runs_the_documented_script(parts, tmp_path) -> None:
    """The README's torchrun script: every process calls fit(..., distributed=True); process 0 gets the
    result (and saves it), the others None."""
    train, _, _ = parts
    train.save(tmp_path / "train.parquet")
    script = tmp_path / "train_script.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            import torch.distributed
            import delpyro
            train = delpyro.read_counts({str(tmp_path / "train.parquet")!r}, preset="delpyro")
            config = delpyro.ModelConfig(guide="auto_delta", dropout=0.0, hidden_size=16, fingerprint_bits=256)
            result = delpyro.fit(train, None, config, epochs=2, batch_size=200, progress="text", distributed=True)
            if result is not None:
                result.save({str(tmp_path / "fit.pt")!r})
            sys.stdout.write(f"rank result {{result is not None}}\\n")  # one write: the processes share the pipe
            sys.stdout.flush()
            torch.distributed.barrier()
            delpyro.write_predictions(
                delpyro.load({str(tmp_path / "fit.pt")!r}), train, {str(tmp_path / "predictions")!r},
                num_samples=20, chunk_size=128, distributed=True,
            )
            """
        )
    )
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [str(torchrun), "--standalone", "--nproc-per-node", "2", str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("rank result True") == 1 and done.stdout.count("rank result False") == 1
    assert "epoch 2/2" in done.stdout
    one = delpyro.fit(train, None, POINT, epochs=2, batch_size=200, progress="none")
    assert largest_difference(one, delpyro.load(tmp_path / "fit.pt")) < EXACT
    parts = sorted(p.name for p in (tmp_path / "predictions").iterdir())
    assert parts == ["part-00000.parquet", "part-00001.parquet"]  # 640 compounds: 5 chunks, 2 and 3
    predicted = pd.read_parquet(tmp_path / "predictions")
    assert list(predicted.compound_id) == list(train.compound_id)


def test_predictions_are_written_in_chunks_the_same_by_one_process_or_two(parts, tmp_path) -> None:
    """write_predictions: the whole screen in order, a chunk at a time; the threshold of p_enriched is the
    screen's (median of the means + log 2); two processes write parts whose rows are the one file's."""
    train, val, _ = parts
    result = delpyro.fit(train, val, ModelConfig(hidden_size=16, fingerprint_bits=256), epochs=2, progress="none")
    one = delpyro.write_predictions(result, train, tmp_path / "one.parquet", num_samples=50, chunk_size=100)
    table = pd.read_parquet(one)
    assert list(table.compound_id) == list(train.compound_id)
    threshold = float(pq.read_schema(one).metadata[b"delpyro_threshold"])
    assert threshold == pytest.approx(np.median(table.log_enrichment_mean) + np.log(2.0))
    assert pq.ParquetFile(one).num_row_groups == 7  # 640 compounds, 100 a chunk
    direct = result.predict(train, num_samples=50, threshold=threshold)
    # other draws of the same posterior: the means differ by Monte Carlo noise, sd * sqrt(2 / 50) = 0.2 sd
    noise = np.abs(direct.log_enrichment_mean - table.log_enrichment_mean) / direct.log_enrichment_sd
    assert noise.mean() < 0.25
    assert np.abs(direct.p_enriched - table.p_enriched).mean() < 0.1  # noise: about 0.05 at 50 draws

    folder = delpyro.write_predictions(result, train, tmp_path / "two", num_samples=50, chunk_size=100, distributed=2)
    assert sorted(p.name for p in folder.iterdir()) == ["part-00000.parquet", "part-00001.parquet"]
    together = pd.read_parquet(folder)
    pd.testing.assert_frame_equal(together.reset_index(drop=True), table)
    assert len(pd.read_parquet(folder / "part-00000.parquet")) == 300  # chunks 0-2 of 7


def test_a_panel_on_two_kinds_of_beads_fits_in_two_processes_as_in_one() -> None:
    """Several targets, two bead sets (a matrix arm each, per-compound effects of five arms): the same
    exchange, the same numbers."""
    panel = delpyro.simulate_targets(
        n_per_cycle=(8, 8, 6), seed=0, bead_sets={"CA2": "SA", "USP7": "SA", "PTP1B": "Ni"}
    )
    screen = delpyro.join_targets(panel)
    assert screen.bead_sets == ["SA", "Ni"]
    one = delpyro.fit(screen, None, POINT, epochs=2, batch_size=100, progress="none")
    two = delpyro.fit(screen, None, POINT, epochs=2, batch_size=100, progress="none", distributed=2)
    assert largest_difference(one, two) < EXACT
    assert params_of(two)["AutoDelta.compound_effect"].shape == (screen.n_compounds, 5)


def _one_process_fails(rank, nproc, folder, events, stop) -> None:
    """Process 1 fails at once; process 0 waits for it in a collective, which would never end."""
    if rank == 1:
        raise MemoryError("process 1 ran out of memory")
    torch.distributed.barrier()


def test_when_one_process_fails_the_others_are_stopped_and_the_error_named(tmp_path) -> None:
    processes = Processes(2, _one_process_fails, (), tmp_path)
    assert list(processes.messages()) == []  # returns: process 0 is stopped, not left waiting
    with pytest.raises(RuntimeError, match=r"process 1:[\s\S]*MemoryError: process 1 ran out of memory"):
        processes.join()

"""Checkpoints: a round trip predicts identically, formats 2 and 3 still load (without disynthon families),
other formats are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import params_of

import delpyro
from delpyro import checkpoint, fit, load

DATA = Path(__file__).parent / "data"


def test_checkpoint_round_trip_gives_identical_predictions(pose_fit, pose_parts, tmp_path) -> None:
    _, _, test = pose_parts
    path = pose_fit.save(tmp_path / "fit.pt")
    assert not list(tmp_path.glob("*.tmp"))
    loaded = load(path)
    assert loaded.config == pose_fit.config
    assert loaded.model.encoding == pose_fit.model.encoding
    assert loaded.history.equals(pose_fit.history)
    before, after = pose_fit.predict(test), loaded.predict(test)
    assert before.equals(after)
    a, b = params_of(pose_fit), params_of(loaded)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_other_formats_are_refused_saying_why(pose_fit, tmp_path) -> None:
    state = pose_fit.state()
    for number, message in ((1, "format 1, written before building-block effects became two sample sites"),
                            (7, f"not a delpyro checkpoint of format {checkpoint.FORMAT}")):  # fmt: skip
        state["format"] = number
        torch.save(state, tmp_path / "other.pt")
        with pytest.raises(ValueError, match=message):
            load(tmp_path / "other.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="not a delpyro checkpoint"):
        load(tmp_path / "list.pt")


def test_a_format_3_checkpoint_with_disynthon_families_is_refused_saying_why(tmp_path) -> None:
    screen = delpyro.simulate_del(seed=21, n_per_cycle=(4, 3, 3))
    result = fit(screen, None, delpyro.ModelConfig(bb_pairs=True), epochs=1, progress="none")
    state = result.state()
    state["format"] = 3
    checkpoint.write(state, tmp_path / "pairs.pt")
    with pytest.raises(ValueError, match="disynthon families, written before pair effects became a local site"):
        load(tmp_path / "pairs.pt")
    state["encoding"] = {**state["encoding"], "pair_keys": {}, "pair_counts": None}  # no pair families: loads
    assert checkpoint.read(checkpoint.write(state, tmp_path / "cycles.pt"))["encoding"]["pair_counts"] == {}


def test_a_format_2_checkpoint_loads_and_predicts_what_it_predicted_when_written() -> None:
    """``checkpoint_format2.pt`` is in the layout of format 2 (a ``spec``, networks under ``terms.``,
    ``n_blocks``, ``observation.`` point estimates), of a model without disynthon families (a file written
    with pairs, its pair slots and scales cut out as format 2 held a model with ``bb_pairs=False``), with
    the predictions that the format-3 reader gave for it beside it. Loaded now, it must give the same
    predictions, and go on training."""
    screen = delpyro.simulate_del(seed=21, n_per_cycle=(4, 3, 3))
    loaded = load(DATA / "checkpoint_format2.pt")
    assert loaded.config.n_layers == 1 and loaded.config.gates == "latent"
    assert loaded.model.terms == ("fingerprint", "building_blocks", "compound")
    expected = pd.read_parquet(DATA / "checkpoint_format2_predictions.parquet")
    got = loaded.predict(screen, num_samples=50, seed=3)
    assert list(got.columns) == list(expected.columns)
    assert got["compound_id"].tolist() == expected["compound_id"].tolist()
    numeric = expected.columns.drop("compound_id")
    np.testing.assert_allclose(got[numeric].to_numpy(), expected[numeric].to_numpy(), rtol=1e-5, atol=1e-6)
    more = fit(screen, None, resume=loaded, epochs=3, progress="none")
    assert more.epoch == 3 and np.isfinite(more.history["train_loss"]).all()
    # saved again, it is a checkpoint of the current format
    assert more.state()["format"] == checkpoint.FORMAT

"""Checkpoints: a round trip predicts identically, formats 2 and 3 still load (without disynthon families),
other formats are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyro.distributions
import pytest
import torch
from helpers import params_of
from scipy.stats import spearmanr

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
    # format 5 changed the coordinates of the per-compound guide (with controls), so the 50 draws differ:
    # each compound's log enrichment keeps its distribution, the Monte Carlo summaries agree to their noise
    for column in ("log_enrichment_mean", "log_matrix_mean"):
        assert spearmanr(got[column], expected[column]).statistic > 0.95, column
    np.testing.assert_allclose(got["log_enrichment_mean"], expected["log_enrichment_mean"], atol=0.15)
    ratio = got["log_enrichment_sd"].mean() / expected["log_enrichment_sd"].mean()
    assert 0.9 < ratio < 1.1
    more = fit(screen, None, resume=loaded, epochs=3, progress="none")
    assert more.epoch == 3 and np.isfinite(more.history["train_loss"]).all()
    # saved again, it is a checkpoint of the current format
    assert more.state()["format"] == checkpoint.FORMAT


def test_a_format_4_checkpoint_keeps_each_compounds_target_effect_in_the_new_coordinates() -> None:
    """Format 4 held (w, u_m) per compound; format 5 holds (w, d), d = u_m - kappa w. The conversion keeps
    the means exactly and the target effect's spread, (1 - kappa)^2 s_w^2 + s_d^2 = s_w^2 + s_m^2."""
    positive = torch.distributions.biject_to(pyro.distributions.constraints.softplus_positive)
    loc = torch.tensor([[0.5, 0.2], [-1.0, 0.3], [2.0, -0.4]])
    scale = torch.tensor([[0.4, 0.3], [0.2, 0.25], [0.6, 0.1]])
    sigma_t, sigma_m = 0.6, 0.3
    params = {
        "AutoNormal.locs.compound_effect": loc,
        "AutoNormal.scales.compound_effect": positive.inv(scale),
        "AutoNormal.locs.compound_scale": torch.tensor(np.log(sigma_t)),
        "AutoNormal.locs.compound_matrix_scale": torch.tensor(np.log(sigma_m)),
        "AutoNormal.locs.target_gate": torch.tensor(0.1),
    }
    state = {
        "format": 4,
        "encoding": {"terms": ("building_blocks", "compound"), "control_names": ["c1"]},
        "params": params,
        "optim_state": {"AutoNormal.locs.compound_effect": {"exp_avg": loc}, "AutoNormal.locs.target_gate": {}},
        "ema": {"shadow": dict(params)},
    }
    new = checkpoint._from_format_4(Path("old.pt"), state)
    kappa = sigma_m**2 / (sigma_t**2 + sigma_m**2)
    new_loc = new["params"]["AutoNormal.locs.compound_effect"]
    new_scale = positive(new["params"]["AutoNormal.scales.compound_effect"])
    w, u_m = new_loc[:, 0], new_loc[:, 1] + kappa * new_loc[:, 0]
    np.testing.assert_allclose(w, loc[:, 0], rtol=1e-6)
    np.testing.assert_allclose(u_m, loc[:, 1], rtol=1e-5, atol=1e-6)
    spread = ((1 - kappa) ** 2 * new_scale[:, 0] ** 2 + new_scale[:, 1] ** 2).sqrt()
    np.testing.assert_allclose(spread, (scale**2).sum(1).sqrt(), rtol=1e-5)
    np.testing.assert_allclose(new_scale[:, 0], scale[:, 0], rtol=1e-5)
    assert torch.equal(new["ema"]["shadow"]["AutoNormal.locs.compound_effect"], new_loc)
    assert set(new["optim_state"]) == {"AutoNormal.locs.target_gate"}  # the moved parameters' moments restart
    assert new["format"] == checkpoint.FORMAT and new["params"]["AutoNormal.locs.target_gate"] == 0.1
    # without controls the site is unchanged
    target_only = {**state, "encoding": {"terms": ("compound",), "control_names": []}}
    assert checkpoint._from_format_4(Path("old.pt"), target_only)["params"] is params

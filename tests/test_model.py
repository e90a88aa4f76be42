"""The DEL-Dock machinery: presets, network shapes, fitting, steps, checkpoints, resume, guards, predict."""

from __future__ import annotations

import dataclasses
import math
import tempfile
from pathlib import Path

import numpy as np
import pyro
import pytest
import torch
from scipy.stats import spearmanr

import delpyro
from delpyro import (
    DELModel,
    FitResult,
    Minibatches,
    ModelConfig,
    NonFiniteLossError,
    eval_step,
    fit,
    load,
    make_guide,
    make_optim,
    make_svi,
    split,
    train_step,
)

# the network model of DEL-Dock's shape (point gates, ZIP), small, so that the tests run in seconds
SMALL = {
    "terms": ("fingerprint", "poses"),
    "likelihood": "zip",
    "gates": "learned",
    "hidden_size": 16,
    "n_blocks": 1,
    "fingerprint_bits": 256,
    "epochs": 6,
    "batch_size": 64,
    "lr": 3e-3,
}


def small(**overrides) -> ModelConfig:
    """A tiny network, so that the tests run in seconds."""
    return ModelConfig(**{**SMALL, **overrides})


@pytest.fixture(scope="module")
def screen() -> delpyro.DELData:
    return delpyro.simulate_del(seed=11, n_per_cycle=(10, 8, 6), n_poses=4, n_pose_features=16)


@pytest.fixture(scope="module")
def parts(screen):
    return split(screen, "random", (0.7, 0.15, 0.15), seed=0)


@pytest.fixture(scope="module")
def fitted(parts) -> FitResult:
    train, val, _ = parts
    return fit(train, val, small(epochs=12), seed=1, progress="none")


def params_of(result: FitResult) -> dict[str, torch.Tensor]:
    with result.model.param_scope():
        return {k: v.detach().clone() for k, v in pyro.get_param_store().named_parameters()}


# ---------------------------------------------------------------------------------------------------
# the DEL-Dock preset


def test_del_dock_preset_has_every_listed_setting() -> None:
    config = ModelConfig.preset("del-dock")
    assert config.terms == ("fingerprint", "poses")
    assert (config.fingerprint_bits, config.fingerprint_radius, config.fingerprint_chirality) == (2048, 3, True)
    assert config.pooling == "gated_attention"
    assert (config.likelihood, config.combine, config.gates) == ("zip", "additive", "fixed")
    assert (config.control_gate, config.target_gate) == (0.007528, 0.5488)
    assert (config.guide, config.loss) == ("auto_normal", "trace_elbo")
    assert (config.lr, config.clip_norm, config.betas, config.weight_decay) == (1e-4, 0.1, (0.95, 0.999), 0.0)
    assert (config.lr_decay, config.lr_decay_steps) == (0.1, 1250)
    assert (config.batch_size, config.ema_decay) == (64, 0.999)
    assert not config.normalize_depth and not config.use_load
    optim = make_optim(config.lr, config.clip_norm, config.betas, config.weight_decay, 0.1, 1250)
    arguments = optim.pt_optim_args("fingerprint.encoder.0.weight")
    assert not arguments["rowwise"] and optim.pt_optim_args("AutoNormal.locs.compound_effect")["rowwise"]
    assert arguments["lr"] == 1e-4 and arguments["clip_norm"] == 0.1 and arguments["betas"] == (0.95, 0.999)
    assert math.isclose(arguments["lrd"] ** 1250, 0.1, rel_tol=1e-9)
    assert ModelConfig.preset("del-dock", epochs=3).epochs == 3
    with pytest.raises(ValueError, match="unknown preset"):
        ModelConfig.preset("nope")


def test_del_dock_network_shape_and_parameter_count() -> None:
    data = delpyro.simulate_del(seed=0, n_per_cycle=(3, 3, 2), n_poses=20, n_pose_features=224)
    config = ModelConfig.preset("del-dock")
    model = DELModel(config, data)
    h, a = config.hidden_size, config.hidden_size

    def linear(n_in: int, n_out: int) -> int:
        return n_in * n_out + n_out

    block = linear(2 * h, h) + linear(h, 2 * h)
    fingerprint = linear(2048, 2 * h) + config.n_blocks * block + linear(2 * h, 1)  # matrix head only
    poses = linear(224, 2 * h) + config.n_blocks * block + config.n_post_blocks * block
    poses += 2 * linear(2 * h, a) + linear(a, 1) + linear(2 * h, 1)  # gated attention, target head
    counted = {name: sum(p.numel() for p in term.parameters()) for name, term in model.terms.items()}
    assert counted == {"fingerprint": fingerprint, "poses": poses}
    assert model.terms["fingerprint"].target_head is None  # the target effect comes from the pooled poses

    batch = next(iter(Minibatches(model.arrays(data), batch_size=5, shuffle=False)))
    model.eval()
    log_target, log_matrix, extras = model.enrichments(batch)
    assert log_target.shape == (5,) and log_matrix.shape == (5,)
    assert extras["attention"].shape == (5, 20)
    assert torch.allclose(extras["attention"].sum(-1), torch.ones(5))


def test_terms_are_chosen_from_the_data(screen) -> None:
    no_poses = delpyro.simulate_del(seed=0, n_per_cycle=(3, 3, 2))
    assert DELModel(small(terms=None), no_poses).term_names == ("fingerprint", "building_blocks", "compound")
    every = ("fingerprint", "poses", "building_blocks", "compound")
    assert DELModel(small(terms=None), screen).term_names == every
    no_blocks = dataclasses.replace(no_poses, building_blocks=None)
    assert DELModel(small(terms=None), no_blocks).term_names == ("fingerprint", "compound")
    with pytest.raises(delpyro.DELDataError, match="poses"):
        DELModel(small(terms=("fingerprint", "poses")), no_poses)


# ---------------------------------------------------------------------------------------------------
# fitting


def test_fit_learns_enrichment_and_the_signal_pose(fitted, parts, screen) -> None:
    _, val, test = parts
    history = fitted.history
    assert list(history.columns) == ["epoch", "train_loss", "val_loss", "seconds"]
    assert history["epoch"].tolist() == list(range(1, 13))
    assert history["val_loss"].iloc[-1] < history["val_loss"].iloc[0] - 0.2
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    assert math.isclose(fitted.evaluate(val), history["val_loss"].iloc[-1], rel_tol=1e-5)

    prediction = fitted.predict(test)
    rho = spearmanr(prediction["log_enrichment_mean"], test.truth["log_target_enrichment"]).statistic
    print(f"held-out Spearman with the true log target enrichment: {rho:.3f}")
    assert rho > 0.4
    # attention picks poses, so it is judged on every compound of the screen (less noise than 72)
    everything = fitted.predict(screen)
    attention = everything[[f"attention_pose_{k}" for k in range(4)]].to_numpy()
    hits = (attention.argmax(1) == screen.truth["true_pose"].to_numpy()).mean()
    print(f"attention's largest weight on the signal pose: {hits:.2f} of compounds (chance 0.25)")
    assert hits > 0.35  # chance is 0.25 with a standard error of 0.02 over 480 compounds


def test_del_dock_preset_fits_a_screen_with_poses(parts) -> None:
    train, val, test = parts
    config = ModelConfig.preset("del-dock", hidden_size=32, fingerprint_bits=512, epochs=10)
    result = fit(train, val, config, seed=0, progress="none")
    losses = result.history["val_loss"].to_numpy()
    assert (np.diff(losses) < 0).all()  # the small learning rate descends steadily
    assert losses[-1] < losses[0] - 0.5
    rho = spearmanr(result.predict(test)["log_enrichment_mean"], test.truth["log_target_enrichment"]).statistic
    print(f"del-dock preset, held-out Spearman: {rho:.3f}")
    assert rho > 0.3


def test_predict_columns_and_point_estimate_summaries(fitted, parts) -> None:
    _, _, test = parts
    prediction = fitted.predict(test, batch_size=7)
    assert prediction["compound_id"].tolist() == test.compound_id.tolist()
    mean = prediction["log_enrichment_mean"].to_numpy()
    assert (prediction["log_enrichment_sd"] == 0).all()
    for q in ("q05", "q50", "q95"):
        assert np.array_equal(prediction[f"log_enrichment_{q}"].to_numpy(), mean)
    threshold = np.median(mean) + math.log(2)
    assert prediction.attrs["threshold"] == pytest.approx(threshold)
    assert np.array_equal(prediction["p_enriched"].to_numpy(), (mean > threshold).astype(float))
    assert np.isfinite(prediction["log_matrix_mean"]).all()
    unbatched = fitted.predict(test, batch_size=4096)
    assert np.allclose(unbatched["log_enrichment_mean"], mean, rtol=1e-6, atol=1e-6)
    fixed = fitted.predict(test, threshold=0.0)
    assert np.array_equal(fixed["p_enriched"].to_numpy(), (mean > 0).astype(float))


def test_fit_is_reproducible_from_its_seed(parts) -> None:
    train, val, _ = parts
    first = fit(train, val, small(epochs=2), seed=4, progress="none")
    second = fit(train, val, small(epochs=2), seed=4, progress="none")
    assert first.history["train_loss"].tolist() == second.history["train_loss"].tolist()
    a, b = params_of(first), params_of(second)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "overrides",
    [
        {"likelihood": "poisson"},
        {"likelihood": "nb", "combine": "multiplicative"},
        {"likelihood": "zinb", "gates": "learned", "pooling": "mean"},
    ],
)
def test_other_likelihoods_fit_with_finite_losses(parts, overrides) -> None:
    train, val, _ = parts
    result = fit(train, val, small(**overrides, epochs=2), progress="none")
    assert np.isfinite(result.history[["train_loss", "val_loss"]].to_numpy()).all()


def test_screen_without_control_replicates() -> None:
    data = delpyro.simulate_del(seed=2, n_per_cycle=(5, 4, 4), n_control_replicates=0)
    result = fit(data, None, small(terms=None, epochs=2), progress="none")
    assert result.model.observation.has_control is False
    prediction = result.predict(data)
    assert prediction["log_matrix_mean"].isna().all()
    assert np.isfinite(result.history["train_loss"]).all() and result.history["val_loss"].isna().all()


def test_early_stopping_keeps_the_best_epoch(parts) -> None:
    train, val, _ = parts
    config = small(lr=0.05, epochs=30)
    result = fit(train, val, config, progress="none", early_stopping_patience=2)
    history = result.history
    assert result.stopped_early and len(history) < 30
    best = history["val_loss"].min()
    assert history["val_loss"].iloc[-1] > best  # the last epochs did not improve ...
    assert result.evaluate(val) == pytest.approx(best, rel=1e-5)  # ... and the best parameters were kept


def test_callbacks_and_text_progress(parts, capsys) -> None:
    train, _, _ = parts
    events: list[str] = []
    result = fit(train, None, small(epochs=2), progress="text", callbacks=[lambda e, i: events.append(e)])
    steps = math.ceil(train.n_compounds / SMALL["batch_size"])
    assert events.count("step") == 2 * steps and events.count("epoch") == 2 and events[-1] == "end"
    assert result.step == 2 * steps
    assert "epoch 2/2" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------------
# steps, guides, independence


def test_steps_builders_and_guides(parts) -> None:
    train, _, _ = parts
    model = DELModel(small(), train)
    guide = make_guide(model, "auto_normal")
    svi = make_svi(model, guide, make_optim(lr=1e-2), loss="meanfield")
    batch = next(iter(Minibatches(model.arrays(train), batch_size=50, seed=0)))
    first = train_step(svi, batch)
    assert np.isfinite(first)
    with model.param_scope():
        before = {k: v.detach().clone() for k, v in pyro.get_param_store().named_parameters()}
    loss = eval_step(svi, batch)
    assert loss == eval_step(svi, batch)  # no latent draws, dropout off: deterministic
    with model.param_scope():
        after = dict(pyro.get_param_store().named_parameters())
        assert all(torch.equal(before[k], after[k]) for k in before)  # evaluation changes nothing
        assert all(v.grad is None or not v.grad.any() for v in after.values())
    train_step(svi, batch)
    with model.param_scope():
        changed = dict(pyro.get_param_store().named_parameters())
        assert any(not torch.equal(before[k], changed[k]) for k in before)
    for kind in ("auto_lowrank", "auto_delta"):
        assert make_guide(model, kind) is not None
    with pytest.raises(ValueError, match="guide"):
        make_guide(model, "nope")
    with pytest.raises(ValueError, match="loss"):
        make_svi(model, guide, make_optim(), loss="nope")


def test_two_models_in_one_process_stay_independent(parts) -> None:
    train, _, _ = parts
    first = fit(train, None, small(epochs=1), seed=0, progress="none")
    snapshot = params_of(first)
    second = fit(train, None, small(epochs=2), seed=1, progress="none")
    again = params_of(first)
    assert all(torch.equal(snapshot[k], again[k]) for k in snapshot)
    other = params_of(second)
    assert snapshot.keys() == other.keys()
    assert all(snapshot[k].data_ptr() != other[k].data_ptr() for k in snapshot)
    assert not all(torch.equal(snapshot[k], other[k]) for k in snapshot)
    assert len(pyro.get_param_store()) == 0  # nothing leaks into the global store


def test_non_finite_loss_stops_training_naming_the_step(parts, monkeypatch) -> None:
    train, _, _ = parts
    calls = {"n": 0}
    original = pyro.infer.Trace_ELBO.loss_and_grads

    def poisoned(self, model, guide, *args, **kwargs):
        calls["n"] += 1
        loss = original(self, model, guide, *args, **kwargs)
        return float("nan") if calls["n"] == 5 else loss

    monkeypatch.setattr(pyro.infer.Trace_ELBO, "loss_and_grads", poisoned)
    with pytest.raises(NonFiniteLossError, match="step 5") as caught:
        fit(train, None, small(epochs=3), progress="none")
    result = caught.value.result
    assert caught.value.step == 5 and result.step == 4
    assert all(torch.isfinite(v).all() for v in params_of(result).values())
    assert np.isfinite(result.predict(train)["log_enrichment_mean"]).all()


def test_train_step_refuses_a_nan_batch_and_changes_nothing(parts) -> None:
    train, _, _ = parts
    model = DELModel(small(), train)
    svi = make_svi(model, make_guide(model), make_optim())
    batch = next(iter(Minibatches(model.arrays(train), batch_size=32, seed=0)))
    train_step(svi, batch)
    with model.param_scope():
        before = {k: v.detach().clone() for k, v in pyro.get_param_store().named_parameters()}
    bad = dict(batch)
    bad["log_load"] = batch["log_load"].clone()
    bad["log_load"][3] = float("nan")
    with pytest.raises(NonFiniteLossError):
        train_step(svi, bad)
    with model.param_scope():
        after = dict(pyro.get_param_store().named_parameters())
    assert all(torch.equal(before[k], after[k]) for k in before)


# ---------------------------------------------------------------------------------------------------
# checkpoints


def test_checkpoint_round_trip_gives_identical_predictions(fitted, parts, tmp_path) -> None:
    _, _, test = parts
    path = fitted.save(tmp_path / "fit.pt")
    assert not list(tmp_path.glob("*.tmp"))
    loaded = load(path)
    assert loaded.config == fitted.config
    assert loaded.history.equals(fitted.history)
    before, after = fitted.predict(test), loaded.predict(test)
    assert before.equals(after)
    a, b = params_of(fitted), params_of(loaded)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    # a checkpoint of another format is refused, and one from before the two building-block sites says why
    state = torch.load(path, weights_only=False)
    for number, message in ((1, "format 1, written before building-block effects became two sample sites"),
                            (7, "not a delpyro checkpoint of format 2")):  # fmt: skip
        state["format"] = number
        torch.save(state, tmp_path / "other.pt")
        with pytest.raises(ValueError, match=message):
            load(tmp_path / "other.pt")


def test_resume_equals_training_straight_through(parts, tmp_path) -> None:
    train, val, _ = parts
    config = small(epochs=3, likelihood="zinb")
    straight = fit(train, val, config, seed=3, progress="none")
    fit(train, val, config, seed=3, progress="none", epochs=2, checkpoint_dir=tmp_path)
    resumed = fit(train, val, progress="none", epochs=3, resume=tmp_path / "checkpoint.pt")
    assert resumed.epoch == 3 and resumed.step == straight.step
    assert resumed.history[["train_loss", "val_loss"]].equals(straight.history[["train_loss", "val_loss"]])
    a, b = params_of(straight), params_of(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(straight.ema.shadow[k], resumed.ema.shadow[k]) for k in straight.ema.shadow)


# ---------------------------------------------------------------------------------------------------
# the fused optimizer


def test_fused_optimizer_equals_one_clipped_adam_per_parameter(monkeypatch) -> None:
    """make_optim's fused step gives the same numbers, bit for bit, as Pyro's one optimizer per
    parameter (ClippedAdam, with the rowwise per-compound rows), and their checkpoints are interchangeable."""
    data = delpyro.simulate_del(seed=2, n_per_cycle=(4, 4, 3))
    config = ModelConfig(
        hidden_size=8, fingerprint_bits=128, batch_size=16, epochs=2, lr=3e-3, lr_decay=0.5, lr_decay_steps=4,
        clip_norm=0.05, weight_decay=1e-3,
    )  # fmt: skip
    fused = fit(data, None, config, seed=5, progress="none")
    assert type(fused.svi.optim).__name__ == "FusedClippedAdam"

    from delpyro import infer

    original = infer.make_optim

    def per_parameter(*args, **kwargs):
        return pyro.optim.PyroOptim(infer.RowwiseClippedAdam, original(*args, **kwargs).pt_optim_args)

    monkeypatch.setattr(infer, "make_optim", per_parameter)
    reference = fit(data, None, config, seed=5, progress="none")
    a, b = params_of(fused), params_of(reference)
    assert a.keys() == b.keys() and len(a) > 25
    for name in a:
        assert torch.equal(a[name], b[name]), name
    state_a, state_b = fused.state()["optim_state"], reference.state()["optim_state"]
    assert state_a.keys() == state_b.keys()
    for name in state_a:
        group_a, group_b = state_a[name]["param_groups"][0], state_b[name]["param_groups"][0]
        assert group_a["lr"] == pytest.approx(group_b["lr"], rel=1e-12)
        for key, value in state_b[name]["state"][0].items():
            assert torch.equal(torch.as_tensor(state_a[name]["state"][0][key]), torch.as_tensor(value)), (name, key)
    # a checkpoint of the per-parameter optimizer resumes in the fused one exactly as it would have gone on
    with tempfile.TemporaryDirectory() as folder:
        path = reference.save(Path(folder) / "checkpoint.pt")
        monkeypatch.setattr(infer, "make_optim", original)
        resumed = fit(data, None, resume=path, epochs=3, progress="none")
    monkeypatch.setattr(infer, "make_optim", per_parameter)
    straight = fit(data, None, config, epochs=3, seed=5, progress="none")
    a, b = params_of(resumed), params_of(straight)
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=0, atol=1e-6), name

"""Training: fit learns, is reproducible, stops early keeping the best epoch, calls its callbacks, resumes
exactly, keeps models apart, and stops on a non-finite loss naming the step."""

from __future__ import annotations

import math

import numpy as np
import pyro
import pytest
import torch
from helpers import SMALL, params_of, small
from scipy.stats import spearmanr

import delpyro
from delpyro import ModelConfig, NonFiniteLossError, fit, load


def test_fit_learns_enrichment_and_the_signal_pose(pose_fit, pose_parts, pose_screen) -> None:
    _, val, test = pose_parts
    history = pose_fit.history
    assert list(history.columns) == ["epoch", "train_loss", "val_loss", "seconds"]
    assert history["epoch"].tolist() == list(range(1, 13))
    assert history["val_loss"].iloc[-1] < history["val_loss"].iloc[0] - 0.2
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    assert math.isclose(pose_fit.evaluate(val), history["val_loss"].iloc[-1], rel_tol=1e-5)

    prediction = pose_fit.predict(test)
    rho = spearmanr(prediction["log_enrichment_mean"], test.truth["log_target_enrichment"]).statistic
    print(f"held-out Spearman with the true log target enrichment: {rho:.3f}")
    assert rho > 0.4
    # attention picks poses, so it is judged on every compound of the pose_screen (less noise than 72)
    everything = pose_fit.predict(pose_screen)
    attention = everything[[f"attention_pose_{k}" for k in range(4)]].to_numpy()
    hits = (attention.argmax(1) == pose_screen.truth["true_pose"].to_numpy()).mean()
    print(f"attention's largest weight on the signal pose: {hits:.2f} of compounds (chance 0.25)")
    assert hits > 0.35  # chance is 0.25 with a standard error of 0.02 over 480 compounds


def test_del_dock_preset_fits_a_screen_with_poses(pose_parts) -> None:
    train, val, test = pose_parts
    config = ModelConfig.preset("del-dock", hidden_size=32, fingerprint_bits=512, epochs=10)
    result = fit(train, val, config, seed=0, progress="none")
    losses = result.history["val_loss"].to_numpy()
    assert (np.diff(losses) < 0).all()  # the small learning rate descends steadily
    assert losses[-1] < losses[0] - 0.5
    rho = spearmanr(result.predict(test)["log_enrichment_mean"], test.truth["log_target_enrichment"]).statistic
    print(f"del-dock preset, held-out Spearman: {rho:.3f}")
    assert rho > 0.3


def test_fit_is_reproducible_from_its_seed(pose_parts) -> None:
    train, val, _ = pose_parts
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
def test_other_likelihoods_fit_with_finite_losses(pose_parts, overrides) -> None:
    train, val, _ = pose_parts
    result = fit(train, val, small(**overrides, epochs=2), progress="none")
    assert np.isfinite(result.history[["train_loss", "val_loss"]].to_numpy()).all()


def test_screen_without_control_replicates() -> None:
    data = delpyro.simulate_del(seed=2, n_per_cycle=(5, 4, 4), n_control_replicates=0)
    result = fit(data, None, small(terms=None, epochs=2), progress="none")
    assert result.model.arms == ("target",) and not result.model.encoding.has_control
    prediction = result.predict(data)
    assert prediction["log_matrix_mean"].isna().all()
    assert np.isfinite(result.history["train_loss"]).all() and result.history["val_loss"].isna().all()


def test_early_stopping_keeps_the_best_epoch(pose_parts) -> None:
    train, val, _ = pose_parts
    config = small(lr=0.05, epochs=30)
    result = fit(train, val, config, progress="none", early_stopping_patience=2)
    history = result.history
    assert result.stopped_early and len(history) < 30
    best = history["val_loss"].min()
    assert history["val_loss"].iloc[-1] > best  # the last epochs did not improve ...
    assert result.evaluate(val) == pytest.approx(best, rel=1e-5)  # ... and the best parameters were kept
    assert result.best_epoch == int(history["val_loss"].idxmin()) + 1 and result.best_val_loss == best


def test_the_checkpoint_holds_what_fit_returns_after_early_stopping(pose_parts, tmp_path) -> None:
    """The checkpoint of the last epoch is written after early stopping restored the best epoch: loading
    it predicts exactly what the returned result predicts, and it records the stop."""
    train, val, test = pose_parts
    config = small(lr=0.05, epochs=30)
    result = fit(train, val, config, progress="none", checkpoint_dir=tmp_path, early_stopping_patience=1)
    assert result.stopped_early and result.best_epoch < result.epoch  # the kept epoch is not the last one run
    saved = load(tmp_path / "checkpoint.pt")
    assert saved.stopped_early and saved.best_epoch == result.best_epoch and saved.epoch == result.epoch
    assert saved.predict(test).equals(result.predict(test))
    assert saved.evaluate(val) == pytest.approx(result.best_val_loss, rel=1e-5)


def test_callbacks_and_text_progress(pose_parts, capsys) -> None:
    train, _, _ = pose_parts
    events: list[str] = []
    result = fit(train, None, small(epochs=2), progress="text", callbacks=[lambda e, i: events.append(e)])
    steps = math.ceil(train.n_compounds / SMALL["batch_size"])
    assert events.count("step") == 2 * steps and events.count("epoch") == 2 and events[-1] == "end"
    assert result.step == 2 * steps
    assert "epoch 2/2" in capsys.readouterr().out


def test_two_models_in_one_process_stay_independent(pose_parts) -> None:
    train, _, _ = pose_parts
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


def test_non_finite_loss_stops_training_naming_the_step(pose_parts, monkeypatch) -> None:
    train, _, _ = pose_parts
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


def test_resume_equals_training_straight_through(pose_parts, tmp_path) -> None:
    train, val, _ = pose_parts
    config = small(epochs=3, likelihood="zinb")
    straight = fit(train, val, config, seed=3, progress="none")
    fit(train, val, config, seed=3, progress="none", epochs=2, checkpoint_dir=tmp_path)
    resumed = fit(train, val, progress="none", epochs=3, resume=tmp_path / "checkpoint.pt")
    assert resumed.epoch == 3 and resumed.step == straight.step
    assert resumed.history[["train_loss", "val_loss"]].equals(straight.history[["train_loss", "val_loss"]])
    a, b = params_of(straight), params_of(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(straight.ema.shadow[k], resumed.ema.shadow[k]) for k in straight.ema.shadow)


def test_a_stop_asked_while_an_epoch_closes_ends_training_after_that_epoch(pose_parts) -> None:
    """The display reads a Stop click when it redraws, which can be at an epoch's end: training ends there,
    and the result says a person stopped it."""
    train, _, _ = pose_parts

    class StopAtEpochTwo:
        stop_requested = False

        def __call__(self, event: str, info: dict) -> None:
            if event == "epoch" and info["epoch"] == 2:
                self.stop_requested = True

    result = fit(train, None, small(epochs=5), progress="none", callbacks=[StopAtEpochTwo()])
    assert result.epoch == 2 and result.stopped_by_user and not result.stopped_early
    assert result.step == 2 * math.ceil(train.n_compounds / SMALL["batch_size"])

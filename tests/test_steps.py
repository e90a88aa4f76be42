"""The steps a notebook calls one at a time: the guide, optimizer and SVI builders, train_step, eval_step."""

from __future__ import annotations

import numpy as np
import pyro
import pytest
import torch
from helpers import small

from delpyro import (
    DELModel,
    Encoding,
    Minibatches,
    NonFiniteLossError,
    eval_step,
    make_guide,
    make_optim,
    make_svi,
    train_step,
    workers,
)
from delpyro.keys import LOG_LOAD


def test_steps_builders_and_guides(pose_parts) -> None:
    train, _, _ = pose_parts
    encoding = Encoding.fit(train, small())
    model = DELModel(small(), encoding)
    guide = make_guide(model, "auto_normal")
    svi = make_svi(model, guide, make_optim(lr=1e-2), loss="meanfield")
    batch = next(iter(Minibatches(encoding.encode(train), batch_size=50, seed=0)))
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


def test_train_step_refuses_a_nan_batch_and_changes_nothing(pose_parts) -> None:
    train, _, _ = pose_parts
    encoding = Encoding.fit(train, small())
    model = DELModel(small(), encoding)
    svi = make_svi(model, make_guide(model), make_optim())
    batch = next(iter(Minibatches(encoding.encode(train), batch_size=32, seed=0)))
    train_step(svi, batch)
    with model.param_scope():
        before = {k: v.detach().clone() for k, v in pyro.get_param_store().named_parameters()}
    bad = dict(batch)
    bad[LOG_LOAD] = batch[LOG_LOAD].clone()
    bad[LOG_LOAD][3] = float("nan")
    with pytest.raises(NonFiniteLossError):
        train_step(svi, bad)
    with model.param_scope():
        after = dict(pyro.get_param_store().named_parameters())
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_the_meanfield_loss_takes_a_validation_screen_of_new_compounds() -> None:
    """With per-compound effects a validation batch draws its compounds' effects from the prior (no guide
    site): "meanfield" leaves that masked site out, and its held-out loss estimates the same quantity
    as Trace_ELBO's (the same draws of the globals, averaged)."""
    import delpyro

    screen = delpyro.simulate_del(0, n_per_cycle=(6, 6, 6))
    train, val, _ = delpyro.split(screen, "random", seed=0)
    result = delpyro.fit(train, val, delpyro.ModelConfig(epochs=3, loss="meanfield"), seed=0, progress="none")
    assert np.isfinite(result.history["val_loss"]).all() and len(result.history) == 3
    model = result.model
    batch = next(iter(Minibatches(model.encoding.encode(val), batch_size=val.n_compounds, shuffle=False)))
    losses = {}
    for loss in ("meanfield", "trace_elbo"):
        svi = make_svi(model, result.guide, make_optim(), loss=loss)
        torch.manual_seed(0)
        losses[loss] = np.mean([eval_step(svi, batch) for _ in range(200)])
    assert losses["meanfield"] == pytest.approx(losses["trace_elbo"], rel=0.02)


def test_the_loss_uses_the_same_random_numbers_every_time_and_leaves_the_training_stream() -> None:
    """Validation losses of successive epochs differ by what training changed (common random numbers),
    and evaluating does not move the random stream training draws from."""
    import delpyro

    screen = delpyro.simulate_del(0, n_per_cycle=(6, 6, 6))
    train, val, _ = delpyro.split(screen, "random", seed=0)
    result = delpyro.fit(train, val, delpyro.ModelConfig(epochs=1), seed=0, progress="none")
    batches = Minibatches(result.model.encoding.encode(val), batch_size=64, shuffle=False)
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    first = result.loss(batches)
    assert torch.equal(torch.rand(3), expected)
    assert result.loss(batches) == first
    assert np.isfinite(first)


def test_steps_flush_subnormals_in_every_thread_and_restore_the_callers_flags(pose_parts, monkeypatch) -> None:
    """Inside a training or evaluation step subnormal floats are zero in this thread and in torch's pool
    (a long fit's network drifts into them, which tripled a step's time); the caller's flags come back."""
    train, _, _ = pose_parts
    encoding = Encoding.fit(train, small())
    model = DELModel(small(), encoding)
    svi = make_svi(model, make_guide(model, "auto_normal"), make_optim(lr=1e-2), loss="trace_elbo")
    batch = next(iter(Minibatches(encoding.encode(train), batch_size=50, seed=0)))
    seen = []
    for method in ("loss_and_grads", "evaluate_loss"):
        original = getattr(svi, method)

        def recording(*args, _original=original, **kwargs):
            seen.append(workers.flushes_subnormals(every_thread=True))
            return _original(*args, **kwargs)

        monkeypatch.setattr(svi, method, recording)
    assert not workers.flushes_subnormals()
    train_step(svi, batch)
    eval_step(svi, batch)
    assert seen == [True, True]
    assert not workers.flushes_subnormals()  # the caller's thread as it was
    torch.set_flush_denormal(True)
    try:
        train_step(svi, batch)
        assert workers.flushes_subnormals()  # a caller that flushed still does
    finally:
        torch.set_flush_denormal(False)

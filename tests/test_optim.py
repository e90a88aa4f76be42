"""The fused optimizer: the same numbers, bit for bit, as one ClippedAdam per parameter."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pyro
import pytest
import torch
from helpers import params_of

import delpyro
from delpyro import ModelConfig, fit, optim, results


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

    original = optim.make_optim

    def per_parameter(*args, **kwargs):
        return pyro.optim.PyroOptim(optim.RowwiseClippedAdam, original(*args, **kwargs).pt_optim_args)

    monkeypatch.setattr(results, "make_optim", per_parameter)  # where FitResult builds its optimizer
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
        monkeypatch.setattr(results, "make_optim", original)
        resumed = fit(data, None, resume=path, epochs=3, progress="none")
    monkeypatch.setattr(results, "make_optim", per_parameter)
    straight = fit(data, None, config, epochs=3, seed=5, progress="none")
    a, b = params_of(resumed), params_of(straight)
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=0, atol=1e-6), name


def test_the_lazy_moving_average_of_compound_rows_equals_averaging_every_row() -> None:
    """Rows named before each step are averaged lazily; read at any point, the averages are those of
    averaging every row after every step (the reference: updates with no rows named)."""
    pyro.clear_param_store()
    generator = torch.Generator().manual_seed(0)
    rows_param = pyro.param("AutoNormal.locs.compound_effect", torch.randn(50, 2, generator=generator))
    global_param = pyro.param("AutoNormal.locs.sigma", torch.randn(3, generator=generator))
    lazy, dense = optim.EMA(0.97), optim.EMA(0.97)
    for step in range(1, 61):
        batch = torch.randperm(50, generator=generator)[:7]
        lazy.before_step(batch)
        with torch.no_grad():  # the optimizer moves the batch's rows only, and the globals
            rows_param[batch] += torch.randn(7, 2, generator=generator)
            global_param += 0.1 * torch.randn(3, generator=generator)
        lazy.update()
        dense.update()
        if step == 30:
            untouched = torch.ones(50, dtype=torch.bool)
            untouched[batch] = False
            stale = lazy._shadow["AutoNormal.locs.compound_effect"][untouched]
            assert not torch.allclose(stale, dense._shadow["AutoNormal.locs.compound_effect"][untouched])
            for name, value in dense.shadow.items():  # reading brings every row up to date
                torch.testing.assert_close(lazy.shadow[name], value, rtol=1e-5, atol=1e-5)
    for name, value in dense.shadow.items():
        torch.testing.assert_close(lazy.shadow[name], value, rtol=1e-5, atol=1e-5)
    # saved and loaded mid-run, the lazy average goes on as before
    saved = lazy.state_dict()
    again = optim.EMA(None)
    again.load_state_dict(saved)
    for ema in (lazy, again, dense):
        ema.before_step(torch.tensor([3, 4]))
    with torch.no_grad():
        rows_param[torch.tensor([3, 4])] -= 1.0
    for ema in (lazy, again, dense):
        ema.update()
    for name, value in dense.shadow.items():
        torch.testing.assert_close(again.shadow[name], value, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(lazy.shadow[name], value, rtol=1e-5, atol=1e-5)
    pyro.clear_param_store()

"""Disynthon (pair) effects as a local site: a batch samples, scores and updates only the pairs it holds, each
pair's prior weighted so that an epoch of batches adds up to the model of the whole screen."""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

import delpyro
from delpyro import DELModel, Encoding, FitResult, Minibatches, ModelConfig
from delpyro.guides import build_guide, latent_sites
from delpyro.keys import TRAINING_POSITION
from delpyro.model import BB_PAIR_Z, COMPOUND_EFFECT


@pytest.fixture(scope="module")
def screen() -> delpyro.DELData:
    return delpyro.simulate_del(seed=3, n_per_cycle=(4, 4, 3))


def _model(screen: delpyro.DELData, **overrides) -> DELModel:
    config = ModelConfig(terms=("building_blocks", "compound"), bb_pairs=True, **overrides)
    return DELModel(config, Encoding.fit(screen, config))


def test_an_epoch_of_batches_adds_up_to_the_whole_screens_log_density(screen) -> None:
    """At fixed values of every latent site, the log joint density of a batch (the likelihood scaled by
    N / B, each pair's prior by (N / B) c_j / n_j), times B / N, summed over the batches of an epoch, is
    the log joint of the whole screen, less the prior of the pair slots no training compound holds (which
    no training batch touches): the subsampled ELBO is unbiased, and no pair's prior is lost or counted
    twice."""
    model = _model(screen)
    arrays = model.encoding.encode(screen)
    n = screen.n_compounds
    whole = next(iter(Minibatches(arrays, n, shuffle=False)))
    pyro.set_rng_seed(0)
    with model.param_scope():
        trace = poutine.trace(model).get_trace(whole)
        values = {name: site["value"] for name, site in latent_sites(trace)}
        whole_log_joint = float(trace.log_prob_sum().detach())
        assert values[BB_PAIR_Z].shape == (model.building_blocks.n_pair_slots, 2)
        unseen = model.building_blocks.pair_counts == 0
        assert int(unseen.sum()) == 3  # one unseen slot per pair family
        unseen_prior = float(dist.Normal(0.0, 1.0).log_prob(values[BB_PAIR_Z][unseen]).sum())
        total, touched = 0.0, torch.zeros(model.building_blocks.n_pair_slots, dtype=torch.bool)
        for batch in Minibatches(arrays, 7, shuffle=True, seed=4):
            local = {
                COMPOUND_EFFECT: values[COMPOUND_EFFECT][batch[TRAINING_POSITION]],
                BB_PAIR_Z: model.local_value(BB_PAIR_Z, batch, values[BB_PAIR_Z]),
            }
            assert local[BB_PAIR_Z].shape[0] < model.building_blocks.n_pair_slots  # only the batch's pairs
            touched[model.pair_subsample(batch).slots] = True
            conditioned = poutine.condition(model, data={**values, **local})
            total += len(batch["index"]) / n * float(poutine.trace(conditioned).get_trace(batch).log_prob_sum())
    assert bool(touched.eq(~unseen).all())
    np.testing.assert_allclose(total, whole_log_joint - unseen_prior, rtol=1e-5)


def test_a_batch_weighs_each_pair_by_its_share_of_the_batch(screen) -> None:
    model = _model(screen)
    batch = next(iter(Minibatches(model.encoding.encode(screen), 6, shuffle=True, seed=1)))
    subsample = model.pair_subsample(batch)
    slots_of = model.building_blocks.pair_slots(batch["building_block_codes"])
    assert torch.equal(subsample.slots[subsample.positions], slots_of)
    for slot, weight in zip(subsample.slots.tolist(), subsample.weights.tolist(), strict=True):
        in_batch = int((slots_of == slot).sum())
        in_screen = float(model.building_blocks.pair_counts[slot])
        assert weight == pytest.approx(screen.n_compounds / 6 * in_batch / in_screen)
    with pytest.raises(ValueError, match="pair slots, and this batch takes"):
        model.pair_positions(batch, torch.zeros(model.building_blocks.n_pair_slots, 2))


def test_a_training_step_moves_only_the_pairs_its_batch_holds(screen) -> None:
    config = ModelConfig(terms=("building_blocks", "compound"), bb_pairs=True, ema_decay=None)
    result = FitResult.new(config, Encoding.fit(screen, config))
    build_guide(result.guide, result.model)
    batch = next(iter(Minibatches(result.model.encoding.encode(screen), 9, shuffle=True, seed=2)))
    held = torch.zeros(result.model.building_blocks.n_pair_slots, dtype=torch.bool)
    held[result.model.pair_subsample(batch).slots] = True
    with result.model.param_scope():
        before = result.guide.locs.bb_pair_z.detach().clone(), result.guide.scales.bb_pair_z.detach().clone()
    delpyro.train_step(result.svi, batch)
    with result.model.param_scope():
        after = result.guide.locs.bb_pair_z.detach(), result.guide.scales.bb_pair_z.detach()
    moved = (after[0] != before[0]).any(1) | (after[1] != before[1]).any(1)
    assert 0 < int(held.sum()) < held.numel()
    assert bool(moved[held].all()) and not bool(moved[~held].any())
    # the unseen slots start at the prior, the others at local_init_scale
    unseen = result.model.building_blocks.pair_counts == 0
    assert torch.allclose(before[1][unseen], torch.ones(1))
    assert torch.allclose(before[1][~unseen], torch.tensor(config.local_init_scale))


def test_auto_pairs_leave_out_a_two_cycle_librarys_one_compound_pairs() -> None:
    two = delpyro.simulate_del(seed=0, n_per_cycle=(6, 7))
    three = delpyro.simulate_del(seed=0, n_per_cycle=(4, 3, 2))
    config = ModelConfig(terms=("building_blocks",))
    assert [name for name, _ in Encoding.fit(two, config).families] == ["cycle1", "cycle2"]
    forced = Encoding.fit(two, ModelConfig(terms=("building_blocks",), bb_pairs=True))
    assert [name for name, _ in forced.families][-1] == "cycle1+cycle2"
    assert set(forced.pair_counts["cycle1+cycle2"]) == {1}
    kept = Encoding.fit(three, config)
    assert [name for name, _ in kept.families][3:] == ["cycle1+cycle2", "cycle1+cycle3", "cycle2+cycle3"]
    # each pair of the complete library holds one compound per block of the third cycle
    assert set(kept.pair_counts["cycle1+cycle2"]) == {2} and set(kept.pair_counts["cycle2+cycle3"]) == {4}
    assert Encoding.fit(three, ModelConfig(terms=("building_blocks",), bb_pairs=False)).families == kept.families[:3]

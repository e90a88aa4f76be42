"""The model: its sites, the rates it writes into a Pyro trace against scipy, its networks and terms.

The observation tests run the real :class:`DELModel` with oracle enrichments: a model of intercepts and
per-compound effects whose values are conditioned so that each compound's log target and log matrix
enrichment are known numbers; then every count site's log probability is checked against scipy.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyro
import pytest
import torch
from helpers import small
from scipy import stats

import delpyro
from delpyro import DELModel, Encoding, Minibatches, ModelConfig
from delpyro.keys import CONTROL_COUNTS, INDEX, LOG_LOAD, SCREEN_SIZE, TARGET_COUNTS, TRAINING_POSITION

LOG_TARGET = np.array([-1.0, 0.5, 2.0])
LOG_MATRIX = np.array([0.3, -2.0, 1.0])
LOG_LOAD_OFFSET = np.array([0.0, 0.7, -0.4])
DEPTH_TARGET, DEPTH_CONTROL = [2.0, 0.5], [1.5]
TARGET_COUNTS_ = np.array([[0.0, 3.0], [5.0, 0.0], [40.0, 12.0]])
CONTROL_COUNTS_ = np.array([[2.0], [0.0], [9.0]])
CONTROL_GATE, TARGET_GATE, CONCENTRATION = 0.1, 0.3, 5.0


def oracle_encoding(has_control: bool = True) -> Encoding:
    """Three screened compounds, intercepts and per-compound effects only, given depths."""
    return Encoding(
        terms=("compound",),
        target_names=["r1", "r2"],
        control_names=["r1"] if has_control else [],
        log_depth_target=list(np.log(DEPTH_TARGET)),
        log_depth_control=list(np.log(DEPTH_CONTROL)) if has_control else [],
        load_pseudocount=0.5,
        load_log_mean=0.0,
        training_ids=["a", "b", "c"],
    )


def oracle_trace(model: DELModel, counts: bool = True, log_load=LOG_LOAD_OFFSET) -> pyro.poutine.Trace:
    """A trace of the model on the three compounds with log t = LOG_TARGET and log m = LOG_MATRIX."""
    has_control = "matrix" in model.arms
    batch = {INDEX: torch.arange(3), SCREEN_SIZE: 3, TRAINING_POSITION: torch.arange(3)}
    if log_load is not None:
        batch[LOG_LOAD] = torch.tensor(log_load, dtype=torch.float32)
    if counts:
        batch[TARGET_COUNTS] = torch.tensor(TARGET_COUNTS_, dtype=torch.float32)
        if has_control:
            batch[CONTROL_COUNTS] = torch.tensor(CONTROL_COUNTS_, dtype=torch.float32)
    zero = torch.tensor(0.0)
    if has_control:  # the compound site holds (w, d): w = u_t + u_m, d = u_m - kappa w, kappa = 1/2 at equal scales
        w = LOG_TARGET + LOG_MATRIX
        effect = torch.tensor(np.stack([w, LOG_MATRIX - 0.5 * w], -1), dtype=torch.float32)
        one = torch.tensor(1.0)
        values = {"target_intercept": zero, "matrix_intercept": zero, "compound_effect": effect}
        values |= {"compound_scale": one, "compound_matrix_scale": one}
    else:  # u_t = sigma * z
        effect = torch.tensor(LOG_TARGET[:, None], dtype=torch.float32)
        values = {"target_intercept": zero, "compound_scale": torch.tensor(1.0), "compound_effect": effect}
    with model.param_scope():
        trace = pyro.poutine.trace(pyro.poutine.condition(model, data=values)).get_trace(batch)
    trace.compute_log_prob()
    return trace


def oracle_model(
    likelihood: str, combine: str = "additive", gates: str = "fixed", has_control: bool = True
) -> DELModel:
    config = ModelConfig(
        terms=("compound",),
        likelihood=likelihood,
        combine=combine,
        gates=gates,
        control_gate=CONTROL_GATE,
        target_gate=TARGET_GATE,
        nb_concentration=CONCENTRATION,
        concentration="learned",
        matrix_shift="none",
    )
    return DELModel(config, oracle_encoding(has_control))


def site_reference(likelihood: str, counts: np.ndarray, log_rate: np.ndarray, gate: float) -> np.ndarray:
    """Per-element log pmf from scipy.stats with the rate, gate and concentration as plain numbers."""
    mu = np.exp(log_rate)
    if likelihood in ("poisson", "zip"):
        f = stats.poisson.pmf(counts, mu)
    else:
        f = stats.nbinom.pmf(counts, CONCENTRATION, CONCENTRATION / (CONCENTRATION + mu))
    if likelihood in ("zip", "zinb"):
        return np.where(counts == 0, np.log(gate + (1 - gate) * f), np.log(1 - gate) + np.log(f))
    return np.log(f)


@pytest.mark.parametrize("combine", ["additive", "multiplicative"])
@pytest.mark.parametrize("likelihood", ["zip", "nb", "poisson", "zinb"])
def test_count_sites_match_rates_written_by_hand(likelihood: str, combine: str) -> None:
    trace = oracle_trace(oracle_model(likelihood, combine))
    control_rate = np.empty((3, 1))
    target_rate = np.empty((3, 2))
    for i in range(3):
        m, t, load = np.exp(LOG_MATRIX[i]), np.exp(LOG_TARGET[i]), np.exp(LOG_LOAD_OFFSET[i])
        retained = m + t if combine == "additive" else m * t
        control_rate[i, 0] = DEPTH_CONTROL[0] * load * m
        for s in range(2):
            target_rate[i, s] = DEPTH_TARGET[s] * load * retained
    expected_control = site_reference(likelihood, CONTROL_COUNTS_, np.log(control_rate), CONTROL_GATE)
    expected_target = site_reference(likelihood, TARGET_COUNTS_, np.log(target_rate), TARGET_GATE)

    control, target = trace.nodes["control_counts"], trace.nodes["target_counts"]
    assert control["is_observed"] and target["is_observed"]
    assert control["log_prob"].shape == (3, 1) and target["log_prob"].shape == (3, 2)
    np.testing.assert_allclose(control["log_prob"].detach().numpy(), expected_control, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(target["log_prob"].detach().numpy(), expected_target, rtol=1e-5, atol=1e-5)
    # the distribution's mean before zero inflation is the rate itself
    base = target["fn"].base_dist if likelihood in ("zip", "zinb") else target["fn"]
    np.testing.assert_allclose(base.mean.detach().numpy(), target_rate, rtol=1e-5)


@pytest.mark.parametrize("likelihood", ["zip", "nb"])
def test_a_screen_without_controls_uses_the_target_alone(likelihood: str) -> None:
    model = oracle_model(likelihood, has_control=False)
    assert model.arms == ("target",) and model.count_arms == ("target",)
    trace = oracle_trace(model)
    assert "control_counts" not in trace.nodes and "matrix_intercept" not in trace.nodes
    target_rate = np.array(DEPTH_TARGET)[None, :] * np.exp(LOG_LOAD_OFFSET + LOG_TARGET)[:, None]
    expected = site_reference(likelihood, TARGET_COUNTS_, np.log(target_rate), TARGET_GATE)
    np.testing.assert_allclose(trace.nodes["target_counts"]["log_prob"].detach().numpy(), expected, rtol=1e-5)


def test_without_load_the_offset_is_dropped() -> None:
    trace = oracle_trace(oracle_model("poisson", "multiplicative"), log_load=None)
    target_rate = np.array(DEPTH_TARGET)[None, :] * np.exp(LOG_MATRIX + LOG_TARGET)[:, None]
    expected = stats.poisson.logpmf(TARGET_COUNTS_, target_rate)
    np.testing.assert_allclose(trace.nodes["target_counts"]["log_prob"].detach().numpy(), expected, rtol=1e-5)


def test_without_counts_the_model_draws_both_arms() -> None:
    torch.manual_seed(0)
    trace = oracle_trace(oracle_model("zinb"), counts=False)
    assert not trace.nodes["target_counts"]["is_observed"]
    assert trace.nodes["target_counts"]["value"].shape == (3, 2)
    assert trace.nodes["control_counts"]["value"].shape == (3, 1)


def test_fixed_gates_are_not_params_and_learned_gates_are() -> None:
    model = oracle_model("zinb", gates="fixed")
    oracle_trace(model)
    with model.param_scope():
        store = dict(pyro.get_param_store().named_parameters())
    assert "target_gate_logits" not in store and "control_gate_logits" not in store
    assert store["target_log_concentration"].item() == pytest.approx(np.log(CONCENTRATION), rel=1e-6)
    assert store["control_log_concentration"].item() == pytest.approx(np.log(CONCENTRATION), rel=1e-6)

    learned = oracle_model("zip", gates="learned")
    trace = oracle_trace(learned)
    with learned.param_scope():
        store = dict(pyro.get_param_store().named_parameters())
    assert store["target_gate_logits"].item() == pytest.approx(np.log(0.3 / 0.7), rel=1e-6)
    assert store["control_gate_logits"].item() == pytest.approx(np.log(0.1 / 0.9), rel=1e-6)
    assert not any("concentration" in name for name in store)
    # started at the fixed values, so the log prob is the same as with fixed gates
    fixed = oracle_trace(oracle_model("zip", gates="fixed")).nodes["target_counts"]["log_prob_sum"]
    assert trace.nodes["target_counts"]["log_prob_sum"].item() == pytest.approx(fixed.item(), rel=1e-6)
    assert len(pyro.get_param_store()) == 0  # each model keeps its own store


def test_every_site_of_the_default_model_is_in_one_trace() -> None:
    """The default model on a screen with controls, load and building blocks: the sites its docstring
    lists, with their shapes; the per-compound effects and the pairs' normals are the local sites, the
    pairs in the batch's slots only."""
    screen = delpyro.simulate_del(seed=3, n_per_cycle=(4, 3, 3))
    config = ModelConfig(hidden_size=8, n_layers=1, fingerprint_bits=64, depth_deviation=0.1, matrix_shift="latent")
    encoding = Encoding.fit(screen, config)
    model = DELModel(config, encoding)
    batch = next(iter(Minibatches(encoding.encode(screen), 7, shuffle=False)))
    with model.param_scope(), torch.no_grad(), model.evaluating():
        trace = pyro.poutine.trace(model).get_trace(batch)
        network = model.network_enrichments(batch)  # dropout off, as in the trace
    sample = {name: tuple(s["value"].shape) for name, s in trace.nodes.items() if s["type"] == "sample"}
    n_families, n_slots = len(encoding.families), sum(size for _, size in encoding.families[:3])
    n_pairs = len(model.pair_subsample(batch).slots)  # the 7 compounds' pairs: 3 families, shared pairs once
    assert 7 < n_pairs <= 21
    expected = {
        "control_gate": (),
        "control_concentration": (),
        "control_depth_deviation": (2,),
        "target_gate": (),
        "target_concentration": (),
        "target_depth_deviation": (3,),
        "bb_scale": (2, n_families),
        "bb_z": (2, n_slots),
        "bb_pair_z": (n_pairs, 2),
        "compound_scale": (),
        "compound_matrix_scale": (),
        "compound_effect": (7, 2),
        "log_target_enrichment": (7, 1),
        "log_matrix_enrichment": (7, 1),
        "compound_target_effect": (7, 1),
        "compound_matrix_effect": (7, 1),
        "control_counts": (7, 2),
        "target_counts": (7, 3),
    }
    plates = {name for name, s in trace.nodes.items() if s["type"] == "sample" and name not in expected}
    assert plates == {"control_replicates", "target_replicates", "bb_arms", "bb_families", "bb_slots", "pair_slots",
                      "screened", "compounds"}  # fmt: skip
    assert {name: sample[name] for name in expected} == expected
    locals_ = {name for name, s in trace.nodes.items() if s["type"] == "sample" and not s["is_observed"]
               and any(f.name in ("screened", "pair_slots") for f in s["cond_indep_stack"])}  # fmt: skip
    assert locals_ == set(delpyro.model.LOCAL_SITES) == {"compound_effect", "bb_pair_z"}
    # the recorded parts add up: log t = network + blocks + pairs + compound effect
    scale = trace.nodes["bb_scale"]["value"]
    effects = model.building_blocks.effects(scale, trace.nodes["bb_z"]["value"])
    pair_z = trace.nodes["bb_pair_z"]["value"]
    codes = batch["building_block_codes"]
    blocks = model.building_blocks(scale, effects, codes, pair_z, model.pair_positions(batch, pair_z))
    for arm in ("target", "matrix"):
        total = getattr(network, arm) + blocks[arm] + trace.nodes[f"compound_{arm}_effect"]["value"][:, 0]
        torch.testing.assert_close(trace.nodes[f"log_{arm}_enrichment"]["value"][:, 0], total)
    # the table a user reads lists the same sites, with their roles
    table = model.site_table().set_index("site")
    assert set(table.index) == set(expected) | {"new_compound_effect"}
    assert table.loc["compound_effect", "role"] == "local" and table.loc["new_compound_effect", "role"] == "prior draw"
    assert table.loc["bb_pair_z", "role"] == "local"
    assert table.loc["bb_pair_z", "shape"] == (model.building_blocks.n_pair_slots, 2)
    assert table.loc["target_counts", "distribution"] == "ZINB" and table.loc["bb_z", "shape"] == (2, n_slots)
    assert set(table["role"]) == {"global", "local", "prior draw", "recorded", "observed"}


def test_del_dock_network_shape_and_parameter_count() -> None:
    data = delpyro.simulate_del(seed=0, n_per_cycle=(3, 3, 2), n_poses=20, n_pose_features=224)
    config = ModelConfig.preset("del-dock")
    encoding = Encoding.fit(data, config)
    model = DELModel(config, encoding)
    h, a = config.hidden_size, config.hidden_size

    def linear(n_in: int, n_out: int) -> int:
        return n_in * n_out + n_out

    layer = linear(2 * h, h) + linear(h, 2 * h)
    fingerprint = linear(2048, 2 * h) + config.n_layers * layer + linear(2 * h, 1)  # matrix head only
    poses = linear(224, 2 * h) + config.n_layers * layer + config.n_post_layers * layer
    poses += 2 * linear(2 * h, a) + linear(a, 1) + linear(2 * h, 1)  # gated attention, target head
    counted = {name: sum(p.numel() for p in net.parameters()) for name, net in model.networks.items()}
    assert counted == {"fingerprint": fingerprint, "poses": poses}
    assert model.networks["fingerprint"].target_head is None  # the target effect comes from the pooled poses
    assert model.latent_terms == ()

    batch = next(iter(Minibatches(encoding.encode(data), batch_size=5, shuffle=False)))
    with model.evaluating():
        network = model.network_enrichments(batch)
    assert model.training  # evaluating() restores the mode
    assert network.target.shape == (5,) and network.matrix.shape == (5,)
    assert network.attention.shape == (5, 20)
    assert torch.allclose(network.attention.sum(-1), torch.ones(5))


def test_terms_are_chosen_from_the_data(pose_screen) -> None:
    no_poses = delpyro.simulate_del(seed=0, n_per_cycle=(3, 3, 2))
    assert Encoding.fit(no_poses, small(terms=None)).terms == ("fingerprint", "building_blocks", "compound")
    every = ("fingerprint", "poses", "building_blocks", "compound")
    model = DELModel(small(terms=None), Encoding.fit(pose_screen, small(terms=None)))
    assert model.terms == every and model.latent_terms == ("building_blocks", "compound")
    no_blocks = dataclasses.replace(no_poses, building_blocks=None, building_block_smiles=None)
    assert Encoding.fit(no_blocks, small(terms=None)).terms == ("fingerprint", "compound")
    with pytest.raises(delpyro.DELDataError, match="poses"):
        Encoding.fit(no_poses, small(terms=("fingerprint", "poses")))
    with pytest.raises(TypeError, match=r"DELModel\(config, Encoding.fit\(train, config\)\)"):
        DELModel(small(), no_poses)  # the model never reads a screen itself
    encoding = Encoding.fit(no_poses, small(terms=None))
    with pytest.raises(ValueError, match=r"other settings \(fingerprint_bits, terms\)"):
        DELModel(small(terms=("fingerprint",), fingerprint_bits=512), encoding)


def test_per_compound_gates_come_from_the_network() -> None:
    data = delpyro.simulate_del(seed=2, n_per_cycle=(6, 5, 5))
    config = ModelConfig(
        hidden_size=16, n_layers=1, fingerprint_bits=256, epochs=3, likelihood="zip", gates="per_compound"
    )
    result = delpyro.fit(data, None, config, progress="none")
    assert np.isfinite(result.history["train_loss"]).all()
    model = result.model
    batch = next(iter(Minibatches(model.encoding.encode(data), 40, shuffle=False)))
    with model.param_scope(), torch.no_grad():
        trace = pyro.poutine.trace(model).get_trace(batch)
    for arm in ("control", "target"):
        logits = trace.nodes[f"{arm}_counts"]["fn"].gate_logits
        assert logits.shape == (40, data.n_target_replicates if arm == "target" else data.n_control_replicates)
        assert logits[:, 0].std() > 0  # each compound has its own gate


def test_the_network_prior_is_a_map_penalty_on_the_weights() -> None:
    """network_prior_scale=s adds log Normal(0, s^2) of every network weight (not the biases), up to a
    constant, as one factor in training; evaluation and the default without it have no such site."""
    screen = delpyro.simulate_del(seed=3, n_per_cycle=(4, 3, 3))
    config = ModelConfig(hidden_size=8, n_layers=1, fingerprint_bits=64, network_prior_scale=0.05)
    encoding = Encoding.fit(screen, config)
    model = DELModel(config, encoding)
    batch = next(iter(Minibatches(encoding.encode(screen), 7, shuffle=False)))
    with model.param_scope(), torch.no_grad():
        trace = pyro.poutine.trace(model).get_trace(batch)
        with model.evaluating():
            evaluation = pyro.poutine.trace(model).get_trace(batch)
    weights = [p for p in model.networks.parameters() if p.dim() > 1]
    biases = [p for p in model.networks.parameters() if p.dim() == 1]
    assert len(weights) >= 3 and biases
    prior = stats.norm(0, 0.05)
    by_hand = sum(prior.logpdf(w.detach().numpy()).sum() - w.numel() * prior.logpdf(0) for w in weights)
    site = trace.nodes["network_prior"]
    assert float(site["fn"].log_prob(site["value"]).sum()) == pytest.approx(by_hand, rel=1e-5)
    assert "network_prior" not in evaluation.nodes
    plain = DELModel(dataclasses.replace(config, network_prior_scale=None), encoding)
    with plain.param_scope(), torch.no_grad():
        assert "network_prior" not in pyro.poutine.trace(plain).get_trace(batch).nodes


def test_a_tight_network_prior_shrinks_the_fitted_weights() -> None:
    screen = delpyro.simulate_del(seed=3, n_per_cycle=(6, 6, 6))
    norms = {}
    for scale in (None, 0.005):
        config = ModelConfig(hidden_size=16, n_layers=1, fingerprint_bits=128, lr=1e-2, network_prior_scale=scale)
        result = delpyro.fit(screen, None, config, epochs=5, seed=0, progress="none")
        norms[scale] = sum(float(p.detach().square().sum()) for p in result.model.networks.parameters() if p.dim() > 1)
    assert norms[0.005] < 0.5 * norms[None]
    with pytest.raises(ValueError, match="network_prior_scale"):
        ModelConfig(network_prior_scale=0.0)

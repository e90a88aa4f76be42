"""Configurations: the DEL-Dock preset's settings, and every option checked when a configuration is made."""

from __future__ import annotations

import math
import warnings

import pytest

from delpyro import ModelConfig, make_optim


def test_del_dock_preset_has_every_listed_setting() -> None:
    config = ModelConfig.preset("del-dock")
    assert config.terms == ("fingerprint", "poses")
    assert (config.fingerprint_bits, config.fingerprint_radius, config.fingerprint_chirality) == (2048, 3, True)
    assert (config.hidden_size, config.n_layers, config.n_post_layers, config.dropout) == (256, 2, 1, 0.1)
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


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("terms", ("fingerprint", "docking"), "unknown terms"),
        ("terms", (), "at least one term"),
        ("likelihood", "gaussian", "likelihood must be one of"),
        ("combine", "max", "combine must be one of"),
        ("gates", "free", "gates must be one of"),
        ("concentration", "fixed", "concentration must be one of"),
        ("matrix_shift", "both", "matrix_shift must be one of"),
        ("activation", "swish", "activation must be one of"),
        ("pooling", "max", "pooling must be one of"),
        ("guide", "auto_flow", "guide must be one of"),
        ("loss", "renyi", "loss must be one of"),
        ("control_gate", 0.0, "control_gate must lie strictly between 0 and 1"),
        ("target_gate", 1.0, "target_gate must lie strictly between 0 and 1"),
        ("gate_prior", (1.0, 0.0), "gate_prior must be two positive numbers"),
        ("betas", (0.9, 1.0), "betas must be two numbers in"),
        ("lr", -1e-3, "lr must be positive"),
        ("lr", float("nan"), "lr must be positive"),
        ("clip_norm", 0.0, "clip_norm must be positive"),
        ("local_lr", 0.0, "local_lr must be positive or None"),
        ("guide_lr", -1.0, "guide_lr must be positive or None"),
        ("nb_concentration", 0.0, "nb_concentration must be positive"),
        ("bb_prior_scale", -1.0, "bb_prior_scale must be positive"),
        ("depth_deviation", -0.1, "depth_deviation must be non-negative"),
        ("weight_decay", -1.0, "weight_decay must be non-negative"),
        ("dropout", 1.0, r"dropout must be in \[0, 1\)"),
        ("ema_decay", 1.0, r"ema_decay must be in \(0, 1\) or None"),
        ("batch_size", 0, "batch_size must be an integer of at least 1"),
        ("hidden_size", 2.5, "hidden_size must be an integer"),
        ("epochs", 0, "epochs must be an integer of at least 1"),
        ("batch_size", True, "batch_size must be an integer"),
        ("n_layers", -1, "n_layers must be an integer of at least 0"),
        ("fingerprint_bits", 100, "fingerprint_bits must be a multiple of 8"),
        ("attention_size", 0, "attention_size must be an integer of at least 1"),
    ],
)
def test_every_option_is_checked_when_a_configuration_is_made(field, value, message) -> None:
    with pytest.raises(ValueError, match=message):
        ModelConfig(**{field: value})
    with pytest.raises(ValueError, match=message):  # a preset with an override is checked the same way
        ModelConfig.preset("default", **{field: value})


def test_per_compound_gates_need_the_network_that_gives_them() -> None:
    with pytest.raises(ValueError, match="per_compound"):
        ModelConfig(terms=("compound",), gates="per_compound")
    ModelConfig(terms=("fingerprint",), gates="per_compound")


def test_the_former_name_of_latent_gates_still_reads_and_says_so() -> None:
    with pytest.warns(DeprecationWarning, match='gates="latent"'):
        config = ModelConfig(gates="global")
    assert config.gates == "latent"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ModelConfig.from_dict(ModelConfig().to_dict()) == ModelConfig()

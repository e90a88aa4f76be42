"""Every setting of a delpyro model and of its training: :class:`ModelConfig`, and named presets.

A configuration is checked once, when it is made: an unknown term, likelihood, guide or activation, a
probability outside (0, 1), a negative learning rate raise a ``ValueError`` naming the field. Presets
(``ModelConfig.preset("del-dock")``) are configurations with a name; any field can be overridden.

>>> ModelConfig.preset("del-dock").target_gate
0.5488
>>> ModelConfig(likelihood="gaussian")
Traceback (most recent call last):
...
ValueError: likelihood must be one of ('poisson', 'zip', 'nb', 'zinb'), got 'gaussian'
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from delpyro.distributions import LIKELIHOODS
from delpyro.nets import ACTIVATIONS, POOLINGS

__all__ = [
    "BATCH_SIZE_BOUNDS",
    "BB_PAIRS",
    "COMBINES",
    "CONCENTRATIONS",
    "FEATURES",
    "GATES",
    "GUIDES",
    "LOSSES",
    "MATRIX_SHIFTS",
    "OBSERVED_ONLY",
    "PAIR_MIN_COMPOUNDS",
    "PRESETS",
    "STEPS_PER_EPOCH",
    "TERMS",
    "ModelConfig",
    "batch_size_for",
    "check_choice",
    "resolve_terms",
]

TERMS = ("fingerprint", "poses", "building_blocks", "compound")
COMBINES = ("additive", "multiplicative")
GATES = ("fixed", "learned", "latent", "per_compound")
CONCENTRATIONS = ("learned", "latent")
MATRIX_SHIFTS = ("learned", "latent", "none")
OBSERVED_ONLY = ("none", "target", "any")
FEATURES = ("products", "building_blocks")
GUIDES = ("auto_normal", "auto_lowrank", "auto_delta")
LOSSES = ("trace_elbo", "meanfield")
BB_PAIRS = (True, False, "auto")
#: ``bb_pairs="auto"`` keeps a pair of cycles whose observed pairs of blocks hold at least this many training
#: compounds each on average.
PAIR_MIN_COMPOUNDS = 2


#: The default batch (``batch_size=None``) gives about this many steps an epoch, within these bounds.
STEPS_PER_EPOCH = 16
BATCH_SIZE_BOUNDS = (256, 4096)


def batch_size_for(n_compounds: int) -> int:
    """The default batch size for a training screen of ``n_compounds``: the power of two nearest
    n / ``STEPS_PER_EPOCH``, within ``BATCH_SIZE_BOUNDS``."""
    low, high = BATCH_SIZE_BOUNDS
    if n_compounds <= 0:
        return low
    return int(min(high, max(low, 2 ** round(math.log2(n_compounds / STEPS_PER_EPOCH)))))


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    """Raise a ValueError unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")


@dataclass
class ModelConfig:
    """Every setting of a delpyro model and of its training. Build one, or start from a preset."""

    # ---- enrichment terms
    #: Terms summed into the log enrichments, from "fingerprint", "poses" (networks), "building_blocks"
    #: (hierarchical block and disynthon effects) and "compound" (a per-compound effect); None: every term
    #: the training screen supports (see :func:`resolve_terms`). Without "fingerprint" a latent intercept
    #: per arm is added.
    terms: tuple[str, ...] | None = None
    #: Prior scale (HalfNormal) of the building-block family scales.
    bb_prior_scale: float = 1.0
    #: Disynthon families (one per pair of cycles) besides the blocks: True | False | "auto", which keeps a
    #: pair of cycles when its pairs of blocks hold at least ``PAIR_MIN_COMPOUNDS`` (2) training compounds
    #: each on average. In a two-cycle library a disynthon is a compound: its pair effect would be a
    #: second per-compound effect, which the "compound" term already is (the data cannot tell the two
    #: apart; the pair family would only add a slot per compound to fit), so "auto" leaves it out. In a
    #: three-cycle library a pair pools the compounds that share it, across the third cycle.
    bb_pairs: bool | str = "auto"
    #: Prior scale (HalfNormal) of the per-compound effects' scales.
    compound_prior_scale: float = 1.0
    #: What the fingerprint network reads: "products" (each compound's Morgan fingerprint) |
    #: "building_blocks" (the fingerprints of its building blocks, one per cycle, side by side: for
    #: libraries published without product SMILES, and to score unseen combinations of seen blocks).
    features: str = "products"
    #: Morgan fingerprint radius, length in bits (per building block with "building_blocks"), and whether
    #: chirality is encoded.
    fingerprint_radius: int = 3
    fingerprint_bits: int = 2048
    fingerprint_chirality: bool = True
    #: h: hidden width of the residual layers; embeddings are 2h wide.
    hidden_size: int = 128
    #: Residual layers after the input layer of the fingerprint and pose encoders.
    n_layers: int = 2
    #: Residual layers after the fingerprint embedding is added to every pose embedding.
    n_post_layers: int = 1
    #: Dropout probability inside residual layers (training only).
    dropout: float = 0.1
    #: "relu" | "gelu" | "silu" | "elu" | "tanh".
    activation: str = "relu"
    #: Standard deviation s of a Normal(0, s^2) prior on every weight (not bias) of the networks. Their
    #: weights are point estimates, so this is a MAP penalty sum w^2 / 2 s^2 in the ELBO, counted once a
    #: step like every global prior. Without it the network fits the training compounds' noise, and the
    #: longer it trains the worse it ranks new compounds (53BP1: held-out Spearman 0.211 after 20 epochs,
    #: 0.160 after 60; with s = 0.1, 0.218 and 0.222). None: no prior (DEL-Dock's network).
    network_prior_scale: float | None = 0.1
    #: Pooling over poses: "gated_attention" | "mean".
    pooling: str = "gated_attention"
    #: Width of the gated attention's hidden layer; None: hidden_size.
    attention_size: int | None = None
    # ---- observation model
    #: Count likelihood: "poisson" | "zip" | "nb" | "zinb".
    likelihood: str = "zinb"
    #: How the target arm combines matrix and target enrichment: "multiplicative" (m * t: t is a fold over
    #: what the control and the library's abundance explain, what a chemist calls enriched) | "additive"
    #: (m + t, DEL-Dock's form, the ``del-dock`` preset's: without a load column its t also carries
    #: abundance; ``bench/abundance.py`` measures both).
    combine: str = "multiplicative"
    #: Zero-inflation gates: "fixed" (the values below) | "learned" (point estimates started there) |
    #: "latent" (one per arm, Beta(gate_prior) prior) | "per_compound" (a head of the fingerprint network
    #: gives every compound its own gate, as DEL-Compose does).
    gates: str = "latent"
    #: Beta prior (a, b) of a latent gate.
    gate_prior: tuple[float, float] = (1.0, 1.0)
    #: Gate probabilities of the control and target arms (fixed values, or where learning starts).
    control_gate: float = 0.007528
    target_gate: float = 0.5488
    #: Initial NB concentration (inverse overdispersion) of each arm; the prior median when latent.
    nb_concentration: float = 10.0
    #: NB concentration per arm: "learned" (a point estimate) | "latent" (LogNormal(log nb_concentration, 1.5)).
    concentration: str = "latent"
    #: Prior sd of a latent per-replicate deviation of the log depth around its library-size offset (0: none).
    depth_deviation: float = 0.0
    #: A shift delta of the matrix enrichment in the target arm, log rate = log(m e^delta + t) ("additive"
    #: combine with controls only): "learned" (a point estimate) | "latent" (Normal(0, 1) prior) | "none".
    #: The arms are normalized by their own library sizes, which differ when the target retains more;
    #: delta carries that ratio.
    matrix_shift: str = "learned"
    #: Whether the table lists only members that got reads (many published tables do), so each compound's
    #: counts are modeled given that it got at least one read: "none" (the table is the whole library) |
    #: "target" (listed when its target replicates hold a read) | "any" (when any replicate does). A zero-
    #: truncated likelihood: the counts' probability divided by 1 - P(no read in those replicates).
    observed_only: str = "none"
    #: Library-size normalization: a log(column total / n_compounds) offset per replicate.
    normalize_depth: bool = True
    #: Use the load (pre-selection counts) as a log offset when the data has one.
    use_load: bool = True
    # ---- inference and training
    #: Variational family: "auto_normal" | "auto_lowrank" | "auto_delta".
    guide: str = "auto_normal"
    #: "trace_elbo" | "meanfield" (analytic KL where available).
    loss: str = "trace_elbo"
    #: ClippedAdam: learning rate, elementwise gradient clip, betas and weight decay.
    lr: float = 2e-4
    clip_norm: float = 10.0
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    #: The learning rate is multiplied by lr_decay over lr_decay_steps steps (geometrically, every step).
    lr_decay: float = 1.0
    lr_decay_steps: int = 1000
    #: Learning rate of the local sites' guide parameters (the "compound" term's per-compound effects and
    #: the disynthon pairs), which move only when their batch holds them (a compound: once an epoch);
    #: None: lr.
    local_lr: float | None = 0.05
    #: Initial scale of the guide's per-compound effects (the "compound" term) and seen pairs of blocks.
    local_init_scale: float = 0.3
    #: Learning rate of the guide's other parameters (the latent globals: building-block effects, scales,
    #: gates, concentrations); None: lr.
    guide_lr: float | None = 0.05
    #: Compounds per training step; None: a batch that grows with the training screen, about
    #: ``STEPS_PER_EPOCH`` (16) steps an epoch, a power of two from 256 to 4,096 (:func:`batch_size_for`:
    #: 256 below 5,800 compounds, 2,048 for 27,000, 4,096 from 46,000). A step's cost has a fixed part
    #: (the Pyro sites, the optimizer and moving average over every parameter) that a larger batch spreads
    #: over more compounds; the network, a point estimate, takes fewer steps an epoch and fits less of the
    #: compounds' noise. See bench/README.md (batch_size.py) for the measurements behind it.
    batch_size: int | None = None
    #: Passes over the training screen.
    epochs: int = 20
    #: Decay of the exponential moving average of the parameters used for evaluation and prediction
    #: (None: no averaging). Early steps use min(decay, (1 + step) / (10 + step)).
    ema_decay: float | None = 0.999
    #: The preset this configuration came from ("custom" when built by hand).
    name: str = "custom"

    def __post_init__(self) -> None:
        if self.terms is not None:
            self.terms = tuple(self.terms)
            unknown = sorted(set(self.terms) - set(TERMS))
            if unknown:
                raise ValueError(f"unknown terms {unknown}; expected some of {TERMS}")
            if not self.terms:
                raise ValueError(f"terms: a model needs at least one term of {TERMS}")
        if self.gates == "global":
            warnings.warn('gates="global" is now called gates="latent"', DeprecationWarning, stacklevel=3)
            self.gates = "latent"
        self.betas = tuple(self.betas)  # type: ignore[assignment]
        self.gate_prior = tuple(self.gate_prior)  # type: ignore[assignment]
        self._check()

    def _check(self) -> None:
        for name, choices in (
            ("likelihood", LIKELIHOODS),
            ("combine", COMBINES),
            ("gates", GATES),
            ("concentration", CONCENTRATIONS),
            ("matrix_shift", MATRIX_SHIFTS),
            ("observed_only", OBSERVED_ONLY),
            ("features", FEATURES),
            ("activation", tuple(ACTIVATIONS)),
            ("pooling", POOLINGS),
            ("guide", GUIDES),
            ("loss", LOSSES),
        ):
            check_choice(name, getattr(self, name), choices)
        check_choice("bb_pairs", self.bb_pairs, BB_PAIRS)
        if self.gates == "per_compound" and self.terms is not None and "fingerprint" not in self.terms:
            raise ValueError("gates='per_compound' needs the 'fingerprint' term, whose network gives the gates")
        for name in ("control_gate", "target_gate"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"{name} must lie strictly between 0 and 1, got {getattr(self, name)}")
        positive = ["bb_prior_scale", "compound_prior_scale", "nb_concentration", "lr", "clip_norm"]
        positive += ["lr_decay", "local_init_scale"]
        for name in positive:
            _check_number(name, getattr(self, name), lambda v: v > 0, "positive")
        for name in ("local_lr", "guide_lr", "network_prior_scale"):
            if getattr(self, name) is not None:
                _check_number(name, getattr(self, name), lambda v: v > 0, "positive or None")
        for name in ("depth_deviation", "weight_decay"):
            _check_number(name, getattr(self, name), lambda v: v >= 0, "non-negative")
        _check_number("dropout", self.dropout, lambda v: 0 <= v < 1, "in [0, 1)")
        if len(self.gate_prior) != 2 or min(self.gate_prior) <= 0:
            raise ValueError(f"gate_prior must be two positive numbers (a, b), got {self.gate_prior}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")
        if self.ema_decay is not None:
            _check_number("ema_decay", self.ema_decay, lambda v: 0 < v < 1, "in (0, 1) or None")
        for name, least in (("hidden_size", 1), ("lr_decay_steps", 1), ("fingerprint_bits", 8)):
            _check_integer(name, getattr(self, name), least)
        if self.batch_size is not None:
            _check_integer("batch_size", self.batch_size, 1)
        _check_integer("epochs", self.epochs, 1)
        for name in ("n_layers", "n_post_layers", "fingerprint_radius"):
            _check_integer(name, getattr(self, name), 0)
        if self.fingerprint_bits % 8:
            raise ValueError(f"fingerprint_bits must be a multiple of 8, got {self.fingerprint_bits}")
        if self.attention_size is not None:
            _check_integer("attention_size", self.attention_size, 1)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> ModelConfig:
        """A named configuration (see ``PRESETS``), with any field overridden."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
        return dataclasses.replace(PRESETS[name], **overrides)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        return cls(**values)


def _check_number(name: str, value: Any, ok: Any, expected: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok(value):
        raise ValueError(f"{name} must be {expected}, got {value!r}")


def _check_integer(name: str, value: Any, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{name} must be an integer of at least {least}, got {value!r}")


def resolve_terms(config: ModelConfig, n_poses: int, has_building_blocks: bool) -> tuple[str, ...]:
    """The terms a configuration asks for on a screen: ``terms=None`` means every term the screen supports:
    "fingerprint"; "poses" when it has poses; "building_blocks" when it has building-block ids; "compound"."""
    if config.terms is not None:
        return tuple(config.terms)
    terms = ["fingerprint"]
    if n_poses > 0:
        terms.append("poses")
    if has_building_blocks:
        terms.append("building_blocks")
    terms.append("compound")
    return tuple(terms)


PRESETS: dict[str, ModelConfig] = {
    "default": ModelConfig(name="default"),
    # DEL-Dock: fingerprint + 20 docked poses (224 GNINA CNN features each), gated attention, matrix and
    # target heads through exp, ZIP with fixed gates, rates without depth or load offsets, AutoNormal,
    # ClippedAdam(lr 1e-4, clip 0.1, betas (0.95, 0.999), no weight decay, lr x0.1 over 1250 steps),
    # Trace_ELBO, batch 64, EMA 0.999.
    "del-dock": ModelConfig(
        name="del-dock",
        terms=("fingerprint", "poses"),
        fingerprint_radius=3,
        fingerprint_bits=2048,
        fingerprint_chirality=True,
        hidden_size=256,
        n_layers=2,
        n_post_layers=1,
        dropout=0.1,
        activation="relu",
        pooling="gated_attention",
        likelihood="zip",
        combine="additive",
        gates="fixed",
        control_gate=0.007528,
        target_gate=0.5488,
        normalize_depth=False,
        use_load=False,
        matrix_shift="none",
        guide_lr=None,
        guide="auto_normal",
        loss="trace_elbo",
        lr=1e-4,
        clip_norm=0.1,
        betas=(0.95, 0.999),
        weight_decay=0.0,
        network_prior_scale=None,
        lr_decay=0.1,
        lr_decay_steps=1250,
        batch_size=64,
        epochs=20,
        ema_decay=0.999,
    ),
}

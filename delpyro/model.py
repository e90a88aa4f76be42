r"""The Pyro model of a DEL screen: :meth:`DELModel.forward` holds every plate and sample site, top to bottom.

The generative story of the default model (``ModelConfig()``), natural logs throughout. Compound i has
a fingerprint x_i, building blocks b_k(i) in each cycle k, and reads in control replicates r (bead
selections) and target replicates s. Arms: the target enrichment t and the matrix (bead) enrichment m.

Observation globals, per count arm a in {control, target}::

    gate_a           ~ Beta(gate_prior)                            zero-inflation probability   (gates="latent")
    concentration_a  ~ LogNormal(log nb_concentration, 1.5)        NB inverse overdispersion    (concentration="latent")
    delta            learned point estimate, or ~ Normal(0, 1)     matrix shift in the target arm (matrix_shift)
    dev_{a,r}        ~ Normal(0, depth_deviation)                  per replicate, when depth_deviation > 0
    log depth_{a,r}  = log(total reads of r / n_compounds) + dev_{a,r}

Building blocks (term "building_blocks"), per enrichment arm e in {target, matrix} and family f (each cycle
k, and each pair of cycles (k, l): the disynthons, see ``bb_pairs``)::

    sigma_{e,f}      ~ HalfNormal(bb_prior_scale)
    z_{e,f,j}        ~ Normal(0, 1)                                j = every block (or pair) seen, + 1 unseen slot
    beta_{e,f,j}     = sigma_{e,f} * (z_{e,f,j} - mean over seen slots of z_{e,f})     (cycles)
    beta_{e,f,j}     = sigma_{e,f} * z_{e,f,j}                                          (pairs)
    beta_{e,f,unseen} = sigma_{e,f} * z_{e,f,unseen}

so block effects sum to zero within a cycle, and the level is carried by the network (or an intercept).
Blocks and pairs never seen in training share the unseen slot, whose posterior stays the prior.

A pair family has a slot per pair of blocks seen, as many as N^(2/3) in a three-cycle library of N
compounds, so its normals are local: a plate over the pair slots, subsampled to the pairs a batch holds,
with pair j's prior weighted by (N / B) c_j / n_j in a batch of B compounds of which c_j hold it (n_j: the
training compounds that hold it). Over an epoch each pair's prior then counts once, as each compound's
likelihood does, and a step costs what its batch touches. Pair effects are not centred (centring needs
every slot at every step): pair (a, b) can take over part of block a's effect, but with m pairs in a's row
the prior holds their mean within sigma_f / sqrt(m) of zero, and the blocks' own effects stay put.

Per-compound effects (term "compound"), for every compound of the training screen (local: a subsampled
plate over the screened compounds)::

    sigma_t, sigma_m ~ HalfNormal(compound_prior_scale)
    u^t_i ~ Normal(0, sigma_t^2),  u^m_i ~ Normal(0, sigma_m^2)    independent
    the site holds (w_i, d_i):   w_i = u^t_i + u^m_i,   d_i = u^m_i - kappa w_i
    kappa = sigma_m^2 / (sigma_t^2 + sigma_m^2)
    (without controls: u^t_i = sigma_t * z_i, z_i ~ Normal(0, 1))

w and d are uncorrelated under the prior, and the target reads pin w: a mean-field guide is close to the
posterior in these coordinates (see :func:`~delpyro.effects.compound_prior_scales`: under the prior they are
independent normals).

A compound never screened draws its effect from this prior (integrated over, outside the joint density).

Enrichments and counts, for compound i in the batch::

    log t_i = f_t(x_i) + sum_f beta_{t, f, code_f(i)} + u^t_i
    log m_i = f_m(x_i) + sum_f beta_{m, f, code_f(i)} + u^m_i
    log load_i         = log(load_i + c) - log mean(load + c)
    control[i, r]      ~ ZINB(rate = exp(log m_i + log load_i + log depth_{c,r}), gate_c, concentration_c)
    target[i, s]       ~ ZINB(rate = exp(log g_i + log load_i + log depth_{t,s}), gate_t, concentration_t)
    g_i = m_i t_i   ("multiplicative", the default)   |   m_i e^delta + t_i   ("additive", DEL-Dock)

Multiplicative, t_i is a fold over what the control explains: bead binding and the library's abundance,
which multiply every selection's reads alike, sit in m_i (and in load_i when the screen has a load).

Several targets (a screen of :func:`~delpyro.targets.join_targets`: targets k = 1..K selected on the same
beads, each target replicate s of one target k(s), the controls shared). The enrichment arms are then the
shared target arm "target", each target's own arm "target:k", and "matrix"; every term above gives each
arm its part (the fingerprint network: one trunk, the target head and one deviation head per target;
building blocks: a scale and effects per arm and family, so beta_{t_k} = beta_{shared} + beta_{own k},
each family's own scale learned; intercepts, without a network, for the target arms and the matrix only)::

    log t_{k,i} = f_t(x_i) + g_k(x_i) + sum_f (beta_{shared,f,code} + beta_{k,f,code}) + u^k_i
    target[i, s] ~ ZINB(rate = exp(log g_{k(s),i} + log load_i + log depth_{t,s}), gate_t, concentration_t)

Per-compound effects: one u^k_i ~ Normal(0, sigma_t^2) per target (one sigma_t), u^m_i as above. With
controls the site holds (a_i, d_i): a = Q w, w_k = u^k + u^m, Q orthonormal with first row 1 / sqrt(K)
(:func:`~delpyro.effects.target_rotation`), d = u^m - kappa sum_k w_k, kappa = sigma_m^2 / (sigma_t^2 +
K sigma_m^2): independent normals under the prior (:func:`~delpyro.effects.compound_prior_scales` gives
their scales), unit Jacobian. log_target_enrichment is then ``[batch, K]``. Gates and concentrations are
per count arm, shared by the targets' replicates.

Targets on more than one kind of beads (bead sets b = 1..G, each with its own no-protein controls: a
screen of ``join_targets`` whose targets' controls differ): the matrix arms are then the shared "matrix"
and each set's own "matrix:b", as the target arms are, and each set has its own per-compound matrix
effect::

    log m_{b,i} = f_m(x_i) + g_b(x_i) + sum_f (beta_{matrix,f,code} + beta_{b,f,code}) + u^{m,b}_i
    control[i, r] ~ ZINB(rate = exp(log m_{b(r),i} + log load_i + log depth_{c,r}), ...)
    g_{k,i} = m_{b(k),i} t_{k,i}   (target k selected on beads b(k))

The per-compound site holds each set's (a, d) of its own targets, one set after another; log
matrix enrichment is then ``[batch, G]``.

f_t and f_m are the heads of the fingerprint network (:class:`~delpyro.nets.FingerprintNet`; with poses the
target head is the pose network's, :class:`~delpyro.nets.PoseNet`). Without a fingerprint network each arm
gets an intercept ~ Normal(0, 5); without controls there is no matrix arm and g_i = t_i. ZINB(rate, pi, phi)
is a structural zero with probability pi, else a negative binomial of mean rate and variance rate +
rate^2 / phi; the likelihood may also be Poisson, ZIP or NB (:mod:`delpyro.distributions`). Network
weights, and gates, concentrations or delta when "learned", are point estimates (Pyro params); with
``network_prior_scale`` = s the weights W (not biases) have the prior Normal(0, s^2), a MAP penalty
sum W^2 / 2 s^2 added once per step (the factor site ``network_prior``, in training only).

Sites (names are the constants below; :data:`LOCAL_SITES` are the per-compound ones a guide covers):
``network_prior`` (a factor), ``control_gate``, ``target_gate``, ``control_concentration``,
``target_concentration``, ``target_matrix_shift``, ``control_depth_deviation``, ``target_depth_deviation``,
``target_intercept``, ``matrix_intercept``, ``bb_scale`` ``[arms, families]``, ``bb_z`` ``[arms, slots]``
(every cycle's slots one after another: a site costs every training step a fixed amount of bookkeeping),
``bb_pair_z`` ``[pairs, arms]`` (local: the pair slots a batch holds, every pair family's one after another),
``compound_scale``, ``compound_matrix_scale``, ``compound_effect`` ``[screened, arms]``,
``new_compound_effect``, and the observed ``control_counts`` ``[batch, replicates]`` and ``target_counts``.
In evaluation the model also records
``log_target_enrichment``, ``log_matrix_enrichment``, ``compound_target_effect`` and
``compound_matrix_effect`` (deterministic sites, ``[batch, 1]``).

Every DELModel owns its own Pyro parameter store (:meth:`DELModel.param_scope`), so several models fitted
in one kernel never share parameters.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample
from torch import nn

from delpyro.batches import Shard
from delpyro.config import ModelConfig
from delpyro.data import DELData
from delpyro.distributions import NEGATIVE_BINOMIAL, ZERO_INFLATED, count_distribution, log1mexp
from delpyro.effects import (
    BuildingBlockEffects,
    compound_parts,
    compound_prior,
    effects_in_batch_order,
    screened_positions,
)
from delpyro.encoding import Encoding
from delpyro.keys import (
    BATCH_TOTAL,
    BLOCK_CODES,
    CONTROL_COUNTS,
    FINGERPRINTS,
    INDEX,
    LOG_LOAD,
    PAIR_SUBSAMPLE,
    POSES,
    SCREEN_SIZE,
    TARGET_COUNTS,
    TRAINING_POSITION,
)
from delpyro.nets import FingerprintNet, PoseNet

__all__ = [
    "BB_EFFECTS",
    "BB_PAIR_EFFECTS",
    "BB_PAIR_Z",
    "BB_SCALE",
    "BB_Z",
    "COMPOUND_EFFECT",
    "LOCAL_SITES",
    "DELModel",
    "NetworkEnrichments",
    "PairSubsample",
    "WeightedPlate",
    "is_compound_row",
]

# ---- site names (per arm: fill in ``arm``)
GATE = "{arm}_gate"
CONCENTRATION = "{arm}_concentration"
DEPTH_DEVIATION = "{arm}_depth_deviation"
MATRIX_SHIFT = "target_matrix_shift"
INTERCEPT = "{arm}_intercept"
BB_SCALE = "bb_scale"
BB_Z = "bb_z"
BB_PAIR_Z = "bb_pair_z"
#: the cycles' effects ``[arms, slots]`` and the pairs' ``[pairs, arms]``: derived from ``bb_scale``, ``bb_z``
#: and ``bb_pair_z``, not sites
BB_EFFECTS = "bb_effects"
BB_PAIR_EFFECTS = "bb_pair_effects"
COMPOUND_SCALE = "compound_scale"
COMPOUND_MATRIX_SCALE = "compound_matrix_scale"
COMPOUND_EFFECT = "compound_effect"
NEW_COMPOUND_EFFECT = "new_compound_effect"
NETWORK_PRIOR = "network_prior"
COUNTS = "{arm}_counts"
#: the zero-truncation factor of a table that lists only compounds with reads (``observed_only``), and the
#: draws of a compound's own effect from its prior over which the probability of being listed is averaged
OBSERVED_ONLY = "observed_only"
LISTED_DRAWS = 16
LOG_TARGET_ENRICHMENT = "log_target_enrichment"
LOG_MATRIX_ENRICHMENT = "log_matrix_enrichment"
COMPOUND_EFFECT_ON = "compound_{arm}_effect"
#: The local sites: in a plate subsampled with the batch, a row per screened compound (``compound_effect``,
#: in the screened plate, by each compound's position in the training screen) or per pair of blocks
#: (``bb_pair_z``, in the pair plate). A guide keeps a row of parameters per member, and the optimizer
#: moves a row only when its batch holds it.
LOCAL_SITES = (COMPOUND_EFFECT, BB_PAIR_Z)


def is_compound_row(name: str) -> bool:
    """Whether a parameter (or its optimizer state, or moving average) of the store has a row per screened
    compound: the guide's parameters of the per-compound effects."""
    return name.rsplit(".", 1)[-1] == COMPOUND_EFFECT


# ---- point estimates (Pyro params) of the "learned" settings
GATE_LOGITS = "{arm}_gate_logits"
LOG_CONCENTRATION = "{arm}_log_concentration"
# ---- plates
COMPOUND_PLATE = "compounds"
SCREENED_PLATE = "screened"
NEW_COMPOUND_PLATE = "new_compounds"
PAIR_PLATE = "pair_slots"
#: plates of the per-compound sites (what tells a global site from a local one)
COMPOUND_PLATES = (COMPOUND_PLATE, SCREENED_PLATE)


class PairSubsample(NamedTuple):
    """The pair slots of a batch: ``slots`` (int64 ``[k]``, sorted; None: every slot, the whole screen),
    ``positions`` (int64 ``[batch, n_pair_families]``: each compound's pairs among ``slots``, or their
    slots when every slot is taken) and each slot's prior ``weights`` ``[k]`` (None with every slot)."""

    slots: torch.Tensor | None
    positions: torch.Tensor | None
    weights: torch.Tensor | None


class WeightedPlate(pyro.plate):
    """A subsampled plate whose members each carry their own scale (``weights``, one per subsample index)
    in place of the plate's size / subsample size."""

    def __init__(self, name: str, size: int, subsample: torch.Tensor, weights: torch.Tensor, dim: int) -> None:
        super().__init__(name, size, subsample=subsample, dim=dim)
        self.weights = weights

    def _process_message(self, msg: dict) -> None:
        super()._process_message(msg)
        if msg["type"] == "sample":
            msg["scale"] = msg["scale"] * (self.weights * (self.subsample_size / self.size))


class NetworkEnrichments(NamedTuple):
    """The networks' part of a batch's log enrichments (None: no such part)."""

    target: torch.Tensor | None  # [batch]
    matrix: torch.Tensor | None  # [batch]
    gate_logits: dict[str, torch.Tensor]  # per-compound gate logits [batch] by count arm
    attention: torch.Tensor | None  # [batch, n_poses]
    deviations: dict[str, torch.Tensor] | None = None  # several targets: each target arm's deviation [batch]


def _logit(p: float) -> float:
    return math.log(p) - math.log1p(-p)


def _sum(parts: list[torch.Tensor | None]) -> torch.Tensor | None:
    """The parts added one after another (None parts skipped); None when there are none."""
    total = None
    for part in parts:
        if part is not None:
            total = part if total is None else total + part
    return total


class DELModel(nn.Module):
    """The Pyro model of a DEL screen (call it on a batch; it is also an ``nn.Module``).

    Args:
        config: the settings (:class:`~delpyro.config.ModelConfig`).
        encoding: what the model takes from its training screen (:meth:`Encoding.fit(train, config)
            <delpyro.encoding.Encoding.fit>`), which gives its terms, sizes and offsets.
    """

    def __init__(self, config: ModelConfig, encoding: Encoding) -> None:
        super().__init__()
        if isinstance(encoding, DELData):
            raise TypeError(
                "DELModel takes an Encoding of the training screen, not the screen: "
                "DELModel(config, Encoding.fit(train, config))"
            )
        fingerprint = ("fingerprint_radius", "fingerprint_bits", "fingerprint_chirality", "features")
        differ = [name for name in fingerprint if getattr(config, name) != getattr(encoding, name)]
        if config.terms is not None and tuple(config.terms) != encoding.terms:
            differ.append("terms")
        if differ:
            raise ValueError(
                f"the encoding was fitted with other settings ({', '.join(differ)}) than this config: "
                "fit it with this one, Encoding.fit(train, config)"
            )
        self.config = config
        self.encoding = encoding
        #: the rows of the training screen whose per-compound effects this process holds (None: every row);
        #: set before the guide is built (see :mod:`delpyro.distributed`)
        self.shard: Shard | None = None
        self.terms = encoding.terms
        has_control = encoding.has_control
        #: the targets (None: one), each target's arm, the enrichment arms, and the count arms (replicate
        #: sets). With several targets the arm "target" is the part they share and "target:<name>" each
        #: one's own; with one, "target" is its whole enrichment.
        self.targets = encoding.targets
        self.target_arms = ("target",) if self.targets is None else tuple(f"target:{t}" for t in self.targets)
        shared = ("target",) if self.targets is None else ("target", *self.target_arms)
        #: several targets on more than one kind of beads: the bead sets, and each set's matrix arm
        #: "matrix:<set>" (its own part; the arm "matrix" is then the part they share); else ("matrix",)
        self.bead_sets = encoding.bead_sets
        #: each target's bead set (positions in ``bead_sets``), as the compound effects' layout takes it
        self.target_sets = None if self.bead_sets is None else tuple(encoding.target_bead_set)
        self.matrix_arms = ("matrix",) if self.bead_sets is None else tuple(f"matrix:{b}" for b in self.bead_sets)
        matrix = ("matrix",) if self.bead_sets is None else ("matrix", *self.matrix_arms)
        self.arms = (*shared, *matrix) if has_control else shared
        #: the arms whose network part is a deviation head of the fingerprint network (own arms beside a
        #: shared one)
        self.deviation_arms = (self.target_arms if self.targets is not None else ()) + (
            self.matrix_arms if self.bead_sets is not None else ()
        )
        self.count_arms = ("control", "target") if has_control else ("target",)
        self.zero_inflated = config.likelihood in ZERO_INFLATED
        self.negative_binomial = config.likelihood in NEGATIVE_BINOMIAL
        self.uses_matrix_shift = config.matrix_shift != "none" and config.combine == "additive" and has_control
        h = config.hidden_size
        networks: dict[str, nn.Module] = {}
        if "fingerprint" in self.terms:
            per_compound_gates = config.gates == "per_compound" and self.zero_inflated
            networks["fingerprint"] = FingerprintNet(
                encoding.n_feature_bits,
                h,
                config.n_layers,
                config.activation,
                config.dropout,
                target_head="poses" not in self.terms,
                matrix_head=has_control,
                gate_arms=self.count_arms if per_compound_gates else (),
                deviation_heads=len(self.deviation_arms),
            )
        if "poses" in self.terms:
            networks["poses"] = PoseNet(
                encoding.n_pose_features,
                h,
                config.n_layers,
                config.n_post_layers,
                config.activation,
                config.dropout,
                config.pooling,
                config.attention_size or h,
            )
        self.networks = nn.ModuleDict(networks)
        self.building_blocks = None
        if "building_blocks" in self.terms:
            counts = [np.append(encoding.pair_counts[family], 0) for family in encoding.pair_keys or {}]
            counts = np.concatenate(counts) if counts else np.zeros(0)
            self.building_blocks = BuildingBlockEffects(encoding.families, encoding.n_cycles, self.arms, counts)
        self.register_buffer("log_depth_target", torch.tensor(encoding.log_depth_target), persistent=False)
        self.register_buffer("log_depth_control", torch.tensor(encoding.log_depth_control), persistent=False)
        #: several targets: each target replicate's target, by position in ``targets``
        replicate_target = encoding.replicate_target or [0] * len(encoding.target_names)
        self.register_buffer("replicate_target", torch.tensor(replicate_target, dtype=torch.long), persistent=False)
        #: bead sets: each control replicate's set and each target's, by position in ``bead_sets``
        control_bead_set = encoding.control_bead_set or [0] * len(encoding.control_names)
        self.register_buffer("control_bead_set", torch.tensor(control_bead_set, dtype=torch.long), persistent=False)
        target_bead_set = encoding.target_bead_set or [0] * len(self.target_arms)
        self.register_buffer("target_bead_set", torch.tensor(target_bead_set, dtype=torch.long), persistent=False)
        self._param_state: dict[str, dict] = {"params": {}, "constraints": {}}
        self._in_scope = False

    @property
    def latent_terms(self) -> tuple[str, ...]:
        """Terms with sampled effects (their predictions have a posterior spread): "intercept" (a model
        without a fingerprint network), "building_blocks", "compound"."""
        latent = ("intercept",) if "fingerprint" not in self.terms else ()
        return latent + tuple(t for t in ("building_blocks", "compound") if t in self.terms)

    @property
    def intercept_arms(self) -> tuple[str, ...]:
        """The arms with an intercept in a model without a fingerprint network: each target's and the
        matrix's (several targets' shared arm has none: their own carry the level)."""
        return self.target_arms + (self.matrix_arms if "matrix" in self.arms else ())

    @property
    def local_sites(self) -> tuple[str, ...]:
        """The local sites this model has (see :data:`LOCAL_SITES`)."""
        pairs = self.building_blocks is not None and self.building_blocks.has_pairs
        return (COMPOUND_EFFECT,) * ("compound" in self.terms) + (BB_PAIR_Z,) * pairs

    def local_init_scales(self) -> dict[str, torch.Tensor]:
        """Where the guide's scales of the local sites start: ``local_init_scale`` (most compounds of a sparse
        screen keep a posterior close to the prior, and a scale far below it takes many epochs, one step
        each, to grow), and 1, the prior, for the pair slots no training compound holds (the unseen ones,
        which no training batch touches)."""
        value = torch.tensor(self.config.local_init_scale, device=self.device)
        out = {COMPOUND_EFFECT: value}
        if BB_PAIR_Z in self.local_sites:
            unseen = (self.building_blocks.pair_counts == 0).unsqueeze(-1)
            out[BB_PAIR_Z] = torch.where(unseen, torch.ones_like(value), value).expand(-1, len(self.arms))
        return out

    @property
    def device(self) -> torch.device:
        """Where the model's tensors live (move it with ``.to(device)`` before building a guide)."""
        return self.log_depth_target.device

    def log_depth(self, arm: str) -> torch.Tensor:
        """The library-size log depth offsets ``[n_replicates]`` of a count arm."""
        return self.log_depth_target if arm == "target" else self.log_depth_control

    # ---- Pyro parameter store and evaluation mode -------------------------------------------------------
    @contextmanager
    def param_scope(self) -> Iterator[None]:
        """Make this model's own Pyro parameters the active param store (re-entrant)."""
        if self._in_scope:
            yield
            return
        self._in_scope = True
        try:
            with pyro.get_param_store().scope(self._param_state):
                yield
        finally:
            self._in_scope = False

    @contextmanager
    def evaluating(self) -> Iterator[None]:
        """Evaluation mode (dropout off, enrichments recorded as sites), restored afterwards."""
        was_training = self.training
        self.eval()
        try:
            yield
        finally:
            self.train(was_training)

    # ---- the model -----------------------------------------------------------------------------------
    def forward(self, batch: dict[str, Any]) -> None:
        """The Pyro model of one minibatch (the story in the module docstring); ``batch`` holds
        ``INDEX`` and ``SCREEN_SIZE`` (see :class:`~delpyro.batches.Minibatches`)."""
        config = self.config
        device = self.device
        pyro.module("networks", self.networks)
        if config.network_prior_scale is not None and self.training:
            # the networks' weights (not biases) are point estimates: their Normal(0, s^2) prior is a MAP penalty
            penalty = sum(p.square().sum() for p in self.networks.parameters() if p.dim() > 1)
            pyro.factor(NETWORK_PRIOR, -0.5 * penalty / config.network_prior_scale**2)
        replicates = {
            arm: pyro.plate(f"{arm}_replicates", self.log_depth(arm).numel(), dim=-1) for arm in self.count_arms
        }

        # ---- observation globals, per count arm
        gate_logits: dict[str, torch.Tensor] = {}
        log_concentration: dict[str, torch.Tensor] = {}
        log_depth: dict[str, torch.Tensor] = {}
        matrix_shift = None
        for arm in self.count_arms:
            if self.zero_inflated and config.gates == "latent":
                a, b = (torch.tensor(v, device=device) for v in config.gate_prior)
                gate = pyro.sample(GATE.format(arm=arm), dist.Beta(a, b)).clamp(1e-6, 1 - 1e-6)
                gate_logits[arm] = gate.log() - (-gate).log1p()
            if self.negative_binomial and config.concentration == "latent":
                median = torch.tensor(math.log(config.nb_concentration), device=device)
                log_concentration[arm] = pyro.sample(CONCENTRATION.format(arm=arm), dist.LogNormal(median, 1.5)).log()
            if arm == "target" and self.uses_matrix_shift:
                if config.matrix_shift == "latent":
                    matrix_shift = pyro.sample(MATRIX_SHIFT, dist.Normal(torch.tensor(0.0, device=device), 1.0))
                else:
                    matrix_shift = pyro.param(MATRIX_SHIFT, torch.tensor(0.0, device=device))
            log_depth[arm] = self.log_depth(arm)
            if config.depth_deviation > 0:
                with replicates[arm]:
                    prior = dist.Normal(torch.zeros_like(log_depth[arm]), config.depth_deviation)
                    log_depth[arm] = log_depth[arm] + pyro.sample(DEPTH_DEVIATION.format(arm=arm), prior)

        # ---- the enrichment terms' globals
        sites: dict[str, torch.Tensor] = {}
        if "intercept" in self.latent_terms:
            for arm in self.intercept_arms:
                name = INTERCEPT.format(arm=arm)
                sites[name] = pyro.sample(name, dist.Normal(torch.tensor(0.0, device=device), 5.0))
        if self.building_blocks is not None:
            with pyro.plate("bb_arms", len(self.arms), dim=-2):
                with pyro.plate("bb_families", len(self.building_blocks.families), dim=-1):
                    sites[BB_SCALE] = pyro.sample(BB_SCALE, dist.HalfNormal(config.bb_prior_scale))
                with pyro.plate("bb_slots", self.building_blocks.n_cycle_slots, dim=-1):
                    sites[BB_Z] = pyro.sample(BB_Z, dist.Normal(0.0, 1.0))
            if self.building_blocks.has_pairs:  # local: the batch's pairs, each prior weighted (pair_plate)
                with self.pair_plate(batch):
                    prior = dist.Normal(torch.zeros(len(self.arms), device=device), 1.0).to_event(1)
                    sites[BB_PAIR_Z] = pyro.sample(BB_PAIR_Z, prior)

        # ---- per-compound effects: the screened compounds' own (local), new compounds' from the prior
        compound_z = None
        if "compound" in self.terms:
            sites[COMPOUND_SCALE] = pyro.sample(COMPOUND_SCALE, dist.HalfNormal(config.compound_prior_scale))
            if "matrix" in self.arms:
                prior = dist.HalfNormal(config.compound_prior_scale)
                sites[COMPOUND_MATRIX_SCALE] = pyro.sample(COMPOUND_MATRIX_SCALE, prior)
            effect_prior = self.compound_prior(sites)
            _, screened = screened_positions(batch)
            screened_value = new_value = None
            if bool(screened.any()):
                with self.screened_plate(batch):
                    screened_value = pyro.sample(COMPOUND_EFFECT, effect_prior)
            if not bool(screened.all()):
                # integrated over: its density is not part of the joint, so a held-out loss is
                # -E_prior[log p(reads | z)], not that plus a log density of z
                with pyro.plate(NEW_COMPOUND_PLATE, int((~screened).sum()), dim=-1), poutine.mask(mask=False):
                    new_value = pyro.sample(NEW_COMPOUND_EFFECT, effect_prior)
            compound_z = effects_in_batch_order(screened_value, new_value, batch, self.n_screened_held)

        # ---- the batch's compounds: enrichments, then the reads of every replicate
        with pyro.plate(COMPOUND_PLATE, batch[SCREEN_SIZE], subsample=batch[INDEX], dim=-2):
            network = self.network_enrichments(batch)
            latent = self._latent_parts(batch, sites, None)
            compound = {}
            if compound_z is not None:
                compound = self.compound_parts(compound_z, sites)
            log_target, log_matrix = self.enrichments(network, latent, compound)
            if not self.training:  # for posterior export; a training step has no use for them
                value = log_target if self.targets is not None else log_target.unsqueeze(-1)
                pyro.deterministic(LOG_TARGET_ENRICHMENT, value, event_dim=0)
                if log_matrix is not None:
                    value = log_matrix.unsqueeze(-1) if self.bead_sets is None else log_matrix
                    pyro.deterministic(LOG_MATRIX_ENRICHMENT, value, event_dim=0)
                if compound:  # every target's effects [batch, n_targets] and every bead set's [batch, n_sets]
                    recorded = {"target": torch.stack([compound[arm] for arm in self.target_arms], -1)}
                    if "matrix" in self.arms:  # [batch, bead sets]
                        recorded["matrix"] = torch.stack([compound[arm] for arm in self.matrix_arms], -1)
                    for arm, value in recorded.items():
                        pyro.deterministic(COMPOUND_EFFECT_ON.format(arm=arm), value, event_dim=0)
            for arm, logits in network.gate_logits.items():
                gate_logits[arm] = logits.unsqueeze(-1)
            log_load = batch.get(LOG_LOAD)
            offset = 0.0 if log_load is None else log_load.unsqueeze(-1)

            def count_distributions(log_t: torch.Tensor, log_m: torch.Tensor | None) -> dict:
                """Each count arm's distribution, replicates last, for log enrichments ``[..., batch]``."""
                out = {}
                if "control" in self.count_arms:
                    log_rate = self.control_rates(log_m) + offset + log_depth["control"]
                    out["control"] = self._count_distribution("control", log_rate, gate_logits, log_concentration)
                log_rate = self.replicate_rates(self.log_retained(log_t, log_m, matrix_shift)) + offset
                log_rate = log_rate + log_depth["target"]
                out["target"] = self._count_distribution("target", log_rate, gate_logits, log_concentration)
                return out

            counts = count_distributions(log_target, log_matrix)
            observed = {"control": batch.get(CONTROL_COUNTS), "target": batch.get(TARGET_COUNTS)}
            for arm, distribution in counts.items():
                with replicates[arm]:
                    pyro.sample(COUNTS.format(arm=arm), distribution, obs=observed[arm])
            if config.observed_only != "none":
                # the table lists a compound only when it got a read, so its counts are modeled given that:
                # the likelihood is divided by the probability of being listed, 1 - P(no read in the
                # replicates that list it), marginal over the compound's own effect (whose posterior the
                # listing does not move, as its reads already say it was listed)
                base_target = _sum([network.target, *latent["target"]])
                base_matrix = _sum([network.matrix, *latent["matrix"]])
                if compound_z is None:
                    no_read = self._log_no_read(count_distributions(base_target, base_matrix))
                    log_listed = log1mexp(no_read)
                else:
                    draws = effect_prior.rsample((LISTED_DRAWS, base_target.shape[-1]))  # [draws, batch, n_arms]
                    parts = self.compound_parts(draws, sites)
                    matrix = None if base_matrix is None else base_matrix + parts["matrix"]
                    no_read = self._log_no_read(count_distributions(base_target + parts["target"], matrix))
                    log_listed = torch.logsumexp(log1mexp(no_read), 0) - math.log(LISTED_DRAWS)
                pyro.factor(OBSERVED_ONLY, -log_listed.unsqueeze(-1))

    def _log_no_read(self, counts: dict[str, dist.TorchDistribution]) -> torch.Tensor:
        """log P(no read in any replicate that lists a compound) ``[..., batch]``, replicates independent
        given the rates: the sum of each one's log probability of zero over the arms ``observed_only`` names."""
        arms = ["target"] if self.config.observed_only == "target" else list(counts)
        return sum(counts[arm].log_prob(torch.zeros_like(counts[arm].mean)).sum(-1) for arm in arms)

    def log_retained(
        self, log_target: torch.Tensor, log_matrix: torch.Tensor | None, matrix_shift: torch.Tensor | None = None
    ) -> torch.Tensor:
        """log g: what the target selection retains, before depth and load ``[..., batch]`` (``[..., batch,
        n_targets]`` with several targets, from log enrichments of those shapes and a log matrix ``[..., batch]``)."""
        if log_matrix is None or "matrix" not in self.arms:
            return log_target
        if self.bead_sets is not None:  # each target's bead set's matrix, [..., batch, n_targets]
            log_matrix = log_matrix.index_select(-1, self.target_bead_set)
        elif self.targets is not None:
            log_matrix = log_matrix.unsqueeze(-1)
        if self.config.combine == "additive":
            return torch.logaddexp(log_matrix if matrix_shift is None else log_matrix + matrix_shift, log_target)
        return log_matrix + log_target

    def control_rates(self, log_matrix: torch.Tensor) -> torch.Tensor:
        """Each control replicate's log rate before depth and load ``[..., batch, n_control_replicates]`` (to
        broadcast) from log m: ``[..., batch, 1]`` for one set of controls; with bead sets, each replicate
        takes its set's ``[..., batch, n_bead_sets]``."""
        if self.bead_sets is None:
            return log_matrix.unsqueeze(-1)
        return log_matrix.index_select(-1, self.control_bead_set)

    def replicate_rates(self, log_retained: torch.Tensor) -> torch.Tensor:
        """Each target replicate's log rate before depth and load ``[..., batch, n_target_replicates]`` (to
        broadcast) from log g: ``[..., batch, 1]`` for one target; with several, each replicate takes its
        target's ``[..., batch, n_targets]``."""
        if self.targets is None:
            return log_retained.unsqueeze(-1)
        return log_retained.index_select(-1, self.replicate_target)

    def _count_distribution(
        self,
        arm: str,
        log_rate: torch.Tensor,
        gate_logits: dict[str, torch.Tensor],
        log_concentration: dict[str, torch.Tensor],
    ) -> dist.TorchDistribution:
        """An arm's count distribution, its gate and concentration latent, from the network, learned or fixed."""
        config = self.config
        device = self.device
        logits = concentration = None
        if self.zero_inflated:
            logits = gate_logits.get(arm)
            if logits is None:  # fixed, or a point estimate started there
                logits = torch.tensor(_logit(getattr(config, f"{arm}_gate")), device=device)
                if config.gates == "learned":
                    logits = pyro.param(GATE_LOGITS.format(arm=arm), logits)
        if self.negative_binomial:
            concentration = log_concentration.get(arm)
            if concentration is None:
                initial = torch.tensor(math.log(config.nb_concentration), device=device)
                concentration = pyro.param(LOG_CONCENTRATION.format(arm=arm), initial)
        return count_distribution(config.likelihood, log_rate, logits, concentration)

    # ---- enrichments, for the model and for posterior draws --------------------------------------------
    def network_enrichments(self, batch: dict[str, Any]) -> NetworkEnrichments:
        """The networks' log target and log matrix parts, per-compound gate logits and pose attention."""
        target = matrix = attention = embedding = None
        gate_logits: dict[str, torch.Tensor] = {}
        if "fingerprint" in self.networks:
            output = self.networks["fingerprint"](batch[FINGERPRINTS])
            target, matrix, embedding, gate_logits = output.target, output.matrix, output.embedding, output.gate_logits
        deviations = None
        if "fingerprint" in self.networks and output.deviations is not None:
            deviations = {arm: output.deviations[..., k] for k, arm in enumerate(self.deviation_arms)}
        if "poses" in self.networks:
            pose_target, attention = self.networks["poses"](batch[POSES], embedding)
            target = _sum([target, pose_target])
        return NetworkEnrichments(target, matrix, gate_logits, attention, deviations)

    def enrichments(
        self,
        network: NetworkEnrichments,
        latent: dict[str, list[torch.Tensor]],
        compound: dict[str, torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(log t, log m)`` from the networks' parts, the latent terms' parts by arm and the compound
        effects by arm (any leading draw dims): log t ``[..., batch]``, or ``[..., batch, n_targets]`` with
        several targets, each the shared parts (arm "target") plus its own; log m ``[..., batch]`` or None."""
        deviations = network.deviations or {}
        log_matrix = _sum([network.matrix, *latent.get("matrix", []), compound.get("matrix")])
        if self.bead_sets is not None:  # [..., batch, n_bead_sets]: the shared part and each set's own
            per_set = [
                _sum([log_matrix, deviations.get(arm), *latent.get(arm, []), compound.get(arm)])
                for arm in self.matrix_arms
            ]
            log_matrix = torch.stack(torch.broadcast_tensors(*per_set), dim=-1)
        shared = [network.target, *latent.get("target", [])]
        if self.targets is None:
            return _sum([*shared, compound.get("target")]), log_matrix
        per_target = [
            _sum([*shared, deviations.get(arm), *latent.get(arm, []), compound.get(arm)]) for arm in self.target_arms
        ]
        return torch.stack(torch.broadcast_tensors(*per_target), dim=-1), log_matrix

    def _latent_parts(
        self, batch: dict[str, Any], sites: dict[str, torch.Tensor], compound_z: torch.Tensor | None
    ) -> dict[str, list[torch.Tensor]]:
        """The latent terms' parts of the log enrichments ``[..., batch]`` per enrichment arm, in term
        order (intercept, building blocks, compound), from the sites' values (any leading draw dims) and
        the compound effect sites' values in batch order ``[..., batch, n_arms]``."""
        parts: dict[str, list[torch.Tensor]] = {arm: [] for arm in ("matrix", *self.arms)}
        size = batch[INDEX].shape[0]
        if "intercept" in self.latent_terms:
            for arm in self.intercept_arms:
                value = sites[INTERCEPT.format(arm=arm)]  # [] or [draws]
                parts[arm].append(value.unsqueeze(-1).expand(*value.shape, size))
        if self.building_blocks is not None:
            scale = sites[BB_SCALE]
            effects = self.building_blocks.effects(scale, sites[BB_Z])
            pair_z = sites.get(BB_PAIR_Z)
            positions = None if pair_z is None else self.pair_positions(batch, pair_z)
            for arm, value in self.building_blocks(scale, effects, batch[BLOCK_CODES], pair_z, positions).items():
                parts[arm].append(value)
        if compound_z is not None:
            for arm, value in self.compound_parts(compound_z, sites).items():
                parts[arm].append(value)
        return parts

    def compound_prior(self, values: dict[str, torch.Tensor]) -> dist.Distribution:
        """The prior of a compound's effect site given the scales among ``values`` (a run's sites or draws
        of them; :func:`~delpyro.effects.compound_prior`)."""
        scales = values[COMPOUND_SCALE], values.get(COMPOUND_MATRIX_SCALE)
        return compound_prior(*scales, len(self.target_arms), self.target_sets)

    def compound_parts(self, z: torch.Tensor, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The compound effects on each arm ``[..., batch]`` from the effect site's values ``[..., batch, n]``
        and the scales among ``values`` (:func:`~delpyro.effects.compound_parts`)."""
        scales = values[COMPOUND_SCALE], values.get(COMPOUND_MATRIX_SCALE)
        return compound_parts(z, *scales, self.target_arms, self.matrix_arms, self.target_sets)

    def draw_enrichments(
        self, batch: dict[str, Any], network: NetworkEnrichments, values: dict[str, torch.Tensor], count: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(log t, log m)`` of :meth:`enrichments` for ``count`` posterior draws of the latent sites
        (``values``: ``{site: [count, ...]}``, the local sites for the batch's screened compounds in the
        screened plate's order), with the networks' parts ``network``: ``[count, batch]`` (log t
        ``[count, batch, n_targets]`` with several targets; a part the draws do not move broadcasts).
        Compounds never screened draw their effect from its prior, one per draw (the model's story
        without its sites)."""
        compound_z = None
        if "compound" in self.terms:
            prior = self.compound_prior(values)
            size = batch[INDEX].shape[0]
            # [count, batch, n_arms]; the screened compounds' draws are replaced by their own posterior's
            z = prior.sample((count, size)) if prior.batch_shape == () else prior.sample((size,)).movedim(0, 1)
            _, screened = screened_positions(batch)
            screened_value = values[COMPOUND_EFFECT] if bool(screened.any()) else None
            compound_z = effects_in_batch_order(screened_value, z[:, ~screened], batch, self.n_screened_held)
        return self.enrichments(network, self._latent_parts(batch, values, compound_z), {})

    # ---- plates and names --------------------------------------------------------------------------
    def screened_plate(self, batch: dict[str, Any]) -> pyro.plate:
        """The plate of the screened compounds' effects (dim -1), subsampled to those in ``batch`` (at
        least one index: a batch without screened compounds gets a placeholder)."""
        positions, _ = screened_positions(batch)
        held = self.n_screened_held
        whole = positions.numel() == held
        if self.shard is not None:
            # a shard of the screen: its rows are those of the plate, and each member stands for
            # n_screened / (members in the batch) compounds, as it would in one process's plate
            members = torch.arange(held, device=positions.device) if whole else positions
            weights = torch.full(members.shape, self.encoding.n_screened / positions.numel(), device=members.device)
            return WeightedPlate(SCREENED_PLATE, held, members, weights, -1)
        if whole:
            # every screened compound at once: the plate in its natural order (pyro subsamples parameters
            # only for a proper subsample, so a permutation must not be passed as one)
            return pyro.plate(SCREENED_PLATE, held, dim=-1)
        return pyro.plate(SCREENED_PLATE, held, subsample=positions, dim=-1)

    @property
    def n_screened_held(self) -> int:
        """Rows of the screened plate in this process: the training screen's compounds, or its shard's."""
        return self.encoding.n_screened if self.shard is None else self.shard.size

    def pair_subsample(self, batch: dict[str, Any]) -> PairSubsample:
        """The pair slots of ``batch`` (see :class:`PairSubsample`), worked out once per batch (kept in it
        under ``PAIR_SUBSAMPLE``, so the guide and the model share them). A batch that is its whole screen,
        or has no block codes, takes every slot with weight 1: the model of the whole screen."""
        cached = batch.get(PAIR_SUBSAMPLE)
        if cached is not None:
            return cached
        codes = batch.get(BLOCK_CODES)
        if codes is None:
            out = PairSubsample(None, None, None)
        else:
            slots_of = self.building_blocks.pair_slots(codes)
            size = batch[INDEX].shape[0]
            if batch.get(BATCH_TOTAL, size) >= batch[SCREEN_SIZE]:  # the whole screen (every process's part)
                out = PairSubsample(None, slots_of, None)
            else:
                slots, positions, counts = torch.unique(slots_of, return_inverse=True, return_counts=True)
                held = self.building_blocks.pair_counts[slots].clamp(min=1.0)
                out = PairSubsample(slots, positions, counts * (batch[SCREEN_SIZE] / size) / held)
        batch[PAIR_SUBSAMPLE] = out
        return out

    def pair_plate(self, batch: dict[str, Any]) -> pyro.plate:
        """The plate of the pair slots (dim -1): subsampled to the batch's pairs, each weighted so that its
        prior counts once an epoch (:class:`WeightedPlate`), or every slot for a whole screen."""
        subsample = self.pair_subsample(batch)
        if subsample.slots is None:
            return pyro.plate(PAIR_PLATE, self.building_blocks.n_pair_slots, dim=-1)
        return WeightedPlate(PAIR_PLATE, self.building_blocks.n_pair_slots, subsample.slots, subsample.weights, -1)

    def pair_positions(self, batch: dict[str, Any], pair_z: torch.Tensor) -> torch.Tensor:
        """Where each compound's pairs sit in a value of ``bb_pair_z`` ``[..., slots, arms]`` for ``batch``
        (the batch's pair slots, or every slot); a value of another size raises a ValueError."""
        subsample = self.pair_subsample(batch)
        expected = self.building_blocks.n_pair_slots if subsample.slots is None else subsample.slots.numel()
        if pair_z.shape[-2] != expected:
            raise ValueError(f"{BB_PAIR_Z} holds {pair_z.shape[-2]} pair slots, and this batch takes {expected}")
        return subsample.positions

    def local_plate(self, site: str, batch: dict[str, Any]) -> pyro.plate:
        """The plate of a local site for ``batch``: the screened plate or the pair plate."""
        return self.screened_plate(batch) if site == COMPOUND_EFFECT else self.pair_plate(batch)

    def local_value(self, site: str, batch: dict[str, Any], value: torch.Tensor) -> torch.Tensor:
        """A local site's value drawn over its whole plate ``[..., members, ...]`` cut to the members of
        ``batch``, as the site's subsampled plate takes them."""
        with self.local_plate(site, batch) as positions:
            return value.index_select(-2, positions)  # both sites keep their members second from the right

    def create_plates(self, batch: dict[str, Any]) -> list[pyro.plate]:
        """The plates that autoguides share with the model, so that local sites get the same indices and
        weights: the screened plate (per-compound effects; without them the compound plate) and the pair
        plate."""
        plates = [self.local_plate(site, batch) for site in self.local_sites]
        if "compound" not in self.terms:
            plates.append(pyro.plate(COMPOUND_PLATE, batch[SCREEN_SIZE], subsample=batch[INDEX], dim=-2))
        return plates

    def site_table(self) -> pd.DataFrame:
        """Every site of the model, as one run on an example batch of two compounds (one screened, one new
        when the model has per-compound effects) shows them: ``site``, ``role`` ("global", "local": a
        screened compound's own, "prior draw": a new compound's, integrated over; "observed";
        "recorded": a deterministic site of evaluation), ``distribution``, ``shape`` and ``plates``."""
        batch = self.encoding.example_batch(2, device=self.device)
        if "compound" in self.terms:
            batch[TRAINING_POSITION] = torch.tensor([0, -1], device=self.device)
        with self.param_scope(), self.evaluating(), torch.no_grad(), poutine.block():
            trace = poutine.trace(self).get_trace(batch)
        rows = []
        for name, site in trace.nodes.items():
            if site["type"] != "sample" or site_is_subsample(site):
                continue
            plates = [frame.name for frame in site["cond_indep_stack"]]
            if site["infer"].get("_deterministic"):
                role, distribution = "recorded", "deterministic"
            else:
                fn = site["fn"]
                while isinstance(fn, dist.Independent | dist.ExpandedDistribution):
                    fn = fn.base_dist  # the family, not its wrappers of shape
                distribution = type(fn).__name__
                if site["is_observed"]:
                    role, distribution = "observed", self.config.likelihood.upper()
                elif name in LOCAL_SITES:
                    role = "local"
                else:
                    role = "prior draw" if NEW_COMPOUND_PLATE in plates else "global"
            shape = tuple(site["value"].shape)
            rows.append({"site": name, "role": role, "distribution": distribution, "shape": shape, "plates": plates})
        return pd.DataFrame(rows)

    def named_globals(self, values: dict[str, Any]) -> dict[str, Any]:
        """Values of the latent globals (arrays or tensors, any leading dims) under the names users see: the
        building-block sites (and their effects, ``BB_EFFECTS``) split by arm and family; every other site
        as it is."""
        kinds = {BB_SCALE: "scale", BB_Z: "z", BB_EFFECTS: "effect"}
        kinds.update({BB_PAIR_Z: "pair_z", BB_PAIR_EFFECTS: "pair_effect"})
        out = {}
        for name, value in values.items():
            if name in kinds and self.building_blocks is not None:
                out.update(self.building_blocks.named(value, kinds[name]))
            else:
                out[name] = value
        return out

"""The Pyro model of a DEL screen: enrichment terms + observation model + configuration.

Read top to bottom, :meth:`DELModel.forward` is the whole generative story of one minibatch::

    for each compound i in the batch (a subsampled plate over the screen):
        log t_i, log m_i = sum of the terms' outputs (fingerprint net, pose attention net, ...)
        control counts[i, r] ~ Likelihood(depth_r * load_i * m_i)                 (replicate plate)
        target counts[i, s]  ~ Likelihood(depth_s * load_i * combine(m_i, t_i))    (replicate plate)

Network weights are point estimates (Pyro params). :class:`ModelConfig` holds every setting;
``ModelConfig.preset("del-dock")`` reproduces DEL-Dock (Shmilovich et al. 2022).

Every DELModel owns its own Pyro parameter store (:meth:`DELModel.param_scope`), so several models fitted
in one kernel never share parameters.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyro
import torch
from torch import nn

from delpyro.data import DELData, DELDataError
from delpyro.features import fingerprints
from delpyro.observation import Observation, load_offset, log_depth_offsets
from delpyro.terms import BuildingBlockTerm, CompoundTerm, FingerprintTerm, InterceptTerm, PoseTerm

__all__ = ["PRESETS", "DELModel", "DataSpec", "ModelConfig", "building_block_codes"]

TERMS = ("fingerprint", "poses", "building_blocks", "compound")


@dataclass
class ModelConfig:
    """Every setting of a delpyro model and of its training. Build one, or start from a preset.

    >>> ModelConfig.preset("del-dock").target_gate
    0.5488
    """

    # ---- enrichment terms
    #: Terms summed into the log enrichments, from "fingerprint", "poses" (networks), "building_blocks"
    #: (hierarchical block and disynthon effects) and "compound" (a per-compound effect); None: every term
    #: the training screen supports ("fingerprint"; "poses" when it has poses; "building_blocks" when it has
    #: building-block ids; "compound"). Without "fingerprint" a latent intercept is added.
    terms: tuple[str, ...] | None = None
    #: Prior scale (HalfNormal) of the building-block family scales and of the per-compound effect's scale.
    bb_prior_scale: float = 1.0
    #: Whether the building-block term has disynthon families (one per pair of cycles) besides the blocks.
    bb_pairs: bool = True
    compound_prior_scale: float = 1.0
    #: Morgan fingerprint radius, length in bits, and whether chirality is encoded.
    fingerprint_radius: int = 3
    fingerprint_bits: int = 2048
    fingerprint_chirality: bool = True
    #: h: hidden width of the residual blocks; embeddings are 2h wide.
    hidden_size: int = 128
    #: Residual blocks after the input layer of the fingerprint and pose encoders.
    n_blocks: int = 2
    #: Residual blocks after the fingerprint embedding is added to every pose embedding.
    n_post_blocks: int = 1
    #: Dropout probability inside residual blocks (training only).
    dropout: float = 0.1
    #: "relu" | "gelu" | "silu" | "elu" | "tanh".
    activation: str = "relu"
    #: Pooling over poses: "gated_attention" | "mean".
    pooling: str = "gated_attention"
    #: Width of the gated attention's hidden layer; None: hidden_size.
    attention_size: int | None = None
    # ---- observation model
    #: Count likelihood: "poisson" | "zip" | "nb" | "zinb".
    likelihood: str = "zinb"
    #: How the target arm combines matrix and target enrichment: "additive" (m + t) | "multiplicative" (m * t).
    combine: str = "additive"
    #: Zero-inflation gates: "fixed" (the values below) | "learned" (point estimates started there) |
    #: "global" (latent, one per arm, Beta(gate_prior) prior) | "per_compound" (a head of the fingerprint
    #: network gives every compound its own gate, as DEL-Compose does).
    gates: str = "global"
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
    #: Library-size normalization: a log(column total / n_compounds) offset per replicate.
    normalize_depth: bool = True
    #: Use the load (pre-selection counts) as a log offset when the data has one.
    use_load: bool = True
    # ---- inference and training
    #: Variational family: "auto_normal" | "auto_lowrank" | "auto_delta".
    guide: str = "auto_normal"
    #: "trace_elbo" | "meanfield" (analytic KL where available).
    loss: str = "trace_elbo"
    #: ClippedAdam: learning rate, gradient-norm clip, betas and weight decay.
    lr: float = 2e-4
    clip_norm: float = 10.0
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    #: The learning rate is multiplied by lr_decay over lr_decay_steps steps (geometrically, every step).
    lr_decay: float = 1.0
    lr_decay_steps: int = 1000
    #: Learning rate of the per-compound guide parameters (the "compound" term), which move only once an
    #: epoch; None: lr.
    local_lr: float | None = 0.05
    #: Initial scale of the guide's per-compound effects (the "compound" term).
    local_init_scale: float = 0.3
    #: Learning rate of the guide's other parameters (the latent globals: building-block effects, scales,
    #: gates, concentrations); None: lr.
    guide_lr: float | None = 0.05
    #: Compounds per training step and passes over the training screen.
    batch_size: int = 256
    epochs: int = 20
    #: Decay of the exponential moving average of the parameters used for evaluation and prediction
    #: (None: no averaging). Early steps use min(decay, (1 + step) / (10 + step)).
    ema_decay: float | None = 0.999
    #: The preset this configuration came from ("custom" when built by hand).
    name: str = "custom"

    def __post_init__(self) -> None:
        if self.terms is not None:
            self.terms = tuple(self.terms)
            unknown = set(self.terms) - set(TERMS)
            if unknown:
                raise ValueError(f"unknown terms {sorted(unknown)}; expected some of {TERMS}")
        self.betas = tuple(self.betas)  # type: ignore[assignment]
        self.gate_prior = tuple(self.gate_prior)  # type: ignore[assignment]

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
        n_blocks=2,
        n_post_blocks=1,
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
        lr_decay=0.1,
        lr_decay_steps=1250,
        batch_size=64,
        epochs=20,
        ema_decay=0.999,
    ),
}


def resolve_terms(config: ModelConfig, n_poses: int, has_building_blocks: bool) -> tuple[str, ...]:
    """The terms a configuration asks for; ``terms=None`` means every term the screen supports."""
    if config.terms is not None:
        return tuple(config.terms)
    terms = ["fingerprint"]
    if n_poses > 0:
        terms.append("poses")
    if has_building_blocks:
        terms.append("building_blocks")
    terms.append("compound")
    return tuple(terms)


@dataclass
class DataSpec:
    """What a model takes from its training screen: sizes, replicate names and the offsets' constants."""

    target_names: list[str]
    control_names: list[str]
    n_poses: int = 0
    n_pose_features: int = 0
    log_depth_target: list[float] = field(default_factory=list)
    log_depth_control: list[float] = field(default_factory=list)
    load_pseudocount: float | None = None
    load_log_mean: float | None = None
    #: building-block ids per cycle and observed pair keys per pair of cycles (the building_blocks term)
    bb_vocabulary: dict[str, list[str]] | None = None
    pair_keys: dict[str, list[int]] | None = None
    #: compound ids of the training screen, in order (the compound term's local effects are indexed so)
    training_ids: list[str] | None = None

    @classmethod
    def from_data(cls, data: DELData, config: ModelConfig) -> DataSpec:
        if config.normalize_depth:
            log_depth_target = log_depth_offsets(data.target_counts, data.target_names, "target")
            log_depth_control = log_depth_offsets(data.control_counts, data.control_names, "control")
        else:
            log_depth_target = np.zeros(data.n_target_replicates)
            log_depth_control = np.zeros(data.n_control_replicates)
        pseudocount = log_mean = None
        if config.use_load and data.load is not None:
            pseudocount, log_mean = load_offset(data.load)
        terms = resolve_terms(config, data.n_poses, data.building_blocks is not None)
        vocabulary = pair_keys = None
        if "building_blocks" in terms:
            if data.building_blocks is None:
                raise DELDataError(
                    "building_blocks: the 'building_blocks' term needs building-block id columns, and this screen "
                    "has none; read it with read_counts(..., building_blocks=[...]) or drop the term"
                )
            vocabulary = {c: sorted(set(data.building_blocks[c])) for c in data.building_blocks.columns}
            codes = _block_codes(data.building_blocks, vocabulary)
            pair_keys = {
                name: [int(v) for v in np.unique(keys)]
                for name, keys, _ in _pair_keys(codes, vocabulary)
                if config.bb_pairs
            }
        return cls(
            target_names=list(data.target_names),
            control_names=list(data.control_names),
            n_poses=data.n_poses,
            n_pose_features=data.n_pose_features,
            log_depth_target=[float(v) for v in log_depth_target],
            log_depth_control=[float(v) for v in log_depth_control],
            load_pseudocount=pseudocount,
            load_log_mean=log_mean,
            bb_vocabulary=vocabulary,
            pair_keys=pair_keys,
            training_ids=[str(i) for i in data.compound_id] if "compound" in terms else None,
        )

    @property
    def uses_load(self) -> bool:
        return self.load_pseudocount is not None

    def log_load_offset(self, load: np.ndarray) -> np.ndarray:
        """The load offset ``[n]`` of a screen's loads, with the training screen's constants."""
        return np.log(np.asarray(load, dtype=np.float64) + self.load_pseudocount) - self.load_log_mean


def _pair_keys(codes: np.ndarray, vocabulary: dict[str, list[str]]) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """For every pair of cycles: its name, one int64 key per compound for its pair of blocks, and whether
    either block is unseen (the unseen slot of its cycle)."""
    cycles = list(vocabulary)
    for k in range(len(cycles)):
        for m in range(k + 1, len(cycles)):
            width = len(vocabulary[cycles[m]]) + 1
            unseen = (codes[:, k] == len(vocabulary[cycles[k]])) | (codes[:, m] == width - 1)
            yield f"{cycles[k]}+{cycles[m]}", codes[:, k] * width + codes[:, m], unseen


def _block_codes(frame: Any, vocabulary: dict[str, list[str]]) -> np.ndarray:
    """int64 [n, n_cycles]: each block's position in its cycle's vocabulary; unseen blocks get len(vocabulary)."""
    codes = np.empty((len(frame), len(vocabulary)), dtype=np.int64)
    for k, (cycle, ids) in enumerate(vocabulary.items()):
        lookup = {block: j for j, block in enumerate(ids)}
        codes[:, k] = [lookup.get(block, len(ids)) for block in frame[cycle]]
    return codes


def building_block_codes(data: DELData, spec: DataSpec) -> np.ndarray:
    """int64 ``[n_compounds, n_cycles + n_pairs]``: codes of each compound's blocks, then of its pairs of
    blocks (disynthons), in the training vocabulary; blocks and pairs not seen in training get the last
    (unseen) slot of their family."""
    if data.building_blocks is None:
        raise DELDataError("building_blocks: the model uses building-block effects, and this screen has no block ids")
    vocabulary = spec.bb_vocabulary
    missing = [c for c in vocabulary if c not in data.building_blocks.columns]
    if missing:
        raise DELDataError(f"building_blocks: columns {missing} of the training screen are missing")
    codes = _block_codes(data.building_blocks, vocabulary)
    columns = [codes]
    for name, keys, unseen in _pair_keys(codes, vocabulary):
        if name not in spec.pair_keys:  # a model without disynthon families
            continue
        known = np.asarray(spec.pair_keys[name], dtype=np.int64)
        position = np.searchsorted(known, keys).clip(max=max(len(known) - 1, 0))
        found = known[position] == keys if known.size else np.zeros(len(keys), bool)
        columns.append(np.where(found & ~unseen, position, len(known))[:, None])
    return np.concatenate(columns, axis=1)


class DELModel(nn.Module):
    """The Pyro model of a DEL screen (call it on a batch; it is also an ``nn.Module``).

    Args:
        config: the settings (:class:`ModelConfig`).
        data: the training screen, which gives the sizes and the depth and load constants; or
        spec: a :class:`DataSpec` saved with a checkpoint, instead of data.
    """

    def __init__(self, config: ModelConfig, data: DELData | None = None, *, spec: DataSpec | None = None) -> None:
        super().__init__()
        if (data is None) == (spec is None):
            raise ValueError("DELModel needs the training data or a DataSpec, not both")
        self.config = config
        self.spec = spec if spec is not None else DataSpec.from_data(data, config)
        self.term_names = self._resolve_terms()
        has_poses = "poses" in self.term_names
        has_control = len(self.spec.control_names) > 0
        h = config.hidden_size
        terms: dict[str, nn.Module] = {}
        if "fingerprint" in self.term_names:
            terms["fingerprint"] = FingerprintTerm(
                config.fingerprint_bits,
                h,
                config.n_blocks,
                config.activation,
                config.dropout,
                target_head=not has_poses,
                matrix_head=has_control,
                gate_arms=(("control", "target") if has_control else ("target",))
                if config.gates == "per_compound" and config.likelihood in ("zip", "zinb")
                else (),
            )
        if has_poses:
            terms["poses"] = PoseTerm(
                self.spec.n_pose_features,
                h,
                config.n_blocks,
                config.n_post_blocks,
                config.activation,
                config.dropout,
                config.pooling,
                config.attention_size or h,
            )
        arms = ("target", "matrix") if has_control else ("target",)
        if "fingerprint" not in self.term_names:
            terms["intercept"] = InterceptTerm(arms)
        if "building_blocks" in self.term_names:
            families = [(c, len(ids) + 1) for c, ids in self.spec.bb_vocabulary.items()]
            families += [(name, len(keys) + 1) for name, keys in self.spec.pair_keys.items()]
            pair_blocks = {}  # each observed pair's block codes, undoing the key of _pair_keys
            for name, keys in self.spec.pair_keys.items():
                width = len(self.spec.bb_vocabulary[name.split("+")[1]]) + 1
                keys = np.asarray(keys, dtype=np.int64)
                pair_blocks[name] = (keys // width, keys % width)
            terms["building_blocks"] = BuildingBlockTerm(families, arms, config.bb_prior_scale, pair_blocks)
        if "compound" in self.term_names:
            terms["compound"] = CompoundTerm(config.compound_prior_scale, len(self.spec.training_ids), arms)
        self.terms = nn.ModuleDict(terms)
        self.observation = Observation(
            config.likelihood,
            config.combine,
            config.gates,
            config.control_gate,
            config.target_gate,
            np.asarray(self.spec.log_depth_target),
            np.asarray(self.spec.log_depth_control),
            config.nb_concentration,
            concentration=config.concentration,
            depth_deviation=config.depth_deviation,
            gate_prior=config.gate_prior,
            matrix_shift=config.matrix_shift,
        )
        self._param_state: dict[str, dict] = {"params": {}, "constraints": {}}
        self._in_scope = False

    def _resolve_terms(self) -> tuple[str, ...]:
        terms = resolve_terms(self.config, self.spec.n_poses, self.spec.bb_vocabulary is not None)
        if "poses" in terms and self.spec.n_poses == 0:
            raise DELDataError("poses: the 'poses' term needs docked-pose features, and the screen has none")
        if not terms:
            raise ValueError(f"a model needs at least one term of {TERMS}")
        if self.config.gates == "per_compound" and "fingerprint" not in terms:
            raise ValueError("gates='per_compound' needs the 'fingerprint' term, whose network gives the gates")
        if "building_blocks" in terms and self.spec.bb_vocabulary is None:
            raise DELDataError("building_blocks: the 'building_blocks' term needs building-block id columns")
        return tuple(terms)

    @property
    def latent_terms(self) -> list[str]:
        """Terms with sampled random effects (their predictions have a posterior spread)."""
        return [name for name, term in self.terms.items() if getattr(term, "is_latent", False)]

    # ---- Pyro parameter store -------------------------------------------------------------------------
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

    # ---- data -------------------------------------------------------------------------------------------
    def arrays(self, data: DELData, *, cache_dir: str | None = None) -> dict[str, np.ndarray]:
        """The arrays a batch is sliced from, assembled once: packed fingerprints, counts as float32,
        the load offset, poses. Counts are left out when the screen's replicates differ from training's.
        """
        arrays: dict[str, np.ndarray] = {}
        if "fingerprint" in self.term_names:
            arrays["fingerprints"] = fingerprints(
                data.smiles,
                radius=self.config.fingerprint_radius,
                n_bits=self.config.fingerprint_bits,
                use_chirality=self.config.fingerprint_chirality,
                cache_dir=cache_dir,
            )
        if "poses" in self.term_names:
            if data.poses is None or data.poses.shape[1:] != (self.spec.n_poses, self.spec.n_pose_features):
                raise DELDataError(
                    f"poses: the model needs [n, {self.spec.n_poses}, {self.spec.n_pose_features}] pose features, "
                    f"got {None if data.poses is None else data.poses.shape}"
                )
            arrays["poses"] = data.poses
        if "building_blocks" in self.term_names:
            arrays["building_block_codes"] = building_block_codes(data, self.spec)
        if "compound" in self.term_names:
            lookup = {compound: i for i, compound in enumerate(self.spec.training_ids)}
            arrays["training_position"] = np.array([lookup.get(c, -1) for c in data.compound_id], dtype=np.int64)
        if data.target_names == self.spec.target_names and data.control_names == self.spec.control_names:
            arrays["target_counts"] = data.target_counts.astype(np.float32)
            if data.n_control_replicates:
                arrays["control_counts"] = data.control_counts.astype(np.float32)
        if self.spec.uses_load:
            if data.load is None:
                raise DELDataError("load: the model was trained with a load offset, and this screen has no load")
            arrays["log_load"] = self.spec.log_load_offset(data.load).astype(np.float32)
        return arrays

    @property
    def device(self) -> torch.device:
        """Where the model's tensors live (move it with ``.to(device)`` before building a guide)."""
        return self.observation.log_depth_target.device

    def example_batch(self, size: int = 1) -> dict[str, Any]:
        """A batch of ``size`` all-zero compounds of the right shapes (to build a guide without data)."""
        with torch.device(self.device):
            return self._example_batch(size)

    def _example_batch(self, size: int) -> dict[str, Any]:
        batch: dict[str, Any] = {"index": torch.arange(size), "size": size}
        if "fingerprint" in self.term_names:
            batch["fingerprints"] = torch.zeros(size, self.config.fingerprint_bits // 8, dtype=torch.uint8)
        if "building_blocks" in self.term_names:
            batch["building_block_codes"] = torch.zeros(
                size, len(self.terms["building_blocks"].families), dtype=torch.long
            )
        if "poses" in self.term_names:
            batch["poses"] = torch.zeros(size, self.spec.n_poses, self.spec.n_pose_features)
        batch["target_counts"] = torch.zeros(size, len(self.spec.target_names))
        if self.spec.control_names:
            batch["control_counts"] = torch.zeros(size, len(self.spec.control_names))
        if self.spec.uses_load:
            batch["log_load"] = torch.zeros(size)
        if "compound" in self.term_names:
            batch["training_position"] = torch.arange(size) % len(self.spec.training_ids)
        return batch

    # ---- the model -----------------------------------------------------------------------------------
    def enrichments(
        self,
        batch: dict[str, torch.Tensor],
        context: dict[str, torch.Tensor] | None = None,
        *,
        latent: bool = True,
        networks: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, torch.Tensor]]:
        """``(log_target [batch], log_matrix [batch] or None, extras)``: the sums of the terms' outputs.

        ``context`` holds the latent terms' globals (from ``sample_globals``); ``latent`` and ``networks``
        choose which terms to sum (prediction computes the networks once and the latent terms per draw).
        """
        context = {} if context is None else context
        log_target = log_matrix = None
        extras: dict[str, torch.Tensor] = {}
        for term in self.terms.values():
            if not (latent if getattr(term, "is_latent", False) else networks):
                continue
            output = term(batch, context)
            if output.target is not None:
                log_target = output.target if log_target is None else log_target + output.target
            if output.matrix is not None:
                log_matrix = output.matrix if log_matrix is None else log_matrix + output.matrix
            extras.update(output.extras)
        return log_target, log_matrix, extras

    def forward(self, batch: dict[str, Any]) -> None:
        """The Pyro model of one minibatch; ``batch`` holds ``index`` and ``size`` (see Minibatches)."""
        pyro.module("networks", self.terms)
        replicates = self.observation.replicate_plates()
        globals_ = self.observation.sample_globals(replicates)
        context: dict[str, torch.Tensor] = {}
        for name in self.latent_terms:
            self.terms[name].sample_globals(context)
        if "compound" in self.terms:
            self.terms["compound"].sample_locals(batch, context)
        with self.compound_plate(batch):
            log_target, log_matrix, extras = self.enrichments(batch, context)
            if not self.training:
                # recorded in evaluation traces (for posterior export); a training step has no use for them
                # and each site costs it time (autoguides and NUTS skip deterministic sites anyway)
                pyro.deterministic("log_target_enrichment", log_target.unsqueeze(-1), event_dim=0)
                if log_matrix is not None:
                    pyro.deterministic("log_matrix_enrichment", log_matrix.unsqueeze(-1), event_dim=0)
            for name, logits in extras.items():
                if name.endswith("_gate_logits"):
                    globals_[name] = logits.unsqueeze(-1)
            self.observation(log_target, log_matrix, batch.get("log_load"), batch, globals_, replicates)

    def named_globals(self, values: dict[str, Any]) -> dict[str, Any]:
        """Values of the latent globals (arrays or tensors, any leading dims) under the names users see: the
        building-block sites split by arm and family; every other site as it is."""
        if "building_blocks" in self.terms:
            return self.terms["building_blocks"].named(values)
        return dict(values)

    def compound_plate(self, batch: dict[str, Any]) -> pyro.plate:
        """The plate of the batch's compounds (dim -2), subsampled from a screen of ``batch["size"]``."""
        return pyro.plate("compounds", batch["size"], subsample=batch["index"], dim=-2)

    def create_plates(self, batch: dict[str, Any]) -> pyro.plate:
        """The plate that autoguides share with the model, so that local latents get the same indices:
        the screened-compound plate of the compound term (see :class:`~delpyro.terms.CompoundTerm`), or
        else the compound plate."""
        if "compound" in self.terms:
            return self.terms["compound"].screened_plate(batch)
        return self.compound_plate(batch)

"""Enrichment terms: small torch modules whose outputs add up to the log enrichments.

Each term maps a batch of compounds to its contribution to the log target enrichment and/or the log
matrix (bead) enrichment, ``[batch]`` tensors in natural-log units. Terms know nothing of counts; the
observation model (observation.py) knows nothing of fingerprints. A term may leave something for a later
term in the shared ``context`` dict (the fingerprint embedding, which the pose term adds to every pose).

- :class:`FingerprintTerm`: packed Morgan bits -> Linear -> activation -> residual MLP blocks -> a ``2h``
  embedding, with a head for the matrix effect and, when no pose term takes that role, the target effect.
- :class:`PoseTerm`: every docked pose's features through an encoder of the same shape, plus the
  fingerprint embedding, a post-add residual block, then pooling over poses (gated attention or mean) and a
  head for the target effect. The attention weights are returned for inspection.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import nn

from delpyro.features import unpack_bits

__all__ = [
    "ACTIVATIONS",
    "BuildingBlockTerm",
    "CompoundTerm",
    "FingerprintTerm",
    "GatedAttention",
    "InterceptTerm",
    "PoseTerm",
    "ResidualBlock",
    "TermOutput",
    "family_effects",
    "screened_positions",
]

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "elu": nn.ELU, "tanh": nn.Tanh}


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()


@dataclass
class TermOutput:
    """A term's contribution: log target and log matrix parts ``[batch]`` (None: no contribution)."""

    target: torch.Tensor | None = None
    matrix: torch.Tensor | None = None
    extras: dict[str, torch.Tensor] = field(default_factory=dict)


class ResidualBlock(nn.Module):
    """x + Dropout(act(Linear(h -> 2h)(Dropout(act(Linear(2h -> h)(x)))))), on a ``2h`` vector."""

    def __init__(self, hidden_size: int, activation: str, dropout: float) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(2 * hidden_size, hidden_size),
            _activation(activation),
            nn.Dropout(dropout),
            nn.Linear(hidden_size, 2 * hidden_size),
            _activation(activation),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x)


class Encoder(nn.Module):
    """Linear(n_inputs -> 2h) -> activation -> ``n_blocks`` residual blocks: ``[..., n_inputs] -> [..., 2h]``."""

    def __init__(self, n_inputs: int, hidden_size: int, n_blocks: int, activation: str, dropout: float) -> None:
        super().__init__()
        self.input = nn.Sequential(nn.Linear(n_inputs, 2 * hidden_size), _activation(activation))
        self.blocks = nn.Sequential(*(ResidualBlock(hidden_size, activation, dropout) for _ in range(n_blocks)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.input(x))


class GatedAttention(nn.Module):
    """Gated attention pooling over poses: score_k = w . (tanh(V x_k) * sigmoid(U x_k)), softmax over k.

    ``forward(x [batch, n_poses, d]) -> (pooled [batch, d], weights [batch, n_poses])``.
    """

    def __init__(self, n_inputs: int, attention_size: int) -> None:
        super().__init__()
        self.value = nn.Linear(n_inputs, attention_size)
        self.gate = nn.Linear(n_inputs, attention_size)
        self.score = nn.Linear(attention_size, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.score(torch.tanh(self.value(x)) * torch.sigmoid(self.gate(x))).squeeze(-1)
        weights = torch.softmax(scores, dim=-1)
        return (weights.unsqueeze(-1) * x).sum(-2), weights


class FingerprintTerm(nn.Module):
    """Morgan fingerprint -> ``2h`` embedding -> heads for the log matrix and (optionally) target effect.

    Batch key: ``"fingerprints"``, packed uint8 ``[batch, n_bits // 8]``. Writes
    ``context["fingerprint_embedding"]`` ``[batch, 2h]``. With ``gate_arms`` a further head gives each
    compound its own zero-inflation gate logits per arm (``extras["<arm>_gate_logits"]``), as DEL-Compose.
    """

    def __init__(
        self,
        n_bits: int,
        hidden_size: int,
        n_blocks: int,
        activation: str,
        dropout: float,
        *,
        target_head: bool,
        matrix_head: bool,
        gate_arms: tuple[str, ...] = (),
    ) -> None:
        super().__init__()
        self.n_bits = n_bits
        self.encoder = Encoder(n_bits, hidden_size, n_blocks, activation, dropout)
        self.target_head = nn.Linear(2 * hidden_size, 1) if target_head else None
        self.matrix_head = nn.Linear(2 * hidden_size, 1) if matrix_head else None
        self.gate_arms = gate_arms
        self.gate_head = nn.Linear(2 * hidden_size, len(gate_arms)) if gate_arms else None

    def forward(self, batch: dict[str, torch.Tensor], context: dict[str, torch.Tensor]) -> TermOutput:
        bits = unpack_bits(batch["fingerprints"], self.n_bits)
        embedding = self.encoder(bits)
        context["fingerprint_embedding"] = embedding
        extras = {}
        if self.gate_head is not None:  # per-compound zero-inflation gate logits, one per arm
            logits = self.gate_head(embedding)
            extras = {f"{arm}_gate_logits": logits[..., j] for j, arm in enumerate(self.gate_arms)}
        return TermOutput(
            target=None if self.target_head is None else self.target_head(embedding).squeeze(-1),
            matrix=None if self.matrix_head is None else self.matrix_head(embedding).squeeze(-1),
            extras=extras,
        )


class PoseTerm(nn.Module):
    """Docked poses -> encoder (+ fingerprint embedding) -> post-add block -> pooling -> log target effect.

    Batch key: ``"poses"`` ``[batch, n_poses, n_pose_features]`` (float16 is cast to float32). Reads
    ``context["fingerprint_embedding"]`` when a fingerprint term came first. ``extras["attention"]`` holds
    the pooling weights ``[batch, n_poses]`` (uniform for mean pooling).
    """

    def __init__(
        self,
        n_pose_features: int,
        hidden_size: int,
        n_blocks: int,
        n_post_blocks: int,
        activation: str,
        dropout: float,
        pooling: str,
        attention_size: int,
    ) -> None:
        super().__init__()
        if pooling not in ("gated_attention", "mean"):
            raise ValueError(f"pooling must be 'gated_attention' or 'mean', got {pooling!r}")
        self.encoder = Encoder(n_pose_features, hidden_size, n_blocks, activation, dropout)
        self.post = nn.Sequential(*(ResidualBlock(hidden_size, activation, dropout) for _ in range(n_post_blocks)))
        self.attention = GatedAttention(2 * hidden_size, attention_size) if pooling == "gated_attention" else None
        self.target_head = nn.Linear(2 * hidden_size, 1)

    def forward(self, batch: dict[str, torch.Tensor], context: dict[str, torch.Tensor]) -> TermOutput:
        poses = batch["poses"].float()
        embedded = self.encoder(poses)
        if "fingerprint_embedding" in context:
            embedded = embedded + context["fingerprint_embedding"].unsqueeze(-2)
        embedded = self.post(embedded)
        if self.attention is None:
            weights = torch.full(embedded.shape[:-1], 1.0 / embedded.shape[-2], device=embedded.device)
            pooled = embedded.mean(-2)
        else:
            pooled, weights = self.attention(embedded)
        return TermOutput(target=self.target_head(pooled).squeeze(-1), extras={"attention": weights})


# ---------------------------------------------------------------------------------------------------
# latent terms: their random effects are sampled, so the guide approximates a posterior
#
# A latent term draws its global random variables in ``sample_globals(context)`` (called once per model
# call, outside the compound plate) and reads them in ``forward`` (inside the plate). Its attribute
# ``is_latent`` tells the model and ``predict`` apart from the deterministic network terms.


class InterceptTerm(nn.Module):
    """A latent intercept per arm, log t0 and log m0 ~ Normal(0, scale): the level of a model without
    a fingerprint network (whose head bias plays this part otherwise)."""

    is_latent = True

    def __init__(self, arms: tuple[str, ...], scale: float = 5.0) -> None:
        super().__init__()
        self.arms = arms
        self.scale = scale

    def sample_globals(self, context: dict[str, torch.Tensor]) -> None:
        for arm in self.arms:
            context[f"{arm}_intercept"] = pyro.sample(f"{arm}_intercept", dist.Normal(0.0, self.scale))

    def forward(self, batch: dict[str, torch.Tensor], context: dict[str, torch.Tensor]) -> TermOutput:
        size = batch["index"].shape[0]
        parts = {}
        for arm in self.arms:
            value = context[f"{arm}_intercept"]  # [] or [draws]
            parts[arm] = value.unsqueeze(-1).expand(*value.shape, size)
        return TermOutput(target=parts.get("target"), matrix=parts.get("matrix"))


def family_effects(
    scale: torch.Tensor, z: torch.Tensor, rows: torch.Tensor | None = None, columns: torch.Tensor | None = None
) -> torch.Tensor:
    """Effects of one building-block family from its scale ``[...]`` and standard normals ``[..., n + 1]``
    (the last slot is the unseen block): the seen blocks' normals are centred, then all are scaled.

    For a pair family, ``rows`` and ``columns`` (int64 ``[n]``) give each observed pair's block in either
    cycle, and the normals are centred within every row and then every column: a pair effect is then an
    interaction only, and cannot take over its blocks' own effects.
    """
    seen = z[..., :-1]
    if rows is None:
        seen = seen - seen.mean(dim=-1, keepdim=True)
    else:
        for groups in (rows, columns):
            seen = seen - _group_means(seen, groups)
    return scale.unsqueeze(-1) * torch.cat([seen, z[..., -1:]], dim=-1)


def _group_means(values: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Each element replaced by the mean of its group along the last dim (groups: int64 ``[n]``)."""
    n_groups = int(groups.max()) + 1 if groups.numel() else 0
    sums = values.new_zeros(*values.shape[:-1], n_groups).index_add(-1, groups, values)
    counts = torch.bincount(groups, minlength=n_groups).to(values.dtype)
    return (sums / counts.clamp(min=1))[..., groups]


class BuildingBlockTerm(nn.Module):
    """Hierarchical building-block and disynthon effects on the log target and log matrix enrichment.

    For each arm, each cycle k and each pair of cycles (k, l) (a family f)::

        scale_f ~ HalfNormal(prior_scale)
        z_f[j]  ~ Normal(0, 1)                         for every block (or observed pair) j, plus one unseen slot
        effect_f[j] = scale_f * (z_f[j] - mean_seen z_f)   for the seen blocks (non-centred, summing to zero)
        effect_f[unseen] = scale_f * z_f[unseen]

    Effects of the seen blocks sum to zero within a family, so they are deviations from the family's
    average, and pair effects sum to zero over each block's pairs, so they are interactions only (see
    :func:`family_effects`); the intercept (or the network) carries the level: without that constraint the level could
    drift between the intercept and the family means, limited only by the prior, which makes a posterior
    ridge that slows MCMC and that a mean-field guide cannot represent.

    A compound adds the effects of its blocks and of its pairs. Blocks and pairs never seen in training
    map to the unseen slot, which no data informs, so its posterior stays the prior: a new block gets
    the family's spread, not a false zero. Batch key: ``"building_block_codes"``, int64
    ``[batch, n_cycles + n_pairs]`` (see :func:`building_block_codes`).

    Every arm's and family's variables are two sample sites, ``bb_scale`` ``[n_arms, n_families]`` and
    ``bb_z`` ``[n_arms, n_codes]`` (the families' slots one after another), not two per family: each site
    costs the model and the guide a fixed amount of bookkeeping per step, which for two arms of six
    families each (three cycles and their pairs) was a third of a training step. :meth:`named` splits
    values of these sites (and the effects) by arm and family, under the names the summaries and ArviZ
    exports use: ``bb_{arm}_scale_{family}``, ``bb_{arm}_{family}`` and ``bb_{arm}_{family}_effect``.
    """

    is_latent = True
    SITES = ("bb_scale", "bb_z")

    def __init__(
        self,
        family_sizes: list[tuple[str, int]],
        arms: tuple[str, ...],
        prior_scale: float = 1.0,
        pair_blocks: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> None:
        super().__init__()
        self.families = family_sizes  # (name, number of codes including the unseen slot)
        self.arms = arms
        self.prior_scale = prior_scale
        starts = np.concatenate([[0], np.cumsum([size for _, size in family_sizes])]).astype(np.int64)
        self.slots = [(int(starts[k]), int(starts[k + 1])) for k in range(len(family_sizes))]
        self.n_codes = int(starts[-1])
        # a compound's code in family k is its position in the concatenated slots once shifted by this
        self.register_buffer("code_offsets", torch.as_tensor(starts[:-1]), persistent=False)
        # each pair family's observed pairs: the block code of either cycle (for double centring)
        for name, (rows, columns) in (pair_blocks or {}).items():
            self.register_buffer(f"rows_{name}", torch.as_tensor(rows, dtype=torch.long), persistent=False)
            self.register_buffer(f"columns_{name}", torch.as_tensor(columns, dtype=torch.long), persistent=False)
        self.pair_names = set(pair_blocks or {})

    def sample_globals(self, context: dict[str, torch.Tensor]) -> None:
        with pyro.plate("bb_arms", len(self.arms), dim=-2):
            with pyro.plate("bb_families", len(self.families), dim=-1):
                scale = pyro.sample("bb_scale", dist.HalfNormal(self.prior_scale))
            with pyro.plate("bb_codes", self.n_codes, dim=-1):
                z = pyro.sample("bb_z", dist.Normal(0.0, 1.0))
        context["bb_effects"] = self.effects(scale, z)

    def effects(self, scale: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Every family's effects ``[..., n_arms, n_codes]`` from ``bb_scale`` ``[..., n_arms, n_families]``
        and ``bb_z`` ``[..., n_arms, n_codes]`` (see :func:`family_effects`)."""
        parts = []
        for k, (name, _) in enumerate(self.families):
            start, stop = self.slots[k]
            if name in self.pair_names:
                rows, columns = getattr(self, f"rows_{name}"), getattr(self, f"columns_{name}")
                parts.append(family_effects(scale[..., k], z[..., start:stop], rows, columns))
            else:
                parts.append(family_effects(scale[..., k], z[..., start:stop]))
        return torch.cat(parts, dim=-1)

    def named(self, values: dict) -> dict:
        """Values of ``bb_scale``, ``bb_z`` and the effects (``bb_effects``), arrays or tensors with any
        leading dims, split by arm and family: ``bb_{arm}_scale_{family}`` ``[...]``, ``bb_{arm}_{family}``
        and ``bb_{arm}_{family}_effect`` ``[..., n + 1]``. Other entries pass through."""
        out = {}
        for key, value in values.items():
            if key not in (*self.SITES, "bb_effects"):
                out[key] = value
                continue
            for a, arm in enumerate(self.arms):
                for k, (name, _) in enumerate(self.families):
                    start, stop = self.slots[k]
                    if key == "bb_scale":
                        out[f"bb_{arm}_scale_{name}"] = value[..., a, k]
                    elif key == "bb_z":
                        out[f"bb_{arm}_{name}"] = value[..., a, start:stop]
                    else:
                        out[f"bb_{arm}_{name}_effect"] = value[..., a, start:stop]
        return out

    def forward(self, batch: dict[str, torch.Tensor], context: dict[str, torch.Tensor]) -> TermOutput:
        codes = batch["building_block_codes"] + self.code_offsets  # [batch, n_families], into the slots
        total = context["bb_effects"][..., codes].sum(-1)  # [..., n_arms, batch]
        parts = {arm: total[..., a, :] for a, arm in enumerate(self.arms)}
        return TermOutput(target=parts.get("target"), matrix=parts.get("matrix"))


class CompoundTerm(nn.Module):
    """Per-compound effects on the log target enrichment, and on the log matrix enrichment when the
    screen has controls: u_i = sigma * z_i with z_i ~ Normal(0, 1), sigma ~ HalfNormal(prior_scale), one
    sigma per arm (``compound_scale``, ``compound_matrix_scale``).

    The matrix effect lets each compound's own bead binding, seen in the control reads, differ from what
    its blocks and structure predict; without it that deviation would be read as target enrichment, with
    too little uncertainty.

    The z of the training screen's compounds form the site ``compound_effect`` ``[n, n_arms]`` (target
    first) in their own plate ``"screened"`` (dim -1; full size: the training screen), subsampled to the
    batch's screened compounds by their ``training_position``: the guide gives every screened compound
    its own posterior, indexed by its place in the training screen whichever batch or screen it turns up
    in. A compound never screened (position -1) draws z from the prior (site ``new_compound_effect``,
    which no guide covers).
    """

    is_latent = True

    def __init__(self, prior_scale: float = 1.0, n_screened: int = 0, arms: tuple[str, ...] = ("target",)) -> None:
        super().__init__()
        self.prior_scale = prior_scale
        self.n_screened = n_screened
        self.arms = arms

    def sample_globals(self, context: dict[str, torch.Tensor]) -> None:
        context["compound_scale"] = pyro.sample("compound_scale", dist.HalfNormal(self.prior_scale))
        if "matrix" in self.arms:
            context["compound_matrix_scale"] = pyro.sample("compound_matrix_scale", dist.HalfNormal(self.prior_scale))

    def screened_plate(self, batch: dict[str, torch.Tensor]) -> pyro.plate:
        """The plate of the screened compounds' effects, subsampled to those in ``batch`` (at least one
        index: a batch without screened compounds gets a placeholder, see :func:`screened_positions`)."""
        positions, _ = screened_positions(batch)
        if positions.numel() == self.n_screened:
            # every screened compound at once: the plate in its natural order (pyro subsamples parameters
            # only for a proper subsample, so a permutation must not be passed as one)
            return pyro.plate("screened", self.n_screened, dim=-1)
        return pyro.plate("screened", self.n_screened, subsample=positions, dim=-1)

    def in_batch_order(self, value: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """A ``compound_effect`` value ``[n screened in batch, n_arms]`` in the order of the batch's
        screened compounds (when the batch holds every screened compound the site is in the natural order)."""
        positions, _ = screened_positions(batch)
        return value[positions] if positions.numel() == self.n_screened else value

    def prior(self, context: dict[str, torch.Tensor]) -> dist.Distribution:
        """Target only: z ~ Normal(0, 1), non-centred. With a matrix arm, (w, u_m): u_m the matrix effect
        and w = u_t + u_m the whole target arm's deviation, jointly normal (centred). The target reads pin
        w and the control reads u_m, so the two are nearly independent a posteriori and a mean-field
        guide can represent them; (u_t, u_m) would be strongly anti-correlated."""
        if "matrix" not in self.arms:
            return dist.Normal(0.0, 1.0).expand([1]).to_event(1)
        var_t = context["compound_scale"] ** 2  # [] or [draws]
        var_m = context["compound_matrix_scale"] ** 2
        covariance = torch.stack([var_t + var_m, var_m, var_m, var_m], dim=-1).reshape(*var_t.shape, 2, 2)
        return dist.MultivariateNormal(torch.zeros(2, dtype=var_t.dtype, device=var_t.device), covariance)

    def sample_locals(self, batch: dict[str, torch.Tensor], context: dict[str, torch.Tensor]) -> None:
        """Draw z for every compound of the batch into ``context["compound_z"]`` ``[batch, n_arms]``
        (outside the compound plate)."""
        _, screened = screened_positions(batch)
        size = screened.shape[0]
        z = None
        if bool(screened.any()):
            with self.screened_plate(batch):
                z_screened = self.in_batch_order(pyro.sample("compound_effect", self.prior(context)), batch)
            if bool(screened.all()):
                z = z_screened
            else:
                z = z_screened.new_zeros(size, len(self.arms))
                z[screened] = z_screened
        if not bool(screened.all()):
            # drawn from the prior and integrated over: its density is not part of the joint, so a held-out
            # loss is -E_prior[log p(reads | z)], not that plus a log density of z
            with pyro.plate("new_compounds", int((~screened).sum()), dim=-1), poutine.mask(mask=False):
                z_new = pyro.sample("new_compound_effect", self.prior(context))
            if z is None:
                z = z_new
            else:
                z[~screened] = z_new
        context["compound_z"] = z

    def forward(self, batch: dict[str, torch.Tensor], context: dict[str, torch.Tensor]) -> TermOutput:
        z = context["compound_z"]  # [batch, n_arms], or [draws, batch, n_arms]
        if "matrix" not in self.arms:
            return TermOutput(target=context["compound_scale"].unsqueeze(-1) * z[..., 0])
        return TermOutput(target=z[..., 0] - z[..., 1], matrix=z[..., 1])  # u_t = w - u_m, u_m


def screened_positions(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(positions, screened)``: the training-screen positions of the batch's screened compounds (a
    single placeholder 0 when there are none) and the mask of screened compounds ``[batch]``. The
    positions come from ``batch["training_position"]`` (-1: not screened), else from ``batch["index"]``."""
    position = batch.get("training_position")
    if position is None:
        position = batch["index"]
    screened = position >= 0
    chosen = position[screened]
    if chosen.numel() == 0:
        chosen = torch.zeros(1, dtype=torch.long, device=position.device)
    return chosen, screened

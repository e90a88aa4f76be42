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

import pyro
import pyro.distributions as dist
import torch
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
        parts = {arm: context[f"{arm}_intercept"].expand(size) for arm in self.arms}
        return TermOutput(target=parts.get("target"), matrix=parts.get("matrix"))


class BuildingBlockTerm(nn.Module):
    """Hierarchical building-block and disynthon effects on the log target and log matrix enrichment.

    For each arm, each cycle k and each pair of cycles (k, l) (a family f)::

        scale_f ~ HalfNormal(prior_scale)
        z_f[j]  ~ Normal(0, 1)            for every block (or observed pair) j, plus one unseen slot
        effect_f[j] = scale_f * z_f[j]    (non-centred)

    A compound adds the effects of its blocks and of its pairs. Blocks and pairs never seen in training
    map to the unseen slot, which no data informs, so its posterior stays the prior: a new block gets
    the family's spread, not a false zero. Batch key: ``"building_block_codes"``, int64
    ``[batch, n_cycles + n_pairs]`` (see :func:`building_block_codes`).
    """

    is_latent = True

    def __init__(self, family_sizes: list[tuple[str, int]], arms: tuple[str, ...], prior_scale: float = 1.0) -> None:
        super().__init__()
        self.families = family_sizes  # (name, number of codes including the unseen slot)
        self.arms = arms
        self.prior_scale = prior_scale

    def sample_globals(self, context: dict[str, torch.Tensor]) -> None:
        plates = {name: pyro.plate(f"bb_{name}", size, dim=-1) for name, size in self.families}
        for arm in self.arms:
            for name, _ in self.families:
                scale = pyro.sample(f"bb_{arm}_scale_{name}", dist.HalfNormal(self.prior_scale))
                with plates[name]:
                    z = pyro.sample(f"bb_{arm}_{name}", dist.Normal(0.0, 1.0))
                context[f"bb_{arm}_{name}"] = scale * z

    def forward(self, batch: dict[str, torch.Tensor], context: dict[str, torch.Tensor]) -> TermOutput:
        codes = batch["building_block_codes"]
        parts: dict[str, torch.Tensor] = {}
        for arm in self.arms:
            total = 0.0
            for column, (name, _) in enumerate(self.families):
                total = total + context[f"bb_{arm}_{name}"][codes[:, column]]
            parts[arm] = total
        return TermOutput(target=parts.get("target"), matrix=parts.get("matrix"))


class CompoundTerm(nn.Module):
    """A per-compound effect on the log target enrichment, u_i = sigma * z_i with z_i ~ Normal(0, 1) and
    sigma ~ HalfNormal(prior_scale): a local latent in the subsampled compound plate, so every screened
    compound gets its own posterior, and a compound never screened gets the prior."""

    is_latent = True

    def __init__(self, prior_scale: float = 1.0) -> None:
        super().__init__()
        self.prior_scale = prior_scale

    def sample_globals(self, context: dict[str, torch.Tensor]) -> None:
        context["compound_scale"] = pyro.sample("compound_scale", dist.HalfNormal(self.prior_scale))

    def forward(self, batch: dict[str, torch.Tensor], context: dict[str, torch.Tensor]) -> TermOutput:
        z = pyro.sample("compound_effect", dist.Normal(0.0, 1.0))  # [batch, 1] in the compound plate
        return TermOutput(target=context["compound_scale"] * z.reshape(-1))
